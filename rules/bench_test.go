package rules_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// benchTypes is a realistic spread of action types: GitHub's REST and git
// actions, npm, MCP tools across several servers, and generic HTTP.
var benchTypes = func() []string {
	var ts []string
	for _, r := range []string{"repo", "pr", "issue", "branch", "release", "file", "workflow", "gist", "hook", "collaborator"} {
		for _, v := range []string{"get", "list", "create", "update", "delete"} {
			ts = append(ts, "github."+r+"."+v)
		}
	}
	ts = append(ts, "github.repo.push", "github.repo.pull", "github.pr.merge", "github.pr.review", "github.issue.comment",
		"npm.package.get", "npm.package.publish", "npm.dist_tag.set", "npm.audit",
		"http.get", "http.post", "http.put", "http.delete")
	for s := range 10 {
		for tool := range 20 {
			ts = append(ts, fmt.Sprintf("mcp.server%d.tool_%d", s, tool))
		}
	}
	return ts
}()

// syntheticPolicy builds n rules shaped like a large organisation's
// policy: mostly rules on one action type with conditions on the
// repository, branch or request (per-team and per-repository rules), some
// globs by connector and verb, and a few connector-wide and global globs.
// overlap raises the share of broad globs, so that every action has dozens
// of candidate rules: the worst case for a decision, which must name every
// rule that matched.
func syntheticPolicy(n int, overlap bool) string {
	var b strings.Builder
	b.WriteString("version: 1\ndefault: deny\nrules:\n")
	decisions := []string{"allow", "deny", "require_approval"}
	for i := range n {
		typ := benchTypes[(i*7)%len(benchTypes)]
		conn := strings.SplitN(typ, ".", 2)[0]
		verb := typ[strings.LastIndexByte(typ, '.')+1:]
		actions := typ
		switch k := i % 100; {
		case overlap && k < 15, k < 5:
			actions = conn + ".*." + verb
		case overlap && k < 20, k == 5:
			actions = conn + ".*"
		case overlap && k < 25, k == 6:
			actions = "*." + verb
		case k < 10:
			actions = fmt.Sprintf("custom%d.*", i) // a declared connector's rules
		}
		fmt.Fprintf(&b, "  - name: rule-%d\n    actions: [%q]\n    decision: %s\n", i, actions, decisions[i%3])
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "    when: params.branch matches \"^(main|release/%d)$\"\n", i)
		case 1:
			fmt.Fprintf(&b, "    when: resource.owner == \"org%d\" && request.method == \"POST\"\n", i%50)
		case 2:
			fmt.Fprintf(&b, "    when: params.number > %d\n", i)
		case 3:
			fmt.Fprintf(&b, "    when: len(params.branch) > %d && params.flag != true\n", i%20)
		case 4:
			if i%10 == 9 { // a method call: no native form, the VM runs it
				fmt.Fprintf(&b, "    when: now.Hour() >= %d\n", i%24)
			}
		}
	}
	return b.String()
}

func benchActions() []*rules.Action {
	var as []*rules.Action
	for i := 0; i < len(benchTypes); i += 7 {
		typ := benchTypes[i]
		as = append(as, &rules.Action{
			Type: typ, Connector: strings.SplitN(typ, ".", 2)[0],
			Resource: map[string]string{"owner": fmt.Sprintf("org%d", i), "repo": "app"},
			Params:   map[string]any{"branch": "feature/x", "number": i * 7},
			Request:  rules.Request{Method: "POST", Host: "api.github.com", Path: "/repos/x/y"},
			Time:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		})
	}
	return as
}

func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		n       int
		overlap bool
	}{{10, false}, {100, false}, {1000, false}, {1000, true}} {
		name := fmt.Sprintf("rules=%d", c.n)
		if c.overlap {
			name += "/overlapping"
		}
		b.Run(name, func(b *testing.B) {
			p := mustLoad(b, map[string]string{"tameflare.yaml": syntheticPolicy(c.n, c.overlap)})
			as := benchActions()
			matched := 0
			for _, a := range as { // warm the candidate cache, as a running gateway has
				matched += len(p.Decide(a).Matched)
			}
			b.ReportMetric(float64(matched)/float64(len(as)), "matched/decision")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				p.Decide(as[i%len(as)])
			}
		})
	}
}

func BenchmarkLoad(b *testing.B) {
	src := map[string]string{"tameflare.yaml": syntheticPolicy(1000, false)}
	b.ReportAllocs()
	for b.Loop() {
		mustLoad(b, src)
	}
}

// TestDecideLatency reports the median and p99 of single decisions against
// the 1,000-rule policy (the figure the issue sets a target for); it checks
// only that decisions are made, not how fast.
func TestDecideLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency report")
	}
	start := time.Now()
	p := mustLoad(t, map[string]string{"tameflare.yaml": syntheticPolicy(1000, false)})
	t.Logf("load and compile 1,000 rules: %v", time.Since(start))
	as := benchActions()
	const n = 20000
	d := make([]time.Duration, n)
	for i := range n {
		a := as[i%len(as)]
		t0 := time.Now()
		dec := p.Decide(a)
		d[i] = time.Since(t0)
		if dec.Effect == "" {
			t.Fatal("no decision")
		}
	}
	slices.Sort(d)
	t.Logf("decide, 1,000 rules: median %v, p99 %v", d[n/2], d[n*99/100])
}
