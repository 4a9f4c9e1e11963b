package metrics_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/metrics"
	"github.com/tameflare/tf/metrics/metricstest"
)

// noEnv keeps the test's own environment (an OTEL_* variable of the
// machine) out of the metrics under test.
func noEnv(string) string { return "" }

func start(t *testing.T, cfg metrics.Config) *metrics.Metrics {
	t.Helper()
	if cfg.Getenv == nil {
		cfg.Getenv = noEnv
	}
	m, err := metrics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func scrape(t *testing.T, m *metrics.Metrics) metricstest.Families {
	t.Helper()
	f, err := metricstest.Scrape("http://" + m.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPrometheusEndpoint(t *testing.T) {
	m := start(t, metrics.Config{Listen: "127.0.0.1:0", Gateway: "g1"})
	for range 3 {
		m.Decided("allow", "github", "reads", false)
	}
	m.Decided("deny", "github", "protect-main", false)
	m.Decided("deny", "http", "", false)
	m.Decided("deny", "npm", "", true)
	m.DecisionTime("github", 300*time.Microsecond)
	m.DecisionTime("github", 2*time.Millisecond)
	m.Forwarded("github", 40*time.Millisecond)
	m.AuditWritten(50 * time.Microsecond)
	m.AuditDurable(3 * time.Millisecond)
	m.MCPToolCall("docs", "allow")
	m.Tokens("claude-x", 10, 20, 0, 5)
	m.SetApprovalsPending(func() int64 { return 2 })
	m.SetKillSwitch(func() bool { return true })

	f := scrape(t, m)
	for _, c := range []struct {
		labels metricstest.Labels
		want   float64
	}{
		{metricstest.Labels{"effect": "allow", "connector": "github", "rule": "reads"}, 3},
		{metricstest.Labels{"effect": "deny", "connector": "github", "rule": "protect-main"}, 1},
		{metricstest.Labels{"effect": "deny", "connector": "http", "rule": "(default)"}, 1},
		{metricstest.Labels{"effect": "deny", "connector": "npm", "rule": "(kill switch)"}, 1},
		{metricstest.Labels{}, 6},
	} {
		if got := f.Counter("tf_decisions_total", c.labels); got != c.want {
			t.Errorf("tf_decisions_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if n := f.HistogramCount("tf_decision_duration_seconds", metricstest.Labels{"connector": "github"}); n != 2 {
		t.Errorf("decision duration count = %d, want 2", n)
	}
	if n := f.HistogramCount("tf_forward_duration_seconds", nil); n != 1 {
		t.Errorf("forward duration count = %d, want 1", n)
	}
	if n := f.HistogramCount("tf_audit_write_duration_seconds", nil); n != 1 {
		t.Errorf("audit write count = %d, want 1", n)
	}
	if n := f.HistogramCount("tf_audit_durable_lag_seconds", nil); n != 1 {
		t.Errorf("audit durable count = %d, want 1", n)
	}
	if got := f.Counter("tf_mcp_tool_calls_total", metricstest.Labels{"server": "docs", "effect": "allow"}); got != 1 {
		t.Errorf("mcp tool calls = %v, want 1", got)
	}
	if got := f.Counter("tf_model_tokens_total", metricstest.Labels{"model": "claude-x", "kind": "output"}); got != 20 {
		t.Errorf("output tokens = %v, want 20", got)
	}
	if got := f.Counter("tf_model_tokens_total", metricstest.Labels{"kind": "cache_read"}); got != 0 {
		t.Errorf("cache read tokens = %v, want none", got)
	}
	if v, ok := f.Gauge("tf_approvals_pending", nil); !ok || v != 2 {
		t.Errorf("tf_approvals_pending = %v %v, want 2", v, ok)
	}
	if v, ok := f.Gauge("tf_kill_switch_active", nil); !ok || v != 1 {
		t.Errorf("tf_kill_switch_active = %v %v, want 1", v, ok)
	}
	// No shipping configured: the shipping gauges are absent, not zero.
	if _, ok := f.Gauge("tf_audit_ship_pending", nil); ok {
		t.Error("tf_audit_ship_pending reported without a shipper")
	}
	m.SetShipLag(func() (int64, time.Duration) { return 7, 1500 * time.Millisecond })
	f = scrape(t, m)
	if v, _ := f.Gauge("tf_audit_ship_pending", nil); v != 7 {
		t.Errorf("tf_audit_ship_pending = %v, want 7", v)
	}
	if v, _ := f.Gauge("tf_audit_ship_lag_seconds", nil); v != 1.5 {
		t.Errorf("tf_audit_ship_lag_seconds = %v, want 1.5", v)
	}
	if v, ok := f.Gauge("tf_gateway_info", metricstest.Labels{"gateway": "g1"}); !ok || v != 1 {
		t.Errorf("tf_gateway_info does not name the gateway: %v", f["tf_gateway_info"])
	}
}

// The metrics endpoint is on loopback unless the user says otherwise: it
// has no authentication.
func TestListenRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "example.com:9464", "10.1.2.3:9464"} {
		_, err := metrics.New(metrics.Config{Listen: addr, Getenv: noEnv})
		if err == nil || !strings.Contains(err.Error(), "not loopback") {
			t.Errorf("listen %q: err = %v, want a refusal that says not loopback", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1", "nonsense", "127.0.0.1:http-alt-x"} {
		if _, err := metrics.New(metrics.Config{Listen: addr, Getenv: noEnv}); err == nil {
			t.Errorf("listen %q: no error", addr)
		}
	}
	m := start(t, metrics.Config{Listen: "0.0.0.0:0", AllowNonLoopback: true})
	if m.Addr() == "" {
		t.Fatal("allowed non-loopback address not served")
	}
	m2 := start(t, metrics.Config{Listen: "localhost:0"})
	if host, _, _ := net.SplitHostPort(m2.Addr()); !net.ParseIP(host).IsLoopback() {
		t.Errorf("localhost served on %s", m2.Addr())
	}
}

func TestNothingConfiguredIsNil(t *testing.T) {
	m, err := metrics.New(metrics.Config{Getenv: noEnv})
	if err != nil || m != nil {
		t.Fatalf("New(zero) = %v, %v; want nil, nil", m, err)
	}
	// Every method of a nil *Metrics is a no-op.
	m.Decided("allow", "http", "", false)
	m.DecisionTime("http", time.Millisecond)
	m.Forwarded("http", time.Millisecond)
	m.AuditWritten(time.Millisecond)
	m.AuditDurable(time.Millisecond)
	m.MCPToolCall("s", "allow")
	m.Tokens("m", 1, 1, 1, 1)
	m.SetShipLag(nil)
	m.SetApprovalsPending(nil)
	m.SetKillSwitch(nil)
	if m.Addr() != "" || m.Handler() != nil || m.Close(context.Background()) != nil {
		t.Fatal("nil Metrics is not inert")
	}
}

// Names tf does not choose (a model an upstream reports, an MCP server, a
// rule) cannot grow the series without bound: past the limit they are
// counted as (other), and the counts still add up.
func TestCardinalityBound(t *testing.T) {
	m := start(t, metrics.Config{Listen: "127.0.0.1:0"})
	const n = 1000
	for i := range n {
		m.Tokens(fmt.Sprintf("model-%d", i), 1, 0, 0, 0)
		m.MCPToolCall(fmt.Sprintf("server-%d", i), "allow")
		m.Decided("deny", "http", fmt.Sprintf("rule-%d", i), false)
	}
	f := scrape(t, m)
	if got := f.Counter("tf_model_tokens_total", nil); got != n {
		t.Errorf("tokens = %v, want %d", got, n)
	}
	if got := f.Counter("tf_mcp_tool_calls_total", nil); got != n {
		t.Errorf("mcp calls = %v, want %d", got, n)
	}
	if got := f.Counter("tf_decisions_total", nil); got != n {
		t.Errorf("decisions = %v, want %d", got, n)
	}
	for _, c := range []struct{ name, label string }{
		{"tf_model_tokens_total", "model"}, {"tf_mcp_tool_calls_total", "server"}, {"tf_decisions_total", "rule"},
	} {
		vals := f.LabelValues(c.name, c.label)
		if len(vals) > 300 {
			t.Errorf("%s has %d values of %s, want at most ~256", c.name, len(vals), c.label)
		}
		if f.Counter(c.name, metricstest.Labels{c.label: metrics.Other}) == 0 {
			t.Errorf("%s: nothing counted as %s", c.name, metrics.Other)
		}
	}
}

// The same instruments reach an OTLP collector: here a local receiver
// that decodes the protobuf the exporter posts.
func TestOTLPExport(t *testing.T) {
	rcv := metricstest.NewReceiver()
	defer rcv.Close()
	m, err := metrics.New(metrics.Config{
		Listen: "127.0.0.1:0", Gateway: "g2", Getenv: noEnv,
		OTLP: metrics.OTLP{Endpoint: rcv.URL, Headers: map[string]string{"Authorization": "Bearer t0ken"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.OTLPEndpoint(), rcv.URL) || strings.Contains(m.OTLPEndpoint(), "t0ken") {
		t.Errorf("OTLPEndpoint = %q", m.OTLPEndpoint())
	}
	m.Decided("allow", "github", "reads", false)
	m.Decided("allow", "github", "reads", false)
	m.Decided("deny", "npm", "", false)
	m.DecisionTime("github", time.Millisecond)
	m.SetApprovalsPending(func() int64 { return 1 })
	// Close pushes what is measured.
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, headers := rcv.Requests()
	if n == 0 {
		t.Fatal("no export arrived")
	}
	if headers[0].Get("Authorization") != "Bearer t0ken" {
		t.Errorf("headers not sent: %v", headers[0])
	}
	got, res := rcv.Last()
	if res["tf.gateway"] != "g2" || res["service.name"] != "tf" {
		t.Errorf("resource = %v", res)
	}
	if s := metricstest.Sum(got["tf_decisions_total"], metricstest.Labels{"effect": "allow", "rule": "reads"}); s != 2 {
		t.Errorf("tf_decisions_total allow = %v, want 2", s)
	}
	if s := metricstest.Sum(got["tf_decisions_total"], metricstest.Labels{"rule": "(default)"}); s != 1 {
		t.Errorf("tf_decisions_total default = %v, want 1", s)
	}
	if c := metricstest.HistCount(got["tf_decision_duration_seconds"], nil); c != 1 {
		t.Errorf("tf_decision_duration_seconds count = %d, want 1", c)
	}
	if v, ok := metricstest.GaugeValue(got["tf_approvals_pending"]); !ok || v != 1 {
		t.Errorf("tf_approvals_pending = %v %v", v, ok)
	}
}

// The standard environment variable turns OTLP on, and a malformed one is
// an error at start rather than a silent default.
func TestOTLPFromEnvironment(t *testing.T) {
	rcv := metricstest.NewReceiver()
	defer rcv.Close()
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL}
	m, err := metrics.New(metrics.Config{Getenv: func(k string) string { return env[k] }})
	if err != nil || m == nil {
		t.Fatalf("New = %v, %v", m, err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL) // the exporter reads it itself
	m.Decided("allow", "http", "", false)
	_ = m.Close(context.Background())

	for _, bad := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"},
		{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://x/"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
	} {
		_, err := metrics.New(metrics.Config{Getenv: func(k string) string { return bad[k] }})
		if err == nil {
			t.Errorf("%v: no error", bad)
		} else if !strings.Contains(err.Error(), "OTEL_EXPORTER") && !strings.Contains(err.Error(), "protocol") {
			t.Errorf("%v: error does not say which setting: %v", bad, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:4318", "http://", "://x"} {
		if _, err := metrics.New(metrics.Config{OTLP: metrics.OTLP{Endpoint: bad}, Getenv: noEnv}); err == nil || !strings.Contains(err.Error(), "otel endpoint") {
			t.Errorf("endpoint %q: err = %v", bad, err)
		}
	}
}

// A collector that fails or hangs never blocks recording, and Close gives
// up when its context ends.
func TestOTLPCollectorDown(t *testing.T) {
	rcv := metricstest.NewReceiver()
	defer rcv.Close()
	rcv.FailWith(http.StatusInternalServerError)
	m := start(t, metrics.Config{OTLP: metrics.OTLP{Endpoint: rcv.URL, Interval: 20 * time.Millisecond}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.Decided("allow", "http", "", false)
		if at, err := metrics.LastExportError(); err != nil && !at.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failing push was never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}

	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	h, err := metrics.New(metrics.Config{OTLP: metrics.OTLP{Endpoint: hang.URL}, Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	for range 1000 {
		h.Decided("allow", "http", "", false)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("recording with a hung collector took %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began = time.Now()
	err = h.Close(ctx)
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("Close with a hung collector took %v", d)
	}
	if err == nil {
		t.Error("Close with a hung collector reported no error")
	}
}

// protocol: grpc pushes the same metrics over OTLP/gRPC.
func TestOTLPGRPC(t *testing.T) {
	rcv, err := metricstest.NewGRPCReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	m, err := metrics.New(metrics.Config{Getenv: noEnv,
		OTLP: metrics.OTLP{Endpoint: rcv.URL(), Protocol: "grpc", Headers: map[string]string{"x-team": "blue"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.OTLPEndpoint(), "grpc ") {
		t.Errorf("OTLPEndpoint = %q", m.OTLPEndpoint())
	}
	m.Decided("deny", "npm", "no-publish", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, md := rcv.Last()
	if s := metricstest.Sum(got["tf_decisions_total"], metricstest.Labels{"rule": "no-publish", "effect": "deny"}); s != 1 {
		t.Errorf("tf_decisions_total over gRPC = %v, want 1", s)
	}
	if v := md.Get("x-team"); len(v) != 1 || v[0] != "blue" {
		t.Errorf("metadata %v", md)
	}
}
