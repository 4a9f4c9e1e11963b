package gateway

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tameflare/tf/testdata"
)

// A model call's body past the inspected prefix is forwarded with
// params.body_truncated and none of its fields. When a rule reads one of
// those fields (a deny on params.model), padding the conversation would
// dodge it: the model named after the padding, or an earlier "model" of a
// nested object, is never seen. Such a call is refused, saying why; under
// a policy whose rules read none of them (the built-in one) it goes
// through, so long sessions keep working.
func TestTruncatedModelCallFailsClosed(t *testing.T) {
	cert, caPEM, err := testdata.ServerCert("api.anthropic.com")
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	const allowModels = `version: 1
default: deny
rules:
  - name: agent-model-calls
    actions: [anthropic.messages.create]
    decision: allow
    reason: the model
`
	const denyOpus = allowModels + `  - name: no-opus
    actions: [anthropic.*]
    when: params.model matches "opus"
    decision: deny
    reason: Opus is too dear.
`
	// 8 KiB of conversation, then the model: past a 4 KiB prefix.
	padded := `{"messages":[{"role":"user","content":"` + strings.Repeat("a", 8<<10) + `"}],"max_tokens":10,"model":"claude-opus-4-1"}`
	small := `{"model":"claude-opus-4-1","max_tokens":10,"messages":[]}`
	for _, c := range []struct {
		name, policy, body string
		status             int
		reason             string
	}{
		{"a rule reads params.model: refused", denyOpus, padded, 403, "larger than the 4096 bytes tf inspects"},
		{"read in full, the deny rule decides", denyOpus, small, 403, "Opus is too dear."},
		{"no rule reads the body: forwarded", allowModels, padded, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := start(t, policy(t, c.policy), func(cfg *Config) {
				cfg.Upstreams["api.anthropic.com"] = strings.TrimPrefix(up.URL, "https://")
				cfg.UpstreamCAs = append(cfg.UpstreamCAs, caPEM)
				cfg.Limits.MaxInspectedBody = 4096
			})
			before := hits.Load()
			req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages", strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			res, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.status || !strings.Contains(string(b), c.reason) {
				t.Fatalf("status %d, body %s; want %d and %q", res.StatusCode, b, c.status, c.reason)
			}
			if reached := hits.Load() > before; reached != (c.status == 200) {
				t.Errorf("the upstream was reached: %v", reached)
			}
		})
	}
}
