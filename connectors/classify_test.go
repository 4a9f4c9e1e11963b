package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/tameflare/tf/rules"
)

type classifyCase struct {
	Name      string            `yaml:"name"`
	Host      string            `yaml:"host"`
	Method    string            `yaml:"method"`
	Path      string            `yaml:"path"`
	Query     string            `yaml:"query"`
	Headers   map[string]string `yaml:"headers"`
	Body      string            `yaml:"body"`
	BodyFile  string            `yaml:"body_file"`
	Truncate  int               `yaml:"truncate"`
	Truncated bool              `yaml:"truncated"`
	Type      string            `yaml:"type"`
	Connector string            `yaml:"connector"`
	Resource  map[string]string `yaml:"resource"`
	Params    map[string]any    `yaml:"params"`
	Error     string            `yaml:"error"`
}

func testRegistry(t testing.TB) *Registry {
	t.Helper()
	reg, err := NewRegistry(Options{
		GitHub: GitHubOptions{EnterpriseHosts: []string{"ghe.example.com"}, RefLookup: testRefs},
		NPM:    NPMOptions{Registries: []NPMRegistry{{Host: "npm.corp.example", PathPrefix: "/api/npm/npm"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// testRefs resolves the ref node ids of the GraphQL table; others are
// unknown.
func testRefs(_ context.Context, host, id string) (RefNode, error) {
	switch id {
	case "REF_1":
		return RefNode{Owner: "acme", Repo: "app", Ref: "refs/heads/feature/old"}, nil
	case "REF_2":
		return RefNode{Owner: "acme", Repo: "app", Ref: "refs/tags/v1"}, nil
	case "REF_main":
		return RefNode{Owner: "Acme", Repo: "App", Ref: "refs/heads/main"}, nil
	}
	return RefNode{}, fmt.Errorf("no node %s on %s", id, host)
}

// newRequest builds a connector request as the proxy would hand it over.
func newRequest(method, host, path, query string, body []byte, truncated bool) *Request {
	target := "https://" + host + path
	if query != "" {
		target += "?" + query
	}
	hr := httptest.NewRequest(method, target, nil)
	return &Request{HTTP: hr, Scheme: "https", Body: body, Truncated: truncated}
}

// asJSON normalizes values (YAML uint64, Go int) for comparison.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestClassifyTable(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "classify.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []classifyCase
	if err := yaml.UnmarshalWithOptions(raw, &cases, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	reg := testRegistry(t)
	githubTypes := map[string]bool{}
	routesHit := map[*ghRoute]bool{}
	for _, c := range cases {
		if reg.Lookup(c.Host).Name() == "github" {
			var sp splitPath
			var m match
			if sp.split(strings.TrimPrefix(c.Path, "/api/v3")) {
				if route, ok := githubRouter.lookup(c.Method, &sp, &m); ok {
					routesHit[route] = true
				}
			}
		}
		t.Run(c.Name, func(t *testing.T) {
			a, ok := checkClassifyCase(t, reg, c)
			if ok && strings.HasPrefix(a.Type, "github.") && !strings.HasPrefix(a.Type, "github.api.") && !strings.HasPrefix(a.Type, "github.web.") {
				githubTypes[a.Type] = true
			}
		})
	}
	for _, d := range githubRoutes {
		var sp splitPath
		var m match
		sp.split(d.path) // a template matches itself: {x} is one segment
		if route, ok := githubRouter.lookup(d.method, &sp, &m); !ok || !routesHit[route] {
			t.Errorf("route %s %s (%s) has no case in testdata/classify.yaml", d.method, d.path, d.action)
		}
	}
	if len(githubTypes) < 40 {
		t.Errorf("the table covers %d github action types, want at least 40", len(githubTypes))
	}
}

// TestRouteTableReachable checks that every REST route of the table can be
// reached: a path built from its template matches that very route.
func TestRouteTableReachable(t *testing.T) {
	for _, d := range githubRoutes {
		path := d.path
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") {
				val := "x1"
				if seg == "{number}" {
					val = "12"
				}
				if strings.HasSuffix(seg, "...}") {
					val = "heads/a/b"
				}
				path = strings.Replace(path, seg, val, 1)
			}
		}
		var sp splitPath
		var m match
		if !sp.split(path) {
			t.Fatalf("%s: split failed", path)
		}
		route, ok := githubRouter.lookup(d.method, &sp, &m)
		if !ok || route.action != d.action {
			t.Errorf("%s %s: matched %v (ok %v), want %s", d.method, path, route, ok, d.action)
		}
	}
}

func TestRequestInfo(t *testing.T) {
	reg := testRegistry(t)
	r := newRequest("GET", "example.com:8443", "/a%20b", "access_token=abc&page=2&client_secret=s&x=1", nil, false)
	r.HTTP.Header.Set("Authorization", "Bearer secret")
	r.HTTP.Header.Set("Cookie", "s=1")
	r.HTTP.Header.Set("User-Agent", "gh/2.0")
	r.HTTP.Header.Set("Mcp-Method", "tools/call")
	acts, err := reg.Classify(r)
	if err != nil {
		t.Fatal(err)
	}
	got := acts[0].Request
	if got.Host != "example.com" || got.Port != 8443 || got.Scheme != "https" || got.Path != "/a b" || got.Method != "GET" {
		t.Errorf("request = %+v", got)
	}
	if got.Query != "access_token=REDACTED&page=2&client_secret=REDACTED&x=1" {
		t.Errorf("query = %q", got.Query)
	}
	if got.Headers["User-Agent"] != "gh/2.0" || got.Headers["Mcp-Method"] != "tools/call" {
		t.Errorf("headers = %v", got.Headers)
	}
	for k := range got.Headers {
		if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "Cookie") {
			t.Errorf("credential header %s recorded", k)
		}
	}
	if strings.Contains(asString(t, acts), "secret") && !strings.Contains(asString(t, acts), "client_secret=REDACTED") {
		t.Errorf("secret in actions: %s", asString(t, acts))
	}
	// Default ports follow the scheme.
	r = newRequest("GET", "example.com", "/", "", nil, false)
	r.Scheme = "http"
	acts, _ = reg.Classify(r)
	if acts[0].Request.Port != 80 {
		t.Errorf("port = %d, want 80", acts[0].Request.Port)
	}
}

func asString(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type fakeConnector struct{ name, host string }

func (f fakeConnector) Name() string          { return f.name }
func (f fakeConnector) Handles(h string) bool { return h == f.host }
func (f fakeConnector) Classify(*Request) ([]rules.Action, error) {
	return []rules.Action{{Type: f.name + ".thing.do"}}, nil
}

func TestRegistry(t *testing.T) {
	reg := testRegistry(t)
	for host, want := range map[string]string{
		"api.github.com": "github", "GitHub.com:443": "github", "uploads.github.com": "github",
		"ghe.example.com": "github", "registry.npmjs.org": "npm", "npm.corp.example": "npm", "example.org": "http",
	} {
		if got := reg.Lookup(host).Name(); got != want {
			t.Errorf("Lookup(%s) = %s, want %s", host, got, want)
		}
	}
	reg.Register(fakeConnector{"acme", "acme.example"})
	acts, err := reg.Classify(newRequest("POST", "acme.example", "/", "", nil, false))
	if err != nil || acts[0].Connector != "acme" || acts[0].Type != "acme.thing.do" {
		t.Errorf("custom connector: %+v, %v", acts, err)
	}
	for _, name := range []string{"acme", "github", "http"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register of a second %q did not panic", name)
				}
			}()
			reg.Register(fakeConnector{name, "x.example"})
		}()
	}
	if _, err := NewRegistry(Options{Declared: []Declared{{Name: "gh2", Hosts: []string{"api.github.com"}}}}); err == nil {
		t.Error("a declared connector claiming api.github.com was accepted")
	}
	if _, err := NewRegistry(Options{GitHub: GitHubOptions{EnterpriseHosts: []string{"github.com"}}}); err == nil {
		t.Error("github.com as an enterprise host was accepted")
	}
	if _, err := reg.Classify(&Request{}); err == nil {
		t.Error("Classify of an empty request did not fail")
	}
}

// upgrader is a connector that governs WebSocket.
type upgrader struct{ HTTP }

func (*upgrader) Name() string                 { return "ws" }
func (*upgrader) Handles(h string) bool        { return h == "ws.example.com" }
func (*upgrader) GovernsUpgrade(p string) bool { return p == "websocket" }

func TestUpgradeNeedsAGoverningConnector(t *testing.T) {
	reg := testRegistry(t)
	reg.Register(&upgrader{})
	for _, c := range []struct {
		host, proto string
		ok          bool
	}{
		{"api.github.com", "websocket", false},
		{"example.com", "h2c", false},
		{"ws.example.com", "websocket", true},
		{"ws.example.com", "h2c", false},
	} {
		r := newRequest("GET", c.host, "/socket", "", nil, false)
		r.HTTP.Header.Set("Upgrade", c.proto)
		_, err := reg.Classify(r)
		if c.ok != (err == nil) {
			t.Errorf("%s upgrade to %s: %v", c.host, c.proto, err)
		}
		if err != nil && !strings.Contains(err.Error(), "no connector governs that protocol") {
			t.Errorf("%s: reason %v", c.host, err)
		}
	}
}

// checkClassifyCase classifies the request of one table case and checks
// the action against it; ok is false when the case expects an error.
func checkClassifyCase(t *testing.T, reg *Registry, c classifyCase) (a rules.Action, ok bool) {
	t.Helper()
	body := []byte(c.Body)
	if c.BodyFile != "" {
		var err error
		body, err = os.ReadFile(filepath.Join("testdata", c.BodyFile))
		if err != nil {
			t.Fatal(err)
		}
	}
	truncated := c.Truncated
	if c.Truncate > 0 && c.Truncate < len(body) {
		body, truncated = body[:c.Truncate], true
	}
	r := newRequest(c.Method, c.Host, c.Path, c.Query, body, truncated)
	for k, v := range c.Headers {
		r.HTTP.Header.Set(k, v)
	}
	acts, err := reg.Classify(r)
	if c.Error != "" {
		if err == nil || !strings.Contains(err.Error(), c.Error) {
			t.Fatalf("error = %v, want one containing %q (actions %+v)", err, c.Error, acts)
		}
		return rules.Action{}, false
	}
	if err != nil {
		t.Fatalf("Classify: %v", err)
	}
	if len(acts) != 1 {
		t.Fatalf("got %d actions, want 1: %+v", len(acts), acts)
	}
	a = acts[0]
	if a.Type != c.Type {
		t.Errorf("type = %q, want %q", a.Type, c.Type)
	}
	wantConn := c.Connector
	if wantConn == "" {
		wantConn, _, _ = strings.Cut(c.Type, ".")
	}
	if a.Connector != wantConn {
		t.Errorf("connector = %q, want %q", a.Connector, wantConn)
	}
	if !reflect.DeepEqual(asJSON(t, a.Resource), asJSON(t, c.Resource)) {
		t.Errorf("resource = %v, want %v", a.Resource, c.Resource)
	}
	if !reflect.DeepEqual(asJSON(t, a.Params), asJSON(t, c.Params)) {
		t.Errorf("params = %v, want %v", a.Params, c.Params)
	}
	if a.Request.Method != c.Method || a.Request.Path == "" || a.Request.Host == "" {
		t.Errorf("request part not filled: %+v", a.Request)
	}
	return a, true
}
