package gateway

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

// testClock is a settable clock shared by gateways and their audit logs.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const prLimitPolicy = `version: 1
default: deny
rules:
  - name: pr-rate
    actions: [github.pr.create]
    decision: allow
    limit: {count: 3, per: 1h}
  - name: reads
    actions: [github.repo.get]
    decision: allow
    limit: {count: 2, per: session}
`

func createPR(t *testing.T, f *fixture) (int, map[string]string) {
	t.Helper()
	res, body := f.do(t, "POST", "https://api.github.com/repos/acme/app/pulls", `{"title":"x","head":"feature/x","base":"main"}`)
	var m map[string]string
	if res.StatusCode != http.StatusOK {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("refusal body %q: %v", body, err)
		}
	}
	return res.StatusCode, m
}

// A limit refuses past its count through the proxy, names the rule, the
// limit and when it resets, and survives a restart of the gateway within
// its window; a limit per session starts afresh with the new run.
func TestLimitThroughProxyAndRestart(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	p := policy(t, prLimitPolicy)
	f := start(t, p, func(c *Config) { c.Now = clk.now })
	for i := range 3 {
		if st, m := createPR(t, f); st != http.StatusOK {
			t.Fatalf("pr %d: %d %v", i+1, st, m)
		}
		clk.add(time.Minute)
	}
	st, m := createPR(t, f)
	want := "limit reached: 3 per 1h (rule pr-rate); the next is allowed at 2026-05-01T10:00:00Z"
	if st != http.StatusForbidden || m["rule"] != "pr-rate" || m["reason"] != want {
		t.Fatalf("fourth: %d %v", st, m)
	}
	if f.hits.Load() != 3 {
		t.Fatalf("upstream saw %d requests, want 3", f.hits.Load())
	}
	for range 2 {
		if res, _ := f.do(t, "GET", "https://api.github.com/repos/acme/app", ""); res.StatusCode != http.StatusOK {
			t.Fatal("read refused")
		}
	}
	if res, _ := f.do(t, "GET", "https://api.github.com/repos/acme/app", ""); res.StatusCode != http.StatusForbidden {
		t.Fatal("third read of the session let through")
	}
	var counted int
	for _, r := range f.records(t, audit.KindDecision) {
		if slices.Equal(r.Decision.Counted, []string{"pr-rate"}) {
			counted++
		}
	}
	if counted != 3 {
		t.Fatalf("%d decision records counted under pr-rate, want 3", counted)
	}

	// Restart: the same home and name, a new run.
	if err := f.g.Close(); err != nil {
		t.Fatal(err)
	}
	clk.add(30 * time.Minute) // 09:33
	home := f.home
	f = start(t, p, func(c *Config) { c.Now = clk.now; c.Home = home })
	f.home = home
	if st, m := createPR(t, f); st != http.StatusForbidden || m["reason"] != want {
		t.Fatalf("after a restart: %d %v", st, m)
	}
	var starts []any
	for _, r := range f.records(t, audit.KindEvent) {
		if r.Event == audit.EventGatewayStarted {
			starts = append(starts, r.Details["limits_restored"])
		}
	}
	if len(starts) != 2 || starts[0] != float64(0) || starts[1] != float64(3) {
		t.Fatalf("limits_restored of the two starts: %v, want 0 and 3", starts)
	}
	if res, _ := f.do(t, "GET", "https://api.github.com/repos/acme/app", ""); res.StatusCode != http.StatusOK {
		t.Fatal("a new session's first read refused")
	}
	clk.add(27 * time.Minute) // 10:00: the 09:00 one has left the window
	if st, m := createPR(t, f); st != http.StatusOK {
		t.Fatalf("after the window slid: %d %v", st, m)
	}
	if st, _ := createPR(t, f); st != http.StatusForbidden {
		t.Fatal("window full again, yet allowed")
	}
}

// Many agents' requests at once: exactly the limit is let through.
func TestLimitConcurrentRequests(t *testing.T) {
	f := start(t, policy(t, prLimitPolicy), nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "https://api.github.com/repos/acme/app/pulls", strings.NewReader(`{"title":"x"}`))
			res, err := f.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			mu.Lock()
			codes[res.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 3 || codes[403] != 9 || f.hits.Load() != 3 {
		t.Fatalf("codes %v, upstream hits %d", codes, f.hits.Load())
	}
}

// A request whose other action is refused counts nothing: a push of two
// branches, one protected, leaves the limit on pushes untouched.
func TestLimitRefusedRequestCountsNothing(t *testing.T) {
	p := policy(t, `version: 1
