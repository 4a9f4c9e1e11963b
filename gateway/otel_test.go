package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/metrics/metricstest"
	"github.com/tameflare/tf/otlp"
)

const otelPolicy = `version: 1
default: deny
rules:
  - name: reads
    actions: [http.get]
    decision: allow
`

// otlpSink is an OTLP/HTTP endpoint that keeps the decisions it receives;
// status, when not 200, is what it answers instead.
type otlpSink struct {
	mu        sync.Mutex
	decisions []string
	status    int
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != 0 && s.status != http.StatusOK {
		http.Error(w, "down for maintenance", s.status)
		return
	}
	var req collogpb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				for _, a := range lr.Attributes {
					if a.Key == otlp.AttrDecision {
						s.decisions = append(s.decisions, a.Value.GetStringValue())
					}
				}
			}
		}
	}
}

func (s *otlpSink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.decisions...)
}

func withOTelConfig(t *testing.T, yaml string) func(*Config) {
	return func(c *Config) {
		if err := os.WriteFile(ConfigPath(c.Home), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A gateway with otel: in its config ships its decisions; while the
// collector fails it governs on and the log keeps everything, and the
// records arrive once the collector is back.
func TestGatewayShipsAuditToOTLP(t *testing.T) {
	sink := &otlpSink{status: http.StatusInternalServerError}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close) // after the gateway's Close, which ships what is left
	f := start(t, policy(t, otelPolicy), withOTelConfig(t, "otel:\n  endpoint: "+srv.URL+"\n  headers: {x-team: platform}\n"))
	if res, _ := f.do(t, "GET", "https://example.test/read", ""); res.StatusCode != 200 {
		t.Fatalf("GET through a gateway whose collector fails: %d", res.StatusCode)
	}
	if res, _ := f.do(t, "POST", "https://example.test/write", "x"); res.StatusCode != http.StatusForbidden {
		t.Fatalf("POST: %d, want 403", res.StatusCode)
	}
	if n := len(f.waitRecords(t, audit.KindDecision, 2)); n != 2 {
		t.Fatalf("%d decision records in the log, want 2", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := otlp.ReadStatus(f.home, time.Now())
		if err == nil && strings.Contains(st.Error, "500") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the collector's 500: %+v, %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sink.mu.Lock()
	sink.status = http.StatusOK
	sink.mu.Unlock()
	deadline = time.Now().Add(15 * time.Second)
	for {
		got := sink.got()
		if strings.Contains(strings.Join(got, ","), "allow") && strings.Contains(strings.Join(got, ","), "deny") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector got decisions %v, want an allow and a deny", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, ok := f.g.ShippingLag(); !ok {
		t.Fatal("ShippingLag says the gateway does not ship")
	}
}

// A malformed endpoint does not stop the gateway: it governs, records,
// and tf status says why nothing is shipped.
func TestGatewayWithBadOTLPEndpointGovernsOn(t *testing.T) {
	f := start(t, policy(t, otelPolicy), withOTelConfig(t, "otel:\n  endpoint: localhost:4318\n"))
	if res, _ := f.do(t, "GET", "https://example.test/read", ""); res.StatusCode != 200 {
		t.Fatalf("GET: %d", res.StatusCode)
	}
	if res, _ := f.do(t, "POST", "https://example.test/write", "x"); res.StatusCode != http.StatusForbidden {
		t.Fatalf("POST: %d, want 403", res.StatusCode)
	}
	if _, _, ok := f.g.ShippingLag(); ok {
		t.Fatal("a gateway with a malformed endpoint claims to ship")
	}
	st, err := otlp.ReadStatus(f.home, time.Now())
	if err != nil || !strings.Contains(st.Error, "want an http:// or https:// URL") {
		t.Fatalf("status %+v, %v", st, err)
	}
}

// While the collector refuses, the records it has not taken show on
// /metrics as the shipping backlog; when it takes them, the backlog ends.
func TestShippingLagOnMetrics(t *testing.T) {
	sink := &otlpSink{status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	f := start(t, policy(t, otelPolicy), func(c *Config) {
		withOTelConfig(t, "otel:\n  endpoint: "+srv.URL+"\n")(c)
		c.MetricsListen = "127.0.0.1:0"
	})
	if res, _ := f.do(t, "GET", "https://example.test/read", ""); res.StatusCode != 200 {
		t.Fatalf("GET: %d", res.StatusCode)
	}
	scrapeUntil(t, f.g.MetricsAddr(), func(m metricstest.Families) bool {
		v, ok := m.Gauge("tf_audit_ship_pending", nil)
		return ok && v >= 1
	})
	sink.mu.Lock()
	sink.status = http.StatusOK
	sink.mu.Unlock()
	scrapeUntil(t, f.g.MetricsAddr(), func(m metricstest.Families) bool {
		v, ok := m.Gauge("tf_audit_ship_pending", nil)
		return ok && v == 0
	})
}
