package gateway

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/metrics/metricstest"
	"github.com/tameflare/tf/testdata"
)

// A model call's outcome carries the usage its response reported; the
// response reaches the agent byte for byte whatever it holds; what cannot
// be read is unknown with the reason, and an error answer has no usage.
func TestModelCallUsage(t *testing.T) {
	const stream = "event: message_start\n" +
		`data: {"type":"message_start","message":{"model":"claude-haiku-4-5","usage":{"input_tokens":21,"cache_read_input_tokens":400,"output_tokens":1}}}` + "\n\n" +
		"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}` + "\n\n" +
		"event: message_delta\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}` + "\n\n"
	bodies := map[string]struct {
		status  int
		ct, enc string
		body    string
		want    *audit.Usage
	}{
		"stream":    {200, "text/event-stream", "", stream, &audit.Usage{Model: "claude-haiku-4-5", Input: 21, Output: 9, CacheRead: 400}},
		"json":      {200, "application/json", "", `{"model":"claude-haiku-4-5","usage":{"input_tokens":3,"output_tokens":4}}`, &audit.Usage{Model: "claude-haiku-4-5", Input: 3, Output: 4}},
		"malformed": {200, "text/event-stream", "", "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":[1]}}}\n\n", &audit.Usage{Unknown: "malformed usage event: json: cannot unmarshal array into Go struct field usageJSON.message.usage.input_tokens of type int64"}},
		"gzip":      {200, "application/json", "gzip", "\x1f\x8b not really", &audit.Usage{Unknown: "the response is gzip-encoded"}},
		"error":     {429, "application/json", "", `{"type":"error","error":{"type":"rate_limit_error"}}`, nil},
	}
	cert, caPEM, err := testdata.ServerCert("api.anthropic.com")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := bodies[r.URL.Query().Get("case")]
		w.Header().Set("Content-Type", b.ct)
		if b.enc != "" {
			w.Header().Set("Content-Encoding", b.enc)
		}
		w.WriteHeader(b.status)
		io.WriteString(w, b.body)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	f := start(t, policy(t, "version: 1\ndefault: deny\nrules:\n  - {name: model, actions: [anthropic.messages.create], decision: allow}\n"), func(c *Config) {
		c.Upstreams["api.anthropic.com"] = strings.TrimPrefix(up.URL, "https://")
		c.UpstreamCAs = append(c.UpstreamCAs, caPEM)
		c.MetricsListen = "127.0.0.1:0"
	})
	for name, c := range bodies {
		t.Run(name, func(t *testing.T) {
			res, got := f.do(t, "POST", "https://api.anthropic.com/v1/messages?case="+name, `{"model":"claude-haiku-4-5","max_tokens":10,"stream":true}`)
			if res.StatusCode != c.status || got != c.body && c.enc == "" {
				t.Fatalf("status %d, body %q; want %d, %q", res.StatusCode, got, c.status, c.body)
			}
			// Outcomes are queued, not waited for: poll, bounded.
			var out *audit.Record
			for deadline := time.Now().Add(5 * time.Second); out == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				for _, r := range f.records(t, audit.KindOutcome) {
					for _, d := range f.records(t, audit.KindDecision) {
						if d.RequestID == r.RequestID && d.Action.Request.Query == "case="+name {
							out = r
						}
					}
				}
			}
			if out == nil {
				t.Fatal("no outcome record")
			}
			if (out.Usage == nil) != (c.want == nil) || out.Usage != nil && *out.Usage != *c.want {
				t.Errorf("usage = %+v, want %+v", out.Usage, c.want)
			}
		})
	}
	// tf status sums them: four model calls with usage records, two of
	// them unknown; the error answer is not counted.
	want := admin.Tokens{Calls: 4, Unknown: 2, Input: 24, Output: 13, CacheRead: 400}
	if got := f.g.Status().Tokens; got != want {
		t.Errorf("status tokens = %+v, want %+v", got, want)
	}
	// /metrics counts the same tokens by model; unknown usage adds none.
	m, err := metricstest.Scrape("http://" + f.g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for kind, n := range map[string]int64{"input": want.Input, "output": want.Output, "cache_read": want.CacheRead} {
		if got := m.Counter("tf_model_tokens_total", metricstest.Labels{"model": "claude-haiku-4-5", "kind": kind}); got != float64(n) {
			t.Errorf("tf_model_tokens_total{kind=%s} = %v, want %d", kind, got, n)
		}
	}
	if vals := m.LabelValues("tf_model_tokens_total", "model"); len(vals) != 1 {
		t.Errorf("token models %v, want only claude-haiku-4-5", vals)
	}
}
