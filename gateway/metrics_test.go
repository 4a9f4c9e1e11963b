package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/killswitch"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/metrics/metricstest"
	"github.com/tameflare/tf/rules"
)

const metricsPolicy = `version: 1
default: deny
rules:
  - name: reads
    actions: [http.get]
    decision: allow
  - name: no-posts
    actions: [http.post]
    decision: deny
    reason: Posting is not allowed here.
`

// scrapeUntil scrapes /metrics until ok accepts what it reads.
func scrapeUntil(t *testing.T, addr string, ok func(metricstest.Families) bool) metricstest.Families {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := metricstest.Scrape("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if ok(f) || time.Now().After(deadline) {
			return f
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// decisionCounts counts the audit log's decision records by effect and
// rule, as tf_decisions_total labels them.
func decisionCounts(t *testing.T, home string) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := audit.Scan(audit.Dir(home), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		rule := r.Decision.Rule
		if rule == "" {
			rule = "(default)"
		}
		out[string(r.Decision.Effect)+"/"+rule]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Real curl through a real gateway, allowed and refused requests: the
// counts on /metrics, read with the Prometheus text parser, are the
// requests sent and the decision records written.
func TestMetricsScrapedAfterCurl(t *testing.T) {
	f := start(t, policy(t, metricsPolicy), func(c *Config) { c.MetricsListen = "127.0.0.1:0" })
	addr := f.g.MetricsAddr()
	if addr == "" {
		t.Fatal("no /metrics address")
	}
	const gets, posts, deletes = 5, 3, 2
	for i := range gets {
		if out, err := f.curl(t, f.g.ProxyURL(), fmt.Sprintf("https://example.test/get/%d", i)); err != nil || !strings.HasSuffix(out, "\n200") {
			t.Fatalf("GET: %v\n%s", err, out)
		}
	}
	for range posts {
		if out, err := f.curl(t, f.g.ProxyURL(), "-d", "x=1", "https://example.test/post"); err != nil || !strings.HasSuffix(out, "\n403") {
			t.Fatalf("POST: %v\n%s", err, out)
		}
	}
	for range deletes {
		if out, err := f.curl(t, f.g.ProxyURL(), "-X", "DELETE", "https://example.test/thing"); err != nil || !strings.HasSuffix(out, "\n403") {
			t.Fatalf("DELETE: %v\n%s", err, out)
		}
	}
	// An exchange's forward time is recorded when it ends, which may be
	// just after curl has its answer.
	m := scrapeUntil(t, addr, func(m metricstest.Families) bool {
		return m.HistogramCount("tf_forward_duration_seconds", nil) >= gets && m.HistogramCount("tf_audit_durable_lag_seconds", nil) > 0
	})
	want := map[string]int{"allow/reads": gets, "deny/no-posts": posts, "deny/(default)": deletes}
	for k, n := range want {
		effect, rule, _ := strings.Cut(k, "/")
		if got := m.Counter("tf_decisions_total", metricstest.Labels{"effect": effect, "connector": "http", "rule": rule}); got != float64(n) {
			t.Errorf("tf_decisions_total{effect=%s,rule=%s} = %v, want %d", effect, rule, got, n)
		}
	}
	if got := m.Counter("tf_decisions_total", nil); got != gets+posts+deletes {
		t.Errorf("tf_decisions_total = %v, want %d", got, gets+posts+deletes)
	}
	if got := decisionCounts(t, f.home); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit decisions %v, metrics were checked against %v", got, want)
	}
	if n := m.HistogramCount("tf_decision_duration_seconds", metricstest.Labels{"connector": "http"}); n != gets+posts+deletes {
		t.Errorf("decision duration count = %d, want %d", n, gets+posts+deletes)
	}
	if n := m.HistogramCount("tf_forward_duration_seconds", metricstest.Labels{"connector": "http"}); n != gets {
		t.Errorf("forward duration count = %d, want %d (only allowed requests are forwarded)", n, gets)
	}
	if n := m.HistogramCount("tf_audit_write_duration_seconds", nil); n != gets+posts+deletes {
		t.Errorf("audit write count = %d, want %d", n, gets+posts+deletes)
	}
	if v, ok := m.Gauge("tf_kill_switch_active", nil); !ok || v != 0 {
		t.Errorf("tf_kill_switch_active = %v %v, want 0", v, ok)
	}
	if v, ok := m.Gauge("tf_approvals_pending", nil); !ok || v != 0 {
		t.Errorf("tf_approvals_pending = %v %v, want 0", v, ok)
	}
	// No shipper on this branch: the shipping gauges appear once one is
	// wired.
	f.g.SetShipLag(func() (int64, time.Duration) { return 3, 2 * time.Second })

	activate(t, f.home, killswitch.Scope{Gateway: "test"})
	m = scrapeUntil(t, addr, func(m metricstest.Families) bool {
		v, _ := m.Gauge("tf_kill_switch_active", nil)
		return v == 1
	})
	if v, _ := m.Gauge("tf_kill_switch_active", nil); v != 1 {
		t.Errorf("tf_kill_switch_active = %v after the kill switch, want 1", v)
	}
	if v, _ := m.Gauge("tf_audit_ship_pending", nil); v != 3 {
		t.Errorf("tf_audit_ship_pending = %v, want 3", v)
	}
	if out, err := f.curl(t, f.g.ProxyURL(), "https://example.test/get/killed"); err != nil || !strings.HasSuffix(out, "\n403") {
		t.Fatalf("GET under the kill switch: %v\n%s", err, out)
	}
	m = scrapeUntil(t, addr, func(m metricstest.Families) bool {
		return m.Counter("tf_decisions_total", metricstest.Labels{"rule": "(kill switch)"}) == 1
	})
	if got := m.Counter("tf_decisions_total", metricstest.Labels{"effect": "deny", "rule": "(kill switch)"}); got != 1 {
		t.Errorf("kill switch refusals = %v, want 1", got)
	}
	st := f.g.Status()
	if !strings.Contains(strings.Join(st.Notes, "\n"), "metrics: http://"+addr+"/metrics") {
		t.Errorf("status notes do not say where metrics are: %q", st.Notes)
	}
}

// A held approval shows in the gauge while it waits, and the hold's two
// decision records (held, then the person's answer) are both counted.
func TestMetricsHeldApproval(t *testing.T) {
	f := startOp(t, "1m", func(c *Config) { c.MetricsListen = "127.0.0.1:0" })
	addr := f.g.MetricsAddr()
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	r := f.waitPending(t, 1)[0]
	m := scrapeUntil(t, addr, func(m metricstest.Families) bool {
		v, _ := m.Gauge("tf_approvals_pending", nil)
		return v == 1
	})
	if v, _ := m.Gauge("tf_approvals_pending", nil); v != 1 {
		t.Fatalf("tf_approvals_pending = %v while held, want 1", v)
	}
	if c := m.Counter("tf_decisions_total", metricstest.Labels{"effect": "require_approval", "rule": "merges-need-a-human", "connector": "github"}); c != 1 {
		t.Errorf("held decisions = %v, want 1", c)
	}
	if _, err := admin.AnswerAny(context.Background(), f.home, r.ID, approval.Answer{Approve: true, Approver: "alice"}); err != nil {
		t.Fatal(err)
	}
	if rep := wait(t, got); rep.err != nil || rep.status != 200 {
		t.Fatalf("approved request: %+v", rep)
	}
	m = scrapeUntil(t, addr, func(m metricstest.Families) bool {
		v, _ := m.Gauge("tf_approvals_pending", nil)
		return v == 0 && m.HistogramCount("tf_forward_duration_seconds", nil) == 1
	})
	if v, _ := m.Gauge("tf_approvals_pending", nil); v != 0 {
		t.Errorf("tf_approvals_pending = %v after the answer, want 0", v)
	}
	if c := m.Counter("tf_decisions_total", metricstest.Labels{"effect": "allow", "rule": "merges-need-a-human"}); c != 1 {
		t.Errorf("approved decisions = %v, want 1", c)
	}
	// The hold is not decision time: one sample, well under the wait.
	if n := m.HistogramCount("tf_decision_duration_seconds", nil); n != 1 {
		t.Errorf("decision duration count = %d, want 1", n)
	}
}

// OTLP metrics from the otel: section carry the same numbers as /metrics
// and the audit log; the last push happens as the gateway stops.
func TestMetricsOTLPFromConfig(t *testing.T) {
	rcv := metricstest.NewReceiver()
	defer rcv.Close()
	var f *fixture
	f = start(t, policy(t, metricsPolicy), func(c *Config) {
		cfg := fmt.Sprintf("otel:\n  endpoint: %s\n  headers: {x-team: blue}\nmetrics:\n  listen: 127.0.0.1:0\n", rcv.URL)
		if err := os.WriteFile(ConfigPath(c.Home), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	for range 4 {
		if out, err := f.curl(t, f.g.ProxyURL(), "https://example.test/get"); err != nil || !strings.HasSuffix(out, "\n200") {
			t.Fatalf("GET: %v\n%s", err, out)
		}
	}
	if out, err := f.curl(t, f.g.ProxyURL(), "-d", "a=b", "https://example.test/post"); err != nil || !strings.HasSuffix(out, "\n403") {
		t.Fatalf("POST: %v\n%s", err, out)
	}
	prom := scrapeUntil(t, f.g.MetricsAddr(), func(m metricstest.Families) bool {
		return m.HistogramCount("tf_forward_duration_seconds", nil) == 4
	})
	if !strings.Contains(strings.Join(f.g.Status().Notes, "\n"), "otlp metrics: http/protobuf "+rcv.URL+"/v1/metrics") {
		t.Errorf("status notes: %q", f.g.Status().Notes)
	}
	if err := f.g.Close(); err != nil {
		t.Fatal(err)
	}
	n, headers := rcv.Requests()
	if n == 0 {
		t.Fatal("no OTLP export arrived")
	}
	if headers[0].Get("X-Team") != "blue" {
		t.Errorf("configured header not sent: %v", headers[0])
	}
	got, res := rcv.Last()
	if res["tf.gateway"] != "test" {
		t.Errorf("resource %v", res)
	}
	for _, c := range []struct {
		labels metricstest.Labels
		want   float64
	}{
		{metricstest.Labels{"effect": "allow", "rule": "reads", "connector": "http"}, 4},
		{metricstest.Labels{"effect": "deny", "rule": "no-posts", "connector": "http"}, 1},
	} {
		if s := metricstest.Sum(got["tf_decisions_total"], c.labels); s != c.want {
			t.Errorf("OTLP tf_decisions_total%v = %v, want %v", c.labels, s, c.want)
		}
		if p := prom.Counter("tf_decisions_total", metricstest.Labels(c.labels)); p != c.want {
			t.Errorf("Prometheus tf_decisions_total%v = %v, want %v", c.labels, p, c.want)
		}
	}
	if c := metricstest.HistCount(got["tf_forward_duration_seconds"], nil); c != 4 {
		t.Errorf("OTLP tf_forward_duration_seconds count = %d, want 4", c)
	}
	if c := metricstest.HistCount(got["tf_decision_duration_seconds"], nil); c != 5 {
		t.Errorf("OTLP tf_decision_duration_seconds count = %d, want 5", c)
	}
	if dc := decisionCounts(t, f.home); dc["allow/reads"] != 4 || dc["deny/no-posts"] != 1 {
		t.Errorf("audit decisions %v", dc)
	}
}

// The configured address in use (another gateway of this home serves it)
// leaves this gateway without /metrics, and says so; the --metrics flag's
// address in use is an error; a non-loopback address is refused.
func TestMetricsListenConflicts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	f := start(t, policy(t, metricsPolicy), func(c *Config) {
		if err := os.WriteFile(ConfigPath(c.Home), []byte("metrics: {listen: "+busy.Addr().String()+"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if f.g.MetricsAddr() != "" {
		t.Errorf("serving metrics on %s", f.g.MetricsAddr())
	}
	if notes := strings.Join(f.g.Status().Notes, "\n"); !strings.Contains(notes, "is in use") {
		t.Errorf("status notes do not say the address is in use: %q", notes)
	}

	home := t.TempDir()
	_, err = Start(Config{Name: "flag", Home: home, Policy: policy(t, metricsPolicy), MetricsListen: busy.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") && !strings.Contains(err.Error(), "Only one usage") {
		t.Errorf("--metrics on a busy address: err = %v", err)
	}
	_, err = Start(Config{Name: "wide", Home: home, Policy: policy(t, metricsPolicy), MetricsListen: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Errorf("--metrics 0.0.0.0:0: err = %v", err)
	}
	if err := os.WriteFile(ConfigPath(home), []byte("otel: {endpoint: 'localhost:4318'}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A malformed endpoint is said, and the gateway governs on.
	g, err := Start(Config{Name: "bad-otel", Home: home, Policy: policy(t, metricsPolicy)})
	if err != nil {
		t.Fatalf("malformed otel endpoint: %v", err)
	}
	if notes := strings.Join(g.Status().Notes, "\n"); !strings.Contains(notes, "otel endpoint") {
		t.Errorf("status notes do not name the malformed endpoint: %q", notes)
	}
	g.Close()
	if err := os.WriteFile(ConfigPath(home), []byte("metrics: {listen: 127.0.0.1:0, bogus: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = Start(Config{Name: "bad-key", Home: home, Policy: policy(t, metricsPolicy)}); err == nil {
		t.Error("an unknown key in metrics: was accepted")
	}
}

// MCP tool calls are counted by server and effect; other MCP methods and
// lines that cannot be parsed are decisions but not tool calls.
func TestMetricsMCPToolCalls(t *testing.T) {
	f := start(t, policy(t, mcpPolicy), func(c *Config) { c.MetricsListen = "127.0.0.1:0" })
	gov := f.g.MCPGovernor("docs").(mcp.BatchGovernor)
	call := func(tool string) []rules.Action {
		return []rules.Action{{Connector: "mcp", Type: mcp.ToolType("docs", tool), Resource: map[string]string{"server": "docs", "tool": tool}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gov.DecideLines(ctx, []mcp.Line{
		{Actions: call("read")}, {Actions: call("read")}, {Actions: call("delete")},
		{Actions: []rules.Action{{Connector: "mcp", Type: "mcp.docs.@tools/list", Resource: map[string]string{"server": "docs"}}}},
		{Err: errors.New("unexpected end of JSON input")},
	})
	m, err := metricstest.Scrape("http://" + f.g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Counter("tf_mcp_tool_calls_total", metricstest.Labels{"server": "docs", "effect": "allow"}); got != 2 {
		t.Errorf("allowed tool calls = %v, want 2", got)
	}
	if got := m.Counter("tf_mcp_tool_calls_total", metricstest.Labels{"server": "docs", "effect": "deny"}); got != 1 {
		t.Errorf("refused tool calls = %v, want 1", got)
	}
	if got := m.Counter("tf_decisions_total", metricstest.Labels{"connector": "mcp"}); got != 5 {
		t.Errorf("mcp decisions = %v, want 5", got)
	}
}

// A token in the OTLP headers stays out of tf status, also when the
// collector refuses it, and neither /metrics nor its notes hold it.
func TestMetricsKeepSecrets(t *testing.T) {
	const secret = "otlp-header-secret-4f2a9c"
	// The collector's refusal quotes what it was sent.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad credentials: "+r.Header.Get("Authorization"), http.StatusUnauthorized)
	}))
	defer echo.Close()
	rcv := struct{ URL string }{echo.URL}
	f := start(t, policy(t, metricsPolicy), func(c *Config) {
		cfg := fmt.Sprintf("otel:\n  endpoint: %s\n  headers: {authorization: 'Bearer %s'}\nmetrics:\n  listen: 127.0.0.1:0\n  interval: 20ms\n", rcv.URL, secret)
		if err := os.WriteFile(ConfigPath(c.Home), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if out, err := f.curl(t, f.g.ProxyURL(), "https://example.test/get"); err != nil || !strings.HasSuffix(out, "\n200") {
		t.Fatalf("GET: %v\n%s", err, out)
	}
	var notes string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if notes = strings.Join(f.g.Status().Notes, "\n"); strings.Contains(notes, "last push failed") {
			break
		}
	}
	if !strings.Contains(notes, "last push failed") {
		t.Errorf("a refused push is not in the status notes: %q", notes)
	}
	raw, err := http.Get("http://" + f.g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(raw.Body)
	raw.Body.Close()
	if strings.Contains(notes, secret) || strings.Contains(string(body), secret) {
		t.Errorf("the OTLP header secret leaked:\nnotes: %s\n/metrics: %s", notes, body)
	}
	t.Logf("notes: %q", notes)
}