rules:
  - name: pushes
    actions: [github.repo.push]
    decision: allow
    limit: {count: 2, per: 1h}
  - name: protect-main
    actions: [github.repo.push]
    when: params.branch == "main"
    decision: deny
`)
	f := start(t, p, nil)
	push := func(branches ...string) []rules.Decision {
		var as []rules.Action
		for _, b := range branches {
			as = append(as, rules.Action{Type: "github.repo.push", Connector: "github", Params: map[string]any{"branch": b}})
		}
		return f.g.decideOnly(as, nil, nil, "").decisions
	}
	for range 3 {
		ds := push("feature/a", "main")
		if ds[0].Effect != rules.Allow || ds[1].Effect != rules.Deny || ds[0].Counted != nil {
			t.Fatalf("%+v", ds)
		}
	}
	if ds := push("feature/a", "feature/b"); ds[0].Effect != rules.Allow || ds[1].Effect != rules.Allow {
		t.Fatalf("two pushes within the limit: %+v", ds)
	}
	if ds := push("feature/c"); ds[0].Effect != rules.Deny || !strings.HasPrefix(ds[0].Reason, "limit reached: 2 per 1h (rule pushes)") {
		t.Fatalf("third push: %+v", ds)
	}
}

// A token budget is checked before each model call against the tokens
// the calls it let through reported; a call's own tokens count once its
// answer is in. A budget over a duration survives a restart; one per
// session does not.
func TestTokenBudgetThroughProxy(t *testing.T) {
	cert, caPEM, err := testdata.ServerCert("api.anthropic.com")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// 3 in, 4 out, 2 read from cache: 9 tokens a call.
		const body = `{"model":"claude-haiku-4-5","usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":2}}`
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			// What an agent asking for gzip would get, hiding the usage
			// from tf, were the header passed on.
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, body)
			zw.Close()
			return
		}
		io.WriteString(w, body)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	clk := &testClock{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	mutate := func(home string) func(*Config) {
		return func(c *Config) {
			c.Now = clk.now
			if home != "" {
				c.Home = home
			}
			c.Upstreams["api.anthropic.com"] = strings.TrimPrefix(up.URL, "https://")
			c.UpstreamCAs = append(c.UpstreamCAs, caPEM)
		}
	}
	p := policy(t, `version: 1
rules:
  - name: hourly
    actions: [anthropic.messages.create]
    decision: allow
    limit: {tokens: 20, per: 1h}
  - name: session
    actions: [anthropic.messages.create]
    decision: allow
    limit: {tokens: 15, per: session}
`)
	call := func(f *fixture) (int, string) {
		req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages", strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":10}`))
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	waitOutcomes := func(f *fixture, n int) {
		if got := len(f.waitRecords(t, audit.KindOutcome, n)); got < n {
			t.Fatalf("%d outcome records, want %d", got, n)
		}
	}
	f := start(t, p, mutate(""))
	for i := range 2 { // 0, then 9 used: both under 15
		if st, body := call(f); st != http.StatusOK {
			t.Fatalf("call %d: %d %s", i+1, st, body)
		}
		waitOutcomes(f, i+1)
	}
	st, body := call(f) // 18 used this session
	if st != http.StatusForbidden || !strings.Contains(body, "limit reached: 15 tokens per session (rule session); it resets when the session ends") {
		t.Fatalf("third call: %d %s", st, body)
	}
	f.g.Close()
	clk.add(10 * time.Minute)
	home := f.home
	f = start(t, p, mutate(home))
	f.home = home
	// A new session, but 18 of the hour's 20 are spent: one more call,
	// then the hourly budget refuses.
	if st, body := call(f); st != http.StatusOK {
		t.Fatalf("first call after the restart: %d %s", st, body)
	}
	waitOutcomes(f, 3)
	st, body = call(f)
	if st != http.StatusForbidden || !strings.Contains(body, "limit reached: 20 tokens per 1h (rule hourly); the next is allowed at 2026-05-01T10:00:00Z") {
		t.Fatalf("after the restart: %d %s", st, body)
	}
}

