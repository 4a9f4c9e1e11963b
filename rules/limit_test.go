package rules_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

const limitPolicy = `version: 1
default: deny
rules:
  - name: pr-rate
    actions: [github.pr.create]
    decision: allow
    limit: {count: 5, per: 1h}
  - name: model-calls
    actions: [anthropic.messages.create]
    decision: allow
    limit: {count: 3, per: session}
  - name: budget
    actions: [anthropic.messages.create]
    decision: allow
    limit: {tokens: 1000, per: session}
  - name: no-drafts
    actions: [github.pr.create]
    when: params.draft == true
    decision: deny
  - name: shadow-cap
    actions: [github.issue.create]
    decision: allow
    mode: monitor
    limit: {count: 2, per: 10m}
  - name: issues
    actions: [github.issue.create]
    decision: allow
`

func TestLimitLoadErrors(t *testing.T) {
	rule := func(limit string) string {
		return "version: 1\nrules:\n  - name: r\n    actions: [github.pr.create]\n    decision: allow\n    limit: " + limit + "\n"
	}
	cases := []struct{ name, src, want string }{
		{"zero count", rule("{count: 0, per: 1h}"), "p/tameflare.yaml:6:20: rule r: limit count 0: want at least 1"},
		{"negative count", rule("{count: -3, per: 1h}"), "p/tameflare.yaml:6:20: rule r: limit count -3: want at least 1"},
		{"huge count", rule("{count: 2000000, per: 1h}"), "p/tameflare.yaml:6:20: rule r: limit count 2000000: want at most 1000000"},
		{"unknown unit", rule("{count: 5, per: 1fortnight}"), "p/tameflare.yaml:6:28: rule r: limit per \"1fortnight\": want a duration such as 30m, 1h, 24h or 7d, or session"},
		{"negative window", rule("{count: 5, per: -1h}"), "6:28: rule r: limit per \"-1h\""},
		{"window too short", rule("{count: 5, per: 10ms}"), "6:28: rule r: limit per \"10ms\": want at least 1s"},
		{"window too long", rule("{count: 5, per: 40d}"), "6:28: rule r: limit per \"40d\": want at most 31d"},
		{"no per", rule("{count: 5}"), "6:13: rule r: a limit needs per"},
		{"neither", rule("{per: 1h}"), "6:13: rule r: a limit needs count (actions) or tokens"},
		{"both", rule("{count: 5, tokens: 10, per: 1h}"), "6:31: rule r: a limit has count or tokens, not both"},
		{"zero tokens", "version: 1\nrules:\n  - name: r\n    actions: [anthropic.*]\n    decision: allow\n    limit: {tokens: 0, per: session}\n", "6:21: rule r: limit tokens 0: want at least 1"},
		{"tokens on a non-model action", rule("{tokens: 100, per: session}"), `6:21: rule r: a token limit applies to model calls (anthropic.*, openai.*, google.*), and "github.pr.create" is not one`},
		{"tokens on any action", "version: 1\nrules:\n  - name: r\n    actions: [\"*\"]\n    decision: allow\n    limit: {tokens: 5, per: 1h}\n", `and "*" is not one`},
		{"on a deny rule", "version: 1\nrules:\n  - name: r\n    actions: [a.b]\n    decision: deny\n    limit: {count: 1, per: 1h}\n", "6:13: rule r: a deny rule refuses every action it matches"},
		{"count not a number", rule("{count: many, per: 1h}"), "p/tameflare.yaml:6:"},
		{"unknown key", rule("{count: 5, per: 1h, burst: 2}"), `unknown field "burst"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": c.src}), "p")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
		})
	}
	for _, ok := range []string{"{count: 1, per: 1s}", "{count: 5, per: 1h30m}", "{count: 5, per: 7d}", "{count: 5, per: 1d12h}", "{count: 1000000, per: session}"} {
		if _, err := rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": rule(ok)}), "p"); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// clock is a settable clock for deciders.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }
func act(typ string, params ...any) *rules.Action {
	a := &rules.Action{Type: typ, Gateway: "g"}
	if len(params) == 2 {
		a.Params = map[string]any{params[0].(string): params[1]}
	}
	return a
}

func TestLimitCountSlidingWindow(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": limitPolicy})
	c := newClock()
	d := &rules.Decider{Policy: p, Now: c.now, Counters: rules.NewMemCounters(), Session: "s1"}
	for i := range 5 {
		dec := d.Decide(act("github.pr.create"))
		if dec.Effect != rules.Allow || len(dec.Counted) != 1 || dec.Counted[0] != "pr-rate" {
			t.Fatalf("pr %d: %+v", i+1, dec)
		}
		c.add(10 * time.Minute)
	}
	// 09:00, 09:10, ... 09:40 counted; now 09:50.
	dec := d.Decide(act("github.pr.create"))
	want := "limit reached: 5 per 1h (rule pr-rate); the next is allowed at 2026-03-01T10:00:00Z"
	if dec.Effect != rules.Deny || dec.Rule != "pr-rate" || dec.Reason != want || dec.Counted != nil {
		t.Fatalf("sixth: %+v\nwant reason %q", dec, want)
	}
	// A refusal does not count: the window slides and one comes back.
	c.add(10 * time.Minute) // 10:00: the 09:00 one has left
	if dec := d.Decide(act("github.pr.create")); dec.Effect != rules.Allow {
		t.Fatalf("after the window slid: %+v", dec)
	}
	if dec := d.Decide(act("github.pr.create")); dec.Effect != rules.Deny {
		t.Fatalf("full again: %+v", dec)
	}
	// An action another rule denies is not counted.
	c.add(time.Hour)
	for range 10 {
		if dec := d.Decide(act("github.pr.create", "draft", true)); dec.Effect != rules.Deny || dec.Rule != "no-drafts" || dec.Counted != nil {
			t.Fatalf("draft: %+v", dec)
		}
	}
	for i := range 5 {
		if dec := d.Decide(act("github.pr.create")); dec.Effect != rules.Allow {
			t.Fatalf("pr %d after the drafts: %+v", i+1, dec)
		}
	}
	// Counters are per gateway.
	other := act("github.pr.create")
	other.Gateway = "other"
	if dec := d.Decide(other); dec.Effect != rules.Allow {
		t.Fatalf("another gateway: %+v", dec)
	}
	// Each agent of a shared gateway has its own counters: ci's five do
	// not use up dev's, and ci stays refused.
	for i := range 6 {
		a := act("github.pr.create")
		a.Agent = "dev"
		if dec := d.Decide(a); (dec.Effect == rules.Allow) != (i < 5) {
			t.Fatalf("dev's pr %d: %+v", i+1, dec)
		}
	}
	// Without counters no limit is checked (tf policy explain).
	if dec := p.Decide(act("github.pr.create")); dec.Effect != rules.Allow {
		t.Fatalf("no counters: %+v", dec)
	}
}

func TestLimitSessionAndTokens(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": limitPolicy})
	c := newClock()
	ctr := rules.NewMemCounters()
	d := &rules.Decider{Policy: p, Now: c.now, Counters: ctr, Session: "s1"}
	a := act("anthropic.messages.create")
	dec := d.Decide(a)
	if dec.Effect != rules.Allow || strings.Join(dec.Counted, ",") != "model-calls,budget" {
		t.Fatalf("first call: %+v", dec)
	}
	d.AddTokens(a, &dec, c.now(), 999)
	// Under budget (999 < 1000): allowed; its tokens push it over.
	dec = d.Decide(a)
	if dec.Effect != rules.Allow {
		t.Fatalf("second call: %+v", dec)
	}
	d.AddTokens(a, &dec, c.now(), 5)
	dec = d.Decide(a)
	want := "limit reached: 1000 tokens per session (rule budget); it resets when the session ends"
	if dec.Effect != rules.Deny || dec.Rule != "budget" || dec.Reason != want {
		t.Fatalf("over budget: %+v", dec)
	}
	// model-calls took nothing for the refused call: a new session with
	// budget to spare gets its 3 calls.
	d2 := &rules.Decider{Policy: p, Now: c.now, Counters: ctr, Session: "s2"}
	for i := range 3 {
		if dec := d2.Decide(a); dec.Effect != rules.Allow {
			t.Fatalf("session 2, call %d: %+v", i+1, dec)
		}
	}
	dec = d2.Decide(a)
	if dec.Effect != rules.Deny || dec.Reason != "limit reached: 3 per session (rule model-calls); it resets when the session ends" {
		t.Fatalf("session 2, call 4: %+v", dec)
	}
	// Release gives back what a decision counted.
	d3 := &rules.Decider{Policy: p, Now: c.now, Counters: ctr, Session: "s3"}
	for range 3 {
		dec := d3.Decide(a)
		d3.Release(a, &dec)
		if dec.Counted != nil {
			t.Fatal("Release left Counted")
		}
	}
	if dec := d3.Decide(a); dec.Effect != rules.Allow {
		t.Fatalf("after releases: %+v", dec)
	}
}

func TestLimitTokenWindowResets(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: hourly\n    actions: [openai.*]\n    decision: allow\n    limit: {tokens: 100, per: 1h}\n"})
	c := newClock()
	d := &rules.Decider{Policy: p, Now: c.now, Counters: rules.NewMemCounters()}
	a := act("openai.responses.create")
	for _, n := range []int64{60, 50} {
		dec := d.Decide(a)
		if dec.Effect != rules.Allow {
			t.Fatalf("%+v", dec)
		}
		d.AddTokens(a, &dec, c.now(), n)
		c.add(20 * time.Minute)
	}
	dec := d.Decide(a) // 09:40: 110 used since 09:00
	if dec.Effect != rules.Deny || !strings.HasSuffix(dec.Reason, "the next is allowed at 2026-03-01T10:00:00Z") {
		t.Fatalf("%+v", dec)
	}
	c.add(20 * time.Minute) // 10:00: the 60 have left
	if dec := d.Decide(a); dec.Effect != rules.Allow {
		t.Fatalf("%+v", dec)
	}
}

func TestLimitMonitor(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": limitPolicy})
	c := newClock()
	// A shadow rule's limit: the would-refusal is recorded, nothing refused.
	d := &rules.Decider{Policy: p, Now: c.now, Counters: rules.NewMemCounters()}
	for i := range 2 {
		if dec := d.Decide(act("github.issue.create")); dec.Effect != rules.Allow || dec.Monitor {
			t.Fatalf("issue %d: %+v", i+1, dec)
		}
	}
	dec := d.Decide(act("github.issue.create"))
	if dec.Effect != rules.Allow || !dec.Monitor || dec.Would != rules.Deny || dec.WouldRule != "shadow-cap" ||
		!strings.HasPrefix(dec.WouldReason, "limit reached: 2 per 10m (rule shadow-cap)") {
		t.Fatalf("third issue: %+v", dec)
	}
	// Monitor mode of the policy: allowed, recorded as would deny.
	dm := &rules.Decider{Policy: p, Now: c.now, Counters: rules.NewMemCounters(), Mode: rules.Monitor}
	for range 5 {
		dm.Decide(act("github.pr.create"))
	}
	dec = dm.Decide(act("github.pr.create"))
	if dec.Effect != rules.Allow || !dec.Monitor || dec.Would != rules.Deny || dec.WouldRule != "pr-rate" || dec.Counted != nil {
		t.Fatalf("monitor mode: %+v", dec)
	}
}

// TestLimitConcurrent: of many concurrent actions under a limit of N,
// exactly N are allowed (run with -race).
func TestLimitConcurrent(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: r\n    actions: [\"x.*\"]\n    decision: allow\n    limit: {count: 37, per: 1h}\n  - name: s\n    actions: [x.b]\n    decision: allow\n    limit: {count: 20, per: session}\n"})
	d := &rules.Decider{Policy: p, Counters: rules.NewMemCounters(), Session: "s"}
	var allowed, allowedB atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				typ := "x.a"
				if (g+i)%2 == 0 {
					typ = "x.b"
				}
				dec := d.Decide(&rules.Action{Type: typ})
				if dec.Effect == rules.Allow {
					allowed.Add(1)
					if typ == "x.b" {
						allowedB.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 37 || allowedB.Load() > 20 {
		t.Fatalf("allowed %d (want 37), of them x.b %d (want at most 20)", allowed.Load(), allowedB.Load())
	}
}

func BenchmarkDecideLimit(b *testing.B) {
	src := "version: 1\nrules:\n  - name: r\n    actions: [github.pr.create]\n    when: resource.owner == \"acme\"\n    decision: allow\n"
	for _, c := range []struct{ name, limit string }{
		{"none", ""},
		{"count", "    limit: {count: 100, per: 1s}\n"},
		{"session", "    limit: {count: 1000000, per: session}\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := mustLoad(b, map[string]string{"tameflare.yaml": src + c.limit})
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var n int64
			// The clock moves so that the window slides: the steady state
			// of a busy gateway, pruning as it counts.
			d := &rules.Decider{Policy: p, Counters: rules.NewMemCounters(), Session: "s",
				Now: func() time.Time { n++; return start.Add(time.Duration(n) * 10 * time.Millisecond) }}
			a := &rules.Action{Type: "github.pr.create", Gateway: "g", Resource: map[string]string{"owner": "acme"}}
			b.ReportAllocs()
			cpu0, ops := cpuTime(), 0
			defer func() {
				if cpu := cpuTime() - cpu0; cpu > 0 && ops > 0 {
					// The benchmark runs on one goroutine: CPU time per
					// decision is its cost whatever else the machine runs.
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(ops), "cpu-ns/op")
				}
			}()
			for b.Loop() {
				ops++
				dec := d.Decide(a)
				if dec.Effect != rules.Allow {
					b.Fatal("refused")
				}
				if c.name == "session" {
					d.Release(a, &dec) // else a million decisions end the session's count
				}
			}
		})
	}
}

// BenchmarkCountersContended takes from one counter on every core.
func BenchmarkCountersContended(b *testing.B) {
	c := rules.NewMemCounters()
	q := &rules.Quota{Count: 1000, Window: time.Second, Per: "1s"}
	k := rules.CounterKey{Rule: "r", Gateway: "g"}
	var n atomic.Int64
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Take(k, q, start.Add(time.Duration(n.Add(1))*time.Millisecond))
		}
	})
}

// A limit on a require_approval rule: held within it (the hold counts,
// whatever the person answers), refused past it without asking anyone.
func TestLimitOnApprovalRule(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: merges\n    actions: [github.pr.merge]\n    decision: require_approval\n    limit: {count: 2, per: 1d}\n"})
	d := &rules.Decider{Policy: p, Now: newClock().now, Counters: rules.NewMemCounters()}
	for range 2 {
		if dec := d.Decide(act("github.pr.merge")); dec.Effect != rules.RequireApproval || len(dec.Counted) != 1 {
			t.Fatalf("%+v", dec)
		}
	}
	if dec := d.Decide(act("github.pr.merge")); dec.Effect != rules.Deny || dec.Reason != "limit reached: 2 per 1d (rule merges); the next is allowed at 2026-03-02T09:00:00Z" {
		t.Fatalf("%+v", dec)
	}
}

// Restore keeps the newest recorded actions when there are more than a
// (since lowered) limit holds, so the window slides from the latest use.
func TestLimitRestoreKeepsNewest(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: r\n    actions: [a.b]\n    decision: allow\n    limit: {count: 2, per: 1h}\n"})
	c := newClock()
	d := &rules.Decider{Policy: p, Now: c.now, Counters: rules.NewMemCounters()}
	a := act("a.b")
	counted := rules.Decision{Counted: []string{"r"}}
	for i := range 5 { // 09:00 … 09:40, recorded under a higher limit
		d.Restore(a, &counted, c.now().Add(time.Duration(i)*10*time.Minute))
	}
	c.add(70 * time.Minute) // 10:10: the newest two, 09:30 and 09:40, are in the window
	dec := d.Decide(a)
	if dec.Effect != rules.Deny || !strings.HasSuffix(dec.Reason, "the next is allowed at 2026-03-01T10:30:00Z") {
		t.Fatalf("%+v", dec)
	}
}
