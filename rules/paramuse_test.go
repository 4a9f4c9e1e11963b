package rules_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tameflare/tf/rules"
)

func TestParamsRead(t *testing.T) {
	for _, tc := range []struct {
		when  []string
		reads []string
		all   bool
	}{
		{when: nil},
		{when: []string{`params.path startsWith "/etc"`}, reads: []string{"path"}},
		{when: []string{`params["path"] == "x"`, `params?.mode > 3`}, reads: []string{"path", "mode"}},
		{when: []string{`any(params.options, {.key == "x"}) && resource.tool == "w"`}, reads: []string{"options"}},
		{when: []string{`params.a.b == 1`}, reads: []string{"a"}},
		{when: []string{`len(params) > 2`}, all: true},
		{when: []string{`"x" in params`}, all: true},
		{when: []string{`let p = params; p.x == 1`}, all: true},
		{when: []string{`params[resource.tool] == 1`}, all: true},
		{when: []string{`toJSON(params) contains "rm -rf"`}, all: true},
		{when: []string{`request.path == "/x"`, `params.branch == "main"`}, reads: []string{"branch"}},
	} {
		var b strings.Builder
		b.WriteString("version: 1\ndefault: deny\nrules:\n")
		for i, w := range tc.when {
			fmt.Fprintf(&b, "  - {name: r%d, actions: [\"*\"], decision: deny, when: %q}\n", i, w)
		}
		b.WriteString("  - {name: plain, actions: [\"*\"], decision: allow}\n")
		p := mustLoad(t, map[string]string{"tameflare.yaml": b.String()})
		pr := p.ParamsRead()
		if pr.All != tc.all {
			t.Errorf("%q: All = %v, want %v", tc.when, pr.All, tc.all)
			continue
		}
		if tc.all {
			continue
		}
		for _, n := range tc.reads {
			if !pr.Reads(n) {
				t.Errorf("%q: does not read %s", tc.when, n)
			}
		}
		for _, n := range []string{"content", "other", "b"} {
			if pr.Reads(n) {
				t.Errorf("%q: reads %s", tc.when, n)
			}
		}
	}
	if !(&rules.Policy{}).ParamsRead().All || !(*rules.Policy)(nil).ParamsRead().All {
		t.Error("a policy that was not loaded must read every param")
	}
}
