package gateway

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/testdata"
)

const (
	anthropicKey = "sk-ant-api03-tf-holds-this-one"
	openaiKey    = "sk-proj-tf-holds-this-one-too"
	policyKey    = "sk-ant-api03-the-policy-names-this"
)

// The model API keys tf took from its environment are injected on their
// own API's hosts only, replacing the placeholder the agent sends; on any
// other host the placeholder goes out as it came; a credential the policy
// names for the connector wins; the agent's environment has the
// placeholder and no variable holding a key.
func TestAgentKeysInjectedOnTheirHostsOnly(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // host → the credential headers it saw
	cert, caPEM, err := testdata.ServerCert("api.anthropic.com", "api.openai.com", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Host] = "x-api-key=" + r.Header.Get("X-Api-Key") + " authorization=" + r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	addr := strings.TrimPrefix(up.URL, "https://")
	env := map[string]string{
		keyring.EnvName("anthropic-api-key"): anthropicKey,
		keyring.EnvName("openai-api-key"):    openaiKey,
		keyring.EnvName("policy-key"):        policyKey,
	}
	resolver := func() *keyring.Resolver {
		return keyring.NewResolver(nil, keyring.ResolverOptions{LookupEnv: func(n string) (string, bool) { v, ok := env[n]; return v, ok }})
	}
	var held []keyring.AgentKey
	for _, k := range keyring.AgentKeys {
		if k.Env == "ANTHROPIC_API_KEY" || k.Env == "OPENAI_API_KEY" {
			held = append(held, k)
		}
	}
	const allowAll = "version: 1\ndefault: allow\n"
	const ask = `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[]}`
	for _, c := range []struct {
		name, policy string
		want         map[string]string
	}{
		{"agent keys", allowAll, map[string]string{
			"api.anthropic.com": "x-api-key=" + anthropicKey + " authorization=",
			"api.openai.com":    "x-api-key= authorization=Bearer " + openaiKey,
			"example.test":      "x-api-key=tf-managed authorization=",
		}},
		{"the policy's credential wins", allowAll + "credentials:\n  connectors:\n    anthropic: {secret: policy-key, header: x-api-key, format: \"{}\"}\n", map[string]string{
			"api.anthropic.com": "x-api-key=" + policyKey + " authorization=",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			clear(seen)
			mu.Unlock()
			f := start(t, policy(t, c.policy), func(cfg *Config) {
				cfg.Secrets = resolver()
				cfg.AgentKeys = held
				cfg.UpstreamCAs = append(cfg.UpstreamCAs, caPEM)
				for _, h := range []string{"api.anthropic.com", "api.openai.com", "example.test"} {
					cfg.Upstreams[h] = addr
				}
			})
			for _, r := range []struct{ url, header, value string }{
				{"https://api.anthropic.com/v1/messages", "X-Api-Key", "tf-managed"},
				{"https://api.openai.com/v1/responses", "Authorization", "Bearer tf-managed"},
				{"https://example.test/v1/messages", "X-Api-Key", "tf-managed"},
			} {
				req, _ := http.NewRequest("POST", r.url, strings.NewReader(ask))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(r.header, r.value)
				res, err := f.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != 200 {
					t.Errorf("%s: status %d", r.url, res.StatusCode)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for host, want := range c.want {
				if seen[host] != want {
					t.Errorf("%s saw %q, want %q", host, seen[host], want)
				}
			}
			out, removed := f.g.ScrubEnv([]string{"PATH=/bin", "MY_COPY=" + openaiKey, "OPENAI_API_KEY=" + openaiKey}, nil)
			got := strings.Join(out, " ")
			if strings.Contains(got, anthropicKey) || strings.Contains(got, openaiKey) {
				t.Errorf("a key is in the agent's environment: %s", got)
			}
			for _, want := range []string{"ANTHROPIC_API_KEY=tf-managed", "OPENAI_API_KEY=tf-managed", "PATH=/bin"} {
				if !strings.Contains(got, want) {
					t.Errorf("the agent's environment lacks %s: %s", want, got)
				}
			}
			if strings.Join(removed, ",") != "MY_COPY,OPENAI_API_KEY" {
				t.Errorf("removed %v", removed)
			}
		})
	}
}

// A key tf took that no longer resolves stops the gateway at start.
func TestAgentKeyMissingStopsTheGateway(t *testing.T) {
	_, err := Start(Config{Name: "k", Home: t.TempDir(), Policy: policy(t, "version: 1\n"),
		Secrets:   keyring.NewResolver(nil, keyring.ResolverOptions{LookupEnv: func(string) (string, bool) { return "", false }}),
		AgentKeys: keyring.AgentKeys[:1]})
	if err == nil || !strings.Contains(err.Error(), "ANTHROPIC_API_KEY") {
		t.Fatalf("err = %v, want one naming ANTHROPIC_API_KEY", err)
	}
}