// A log that cannot be read back stops a gateway whose policy has limits
// over a duration from starting, rather than start with empty counters.
func TestLimitUnreadableLogStopsStart(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "audit")
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Event(context.Background(), "test", "x", nil)
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(segs) == 0 {
		t.Fatal("no segment")
	}
	b, _ := os.ReadFile(segs[0])
	os.WriteFile(segs[0], []byte(strings.Replace(string(b), `"x"`, `"y"`, 1)), 0o600)
	_, err = Start(Config{Name: "test", Home: home, Policy: policy(t, prLimitPolicy)})
	if err == nil || !strings.Contains(err.Error(), "rebuilding the counters of limits from the audit log") {
		t.Fatalf("got %v", err)
	}
}

// BenchmarkRestoreCounters measures a gateway's start cost of rebuilding
// counters from a large log: TF_BENCH_RESTORE_RECORDS (default 200,000)
// decision records over eight hours, an eighth of them inside the
// policy's one-hour window. Segments before the window are not read.
func BenchmarkRestoreCounters(b *testing.B) {
	n := 200_000
	if s := os.Getenv("TF_BENCH_RESTORE_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	home := b.TempDir()
	dir := filepath.Join(home, "audit")
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 2000
	for i := 0; i < n; i += batch {
		recs := make([]*audit.Record, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			t := now.Add(-8 * time.Hour).Add(time.Duration(j) * (8 * time.Hour / time.Duration(n)))
			a := &rules.Action{Type: "github.pr.create", Connector: "github", Gateway: "test", Time: t,
				Resource: map[string]string{"owner": "acme", "repo": "app"}, Params: map[string]any{"title": fmt.Sprint("pr ", j)}}
			recs = append(recs, &audit.Record{Time: t, Kind: audit.KindDecision, RequestID: fmt.Sprintf("%012x", j), Gateway: "test", Action: a,
				Decision: &rules.Decision{Effect: rules.Allow, Rule: "pr-rate", Counted: []string{"pr-rate"}}})
		}
		if err := l.AppendAll(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	p, err := rules.LoadFS(fstestPolicy("version: 1\nrules:\n  - name: pr-rate\n    actions: [github.pr.create]\n    decision: allow\n    limit: {count: 1000000, per: 1h}\n"), "p")
	if err != nil {
		b.Fatal(err)
	}
	cpu0, ops := cpuTime(), 0
	for b.Loop() {
		g := &Gateway{name: "test", now: func() time.Time { return now }, counters: rules.NewMemCounters()}
		got, err := g.restoreCounters(dir, p)
		if err != nil || got != n/8 {
			b.Fatalf("restored %d, want %d: %v", got, n/8, err)
		}
		ops++
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "audit-*")); len(segs) > 0 {
		var size int64
		for _, s := range segs {
			if st, err := os.Stat(s); err == nil {
				size += st.Size()
			}
		}
		b.ReportMetric(float64(size)/(1<<20), "log-MiB")
	}
	b.ReportMetric(float64(n), "records")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		// The scan parses on every core: CPU time, not wall time, is
		// the figure that holds on a busy machine.
		b.ReportMetric(float64(cpu.Milliseconds())/float64(ops), "cpu-ms/op")
	}
}

// In monitor mode a limit refuses nothing: what it would have refused is
// recorded as such.
func TestLimitMonitorModeRecordsWouldRefuse(t *testing.T) {
	f := start(t, policy(t, prLimitPolicy), func(c *Config) { c.Mode = rules.Monitor })
	for i := range 5 {
		if st, m := createPR(t, f); st != http.StatusOK {
			t.Fatalf("pr %d: %d %v", i+1, st, m)
		}
	}
	if f.hits.Load() != 5 {
		t.Fatalf("upstream saw %d, want 5", f.hits.Load())
	}
	var would int
	for _, r := range f.records(t, audit.KindDecision) {
		d := r.Decision
		if d.Monitor && d.Would == rules.Deny && d.WouldRule == "pr-rate" && strings.HasPrefix(d.WouldReason, "limit reached: 3 per 1h (rule pr-rate)") && d.Counted == nil {
			would++
		}
	}
	if would != 2 {
		t.Fatalf("%d records of a would-be refusal by the limit, want 2", would)
	}
}
