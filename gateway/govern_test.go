package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
	"github.com/tameflare/tf/version"
)

type fixture struct {
	g      *Gateway
	client *http.Client
	hits   atomic.Int64
	home   string
	mu     sync.Mutex
	auth   []string
	paths  []string
}

func policy(t *testing.T, src string) *rules.Policy {
	t.Helper()
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(src)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, p *rules.Policy, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{home: t.TempDir()}
	cert, caPEM, err := testdata.ServerCert("api.github.com", "example.test", "ghe.example.test")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.paths = append(f.paths, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		switch r.URL.Path {
		case "/echo/body":
			io.WriteString(w, "you sent "+r.Header.Get("Authorization"))
			return
		case "/echo/header":
			w.Header().Set("X-Debug-Auth", r.Header.Get("Authorization"))
			io.WriteString(w, "see the header")
			return
		case "/echo/stream":
			// Streamed (no length): the secret comes after a first chunk.
			io.WriteString(w, "data: first\n\n")
			http.NewResponseController(w).Flush()
			io.WriteString(w, "data: "+r.Header.Get("Authorization")+"\n\n")
			return
		case "/graphql", "/api/graphql":
			b, _ := io.ReadAll(r.Body)
			if strings.Contains(string(b), "node(id:") {
				if strings.Contains(string(b), `"REF_main"`) {
					io.WriteString(w, `{"data":{"node":{"name":"main","prefix":"refs/heads/","repository":{"nameWithOwner":"acme/app"}}}}`)
				} else {
					io.WriteString(w, `{"data":{"node":null}}`)
				}
				return
			}
			io.WriteString(w, `{"data":{}}`)
			return
		case "/repos/acme/app/pulls/7", "/api/v3/repos/acme/app/pulls/7":
			io.WriteString(w, `{"number":7,"base":{"ref":"main"}}`)
		case "/repos/acme/app/pulls/8":
			io.WriteString(w, `{"number":8,"base":{"ref":"dev"}}`)
		default:
			io.WriteString(w, "upstream says hi")
		}
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	addr := strings.TrimPrefix(up.URL, "https://")
	cfg := Config{Name: "test", Home: f.home, Policy: p,
		Upstreams:   map[string]string{"api.github.com": addr, "example.test": addr},
		UpstreamCAs: [][]byte{caPEM}}
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	f.g = g
	tr, err := testdata.ProxyTransport(g.ProxyURL(), g.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	f.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return f
}

func (f *fixture) do(t *testing.T, method, u, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// waitRecords returns the records of kind once there are at least n, or
// what there is after five seconds: outcomes are queued, not waited for.
func (f *fixture) waitRecords(t *testing.T, kind audit.Kind, n int) []*audit.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := f.records(t, kind)
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) records(t *testing.T, kind audit.Kind) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	if err := audit.Scan(filepath.Join(f.home, "audit"), audit.Filter{Kind: kind}, func(r *audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A request the connector cannot parse is refused and recorded: a git push
// whose command list is garbled never reaches the upstream.
func TestUnclassifiableIsRefusedAndRecorded(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: allow\n"), nil)
	res, body := f.do(t, "POST", "https://api.github.com/graphql", `{"query": "mutation { createPullRequest(input: {"`)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "could not classify") {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	if f.hits.Load() != 0 {
		t.Fatal("an unclassifiable request reached the upstream")
	}
	recs := f.records(t, audit.KindDecision)
	if len(recs) != 1 || recs[0].Action.Type != "tf.unclassified" || recs[0].Decision.Effect != rules.Deny || recs[0].Action.Connector != "github" {
		t.Fatalf("records: %+v", recs)
	}
	outs := f.waitRecords(t, audit.KindOutcome, 1)
	if len(outs) != 1 || outs[0].RequestID != recs[0].RequestID || outs[0].Status != http.StatusForbidden {
		t.Fatalf("outcome records: %+v", outs)
	}
}

// Monitor mode forwards what enforce would refuse, and records "would deny".
func TestMonitorModeForwardsAndRecords(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: deny\n"), func(c *Config) { c.Mode = rules.Monitor })
	res, body := f.do(t, "DELETE", "https://api.github.com/repos/acme/app", "")
	if res.StatusCode != 200 || body != "upstream says hi" {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	recs := f.records(t, audit.KindDecision)
	if len(recs) != 1 || recs[0].Decision.Effect != rules.Allow || !recs[0].Decision.Monitor || recs[0].Decision.Would != rules.Deny {
		t.Fatalf("record: %+v", recs[0].Decision)
	}
	if recs[0].Label() != "would deny" {
		t.Errorf("label %q", recs[0].Label())
	}
}

// A refusal carries the rule and reason for the agent and X-TF headers
// for auditors; the decision record is written before the answer.
func TestRefusalResponse(t *testing.T) {
	f := start(t, policy(t, "version: 1\nrules:\n  - name: no-deletes\n    actions: [github.repo.delete]\n    decision: deny\n    reason: Repositories stay.\n"), nil)
	res, body := f.do(t, "DELETE", "https://api.github.com/repos/acme/app", "")
	if res.StatusCode != 403 || res.Header.Get("X-TF-Decision") != "deny" || res.Header.Get("X-TF-Rule") != "no-deletes" || res.Header.Get("X-TF-Request-Id") == "" {
		t.Fatalf("%d %v", res.StatusCode, res.Header)
	}
	for _, want := range []string{`"rule":"no-deletes"`, `"reason":"Repositories stay."`, `"action":"github.repo.delete"`, `"request_id":"` + res.Header.Get("X-TF-Request-Id") + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s: %s", want, body)
		}
	}
}

// The policy can be swapped while the gateway runs; new requests use it.
func TestSetPolicy(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: deny\n"), nil)
	if res, _ := f.do(t, "GET", "https://api.github.com/repos/acme/app", ""); res.StatusCode != 403 {
		t.Fatalf("status %d", res.StatusCode)
	}
	f.g.SetPolicy(policy(t, "version: 1\ndefault: allow\n"))
	if res, _ := f.do(t, "GET", "https://api.github.com/repos/acme/app", ""); res.StatusCode != 200 {
		t.Fatalf("status %d after the new policy", res.StatusCode)
	}
}

const credPolicy = "version: 1\ndefault: allow\ncredentials:\n  github: {secret: gh-token}\n"

func TestMissingSecretStopsStart(t *testing.T) {
	r := keyring.NewResolver(nil, keyring.ResolverOptions{LookupEnv: func(string) (string, bool) { return "", false }})
	_, err := Start(Config{Home: t.TempDir(), Policy: policy(t, credPolicy), Secrets: r})
	if err == nil || !strings.Contains(err.Error(), "gh-token") {
		t.Fatalf("got %v", err)
	}
}

// A rotated secret takes effect on the next request, without a restart.
func TestSecretRotation(t *testing.T) {
	var mu sync.Mutex
	value := "first-secret-value"
	lookup := func(name string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if name == keyring.EnvName("gh-token") {
			return value, true
		}
		return "", false
	}
	r := keyring.NewResolver(nil, keyring.ResolverOptions{LookupEnv: lookup})
	f := start(t, policy(t, credPolicy), func(c *Config) { c.Secrets = r })
	f.do(t, "GET", "https://api.github.com/user", "")
	mu.Lock()
	value = "second-secret-value"
	mu.Unlock()
	f.do(t, "GET", "https://api.github.com/user", "")
	f.do(t, "GET", "https://example.test/x", "") // another connector's host: no credential
	f.mu.Lock()
	defer f.mu.Unlock()
	want := []string{"Bearer first-secret-value", "Bearer second-secret-value", ""}
	if strings.Join(f.auth, "|") != strings.Join(want, "|") {
		t.Errorf("upstream saw %q, want %q", f.auth, want)
	}
}

// A rule on the base branch of a merge gets it from one lookup at the
// upstream when the request names only the pull request.
func TestMergeBaseLookup(t *testing.T) {
	f := start(t, policy(t, `version: 1
default: allow
rules:
  - name: merges-into-main
    actions: [github.pr.merge]
    when: params.base == "main"
    decision: deny
    reason: Merges into main go through the release train.
`), nil)
	res, body := f.do(t, "PUT", "https://api.github.com/repos/acme/app/pulls/7/merge", `{"merge_method":"squash"}`)
	if res.StatusCode != 403 || !strings.Contains(body, "release train") {
		t.Fatalf("merge 7: %d %s", res.StatusCode, body)
	}
	res, _ = f.do(t, "PUT", "https://api.github.com/repos/acme/app/pulls/8/merge", `{}`)
	if res.StatusCode != 200 {
		t.Fatalf("merge 8: %d", res.StatusCode)
	}
	f.mu.Lock()
	got := strings.Join(f.paths, ", ")
	f.mu.Unlock()
	if got != "GET /repos/acme/app/pulls/7, GET /repos/acme/app/pulls/8, PUT /repos/acme/app/pulls/8/merge" {
		t.Errorf("upstream saw %s", got)
	}
	var lookups []string
	for _, r := range f.records(t, audit.KindEvent) {
		if r.Event == "github.base_lookup" {
			lookups = append(lookups, fmt.Sprint(r.Details["number"], "=", r.Details["base"]))
		}
	}
	if strings.Join(lookups, " ") != "7=main 8=dev" {
		t.Errorf("recorded lookups %v", lookups)
	}
	// A merge whose base cannot be found is refused.
	res, body = f.do(t, "PUT", "https://api.github.com/repos/acme/app/pulls/9/merge", `{}`)
	if res.StatusCode != 403 || !strings.Contains(body, "base branch") {
		t.Errorf("merge 9: %d %s", res.StatusCode, body)
	}
}

// Every gateway.started event names the build of tf that started it, so a
// decision can be traced to the code that made it.
func TestStartedEventCarriesVersion(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: deny\n"), nil)
	var found bool
	for _, r := range f.records(t, audit.KindEvent) {
		if r.Event == audit.EventGatewayStarted {
			found = true
			if v, _ := r.Details["tf_version"].(string); v == "" || v != version.Get().Short() {
				t.Errorf("gateway.started tf_version = %v, want %q", r.Details["tf_version"], version.Get().Short())
			}
		}
	}
	if !found {
		t.Fatal("no gateway.started event")
	}
}
