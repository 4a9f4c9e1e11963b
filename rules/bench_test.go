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

// syntheticPolicy builds n rules shaped like real ones: mostly exact types,
// globs by connector and verb, a few connector-wide and global globs, and
// conditions on params, resources and the request.
func syntheticPolicy(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\ndefault: deny\nrules:\n")
	decisions := []string{"allow", "deny", "require_approval"}
	for i := range n {
		typ := benchTypes[(i*7)%len(benchTypes)]
		conn := strings.SplitN(typ, ".", 2)[0]
		verb := typ[strings.LastIndexByte(typ, '.')+1:]
		var actions string
		switch i % 20 {
		case 0, 1, 2:
			actions = conn + ".*." + verb
		case 3:
			actions = conn + ".*"
		case 4:
			actions = "*." + verb
		case 5:
			actions = fmt.Sprintf("custom%d.*", i) // a declared connector's rules
		default:
			actions = typ
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
			fmt.Fprintf(&b, "    when: len(params.branch) > %d\n", i%20) // no native form: the VM runs it
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
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			p := mustLoad(b, map[string]string{"tameflare.yaml": syntheticPolicy(n)})
			as := benchActions()
			for _, a := range as { // warm the candidate cache, as a running gateway has
				p.Decide(a)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				p.Decide(as[i%len(as)])
			}
		})
	}
}

func BenchmarkLoad(b *testing.B) {
	src := map[string]string{"tameflare.yaml": syntheticPolicy(1000)}
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
	p := mustLoad(t, map[string]string{"tameflare.yaml": syntheticPolicy(1000)})
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
