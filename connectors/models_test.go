package connectors

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// TestModelAPITable runs testdata/models.yaml: the model APIs' request
// shapes (as the official SDKs and the agents send them) and the Slack and
// Stripe built-ins.
func TestModelAPITable(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []classifyCase
	if err := yaml.UnmarshalWithOptions(raw, &cases, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	reg := testRegistry(t)
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if a, ok := checkClassifyCase(t, reg, c); ok {
				seen[a.Type] = true
			}
		})
	}
	// Every route of the Go tables has a case.
	for name, routes := range map[string][]modelRoute{"anthropic": anthropicRoutes, "openai": openaiRoutes} {
		for _, r := range routes {
			if !seen[r.action] {
				t.Errorf("%s route %s %s (%s) has no case in testdata/models.yaml", name, r.method, r.path, r.action)
			}
		}
	}
	for _, action := range googleMethods {
		if !seen[action] {
			t.Errorf("google action %s has no case in testdata/models.yaml", action)
		}
	}
}

// The built-in declared connectors load, and give way to a declared
// connector of the same name.
func TestBuiltinDeclared(t *testing.T) {
	ds := builtinDeclared()
	if len(ds) != 2 || ds[0].Name != "slack" || ds[1].Name != "stripe" {
		t.Fatalf("built-in declared connectors: %+v", ds)
	}
	reg, err := NewRegistry(Options{Declared: []Declared{{Name: "stripe", Hosts: []string{"api.stripe.com"}, Routes: []Route{{Method: "POST", Path: "/v1/charges", Action: "stripe.money.move"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := reg.Classify(newRequest("POST", "api.stripe.com", "/v1/charges", "", nil, false))
	if err != nil || acts[0].Type != "stripe.money.move" {
		t.Fatalf("a declared stripe connector does not replace the built-in one: %v %+v", err, acts)
	}
	for _, name := range []string{"anthropic", "openai", "google"} {
		if _, err := NewDeclared(Declared{Name: name, Hosts: []string{"x.example.com"}}); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("declared connector %q: err = %v, want reserved", name, err)
		}
	}
}

// FuzzModelCall: any body gives an action or an error, never a panic; a
// model name that is accepted is a string within bounds, and a body that
// encoding/json reads with a string model agrees on it.
func FuzzModelCall(f *testing.F) {
	f.Add("/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"tools":[{"name":"a"}],"thinking":{"type":"enabled"}}`)
	f.Add("/v1/responses", `{"model":"gpt-5","tools":[],"max_output_tokens":5}`)
	f.Add("/v1beta/models/gemini-2.5-pro:generateContent", `{"generationConfig":{"maxOutputTokens":1}}`)
	f.Add("/v1/messages", `{"model":"a","model":"b"}`)
	reg, err := NewRegistry(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		for _, host := range []string{"api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com"} {
			if _, err := url.ParseRequestURI("https://h" + path); err != nil || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?# ") {
				return // not a request path httptest.NewRequest accepts
			}
			acts, err := reg.Classify(newRequest("POST", host, path, "", []byte(body), false))
			if err != nil {
				continue
			}
			if len(acts) != 1 {
				t.Fatalf("%d actions", len(acts))
			}
			if m, ok := acts[0].Params["model"]; ok {
				s, isString := m.(string)
				if !isString || len(s) > maxModelName {
					t.Fatalf("model param %#v", m)
				}
				var v struct{ Model any }
				if json.Unmarshal([]byte(body), &v) == nil && host != "generativelanguage.googleapis.com" {
					if vs, ok := v.Model.(string); ok && vs != s {
						t.Fatalf("model %q, encoding/json reads %q", s, vs)
					}
				}
			}
		}
	})
}
