package connectors

import (
	"reflect"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

const stripeYAML = `
name: stripe
hosts: [api.stripe.com, "*.stripe-test.example"]
routes:
  - method: POST
    path: /v1/charges
    action: stripe.charge.create
    params: {amount: body.amount, currency: body.currency}
  - method: POST
    path: /v1/refunds/{id}
    action: stripe.refund.update
    params: {id: path.id, expand: query.expand, reason: body.meta.reason}
  - method: GET
    path: /v1/files/{name...}
    action: stripe.file.get
    params: {name: path.name}
  - method: "*"
    path: /v1/ping
    action: stripe.ping.any
`

func TestDeclared(t *testing.T) {
	var d Declared
	if err := yaml.UnmarshalWithOptions([]byte(stripeYAML), &d, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(Options{Declared: []Declared{d}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, host, path, query, ctype, body string
		typ                                    string
		params                                 map[string]any
	}{
		{"POST", "api.stripe.com", "/v1/charges", "", "application/x-www-form-urlencoded", "amount=2000&currency=eur&source=tok_x", "stripe.charge.create", map[string]any{"amount": "2000", "currency": "eur"}},
		{"POST", "api.stripe.com", "/v1/charges", "", "application/json", `{"amount":2000,"currency":"eur"}`, "stripe.charge.create", map[string]any{"amount": 2000, "currency": "eur"}},
		{"POST", "eu.stripe-test.example", "/v1/refunds/re_1", "expand=charge", "application/json", `{"meta":{"reason":"dup"}}`, "stripe.refund.update", map[string]any{"id": "re_1", "expand": "charge", "reason": "dup"}},
		{"GET", "api.stripe.com", "/v1/files/a/b.pdf", "", "", "", "stripe.file.get", map[string]any{"name": "a/b.pdf"}},
		{"PATCH", "api.stripe.com", "/v1/ping", "", "", "", "stripe.ping.any", map[string]any{}},
		{"DELETE", "api.stripe.com", "/v1/customers/cus_1", "", "", "", "stripe.api.delete", map[string]any{"path": "/v1/customers/cus_1"}},
	}
	for _, c := range cases {
		r := newRequest(c.method, c.host, c.path, c.query, []byte(c.body), false)
		if c.ctype != "" {
			r.HTTP.Header.Set("Content-Type", c.ctype)
		}
		acts, err := reg.Classify(r)
		if err != nil {
			t.Errorf("%s %s: %v", c.method, c.path, err)
			continue
		}
		a := acts[0]
		if a.Type != c.typ || a.Connector != "stripe" || a.Resource["host"] != c.host {
			t.Errorf("%s %s: %s %s %v", c.method, c.path, a.Connector, a.Type, a.Resource)
		}
		if !reflect.DeepEqual(asJSON(t, a.Params), asJSON(t, c.params)) {
			t.Errorf("%s %s: params %v, want %v", c.method, c.path, a.Params, c.params)
		}
	}
	if reg.Lookup("stripe-test.example").Name() != "http" {
		t.Error("*.stripe-test.example matched the apex domain")
	}
	// A body param on a truncated or invalid body refuses.
	r := newRequest("POST", "api.stripe.com", "/v1/charges", "", []byte(`{"amount":`), true)
	if _, err := reg.Classify(r); err == nil {
		t.Error("truncated body classified")
	}
	r = newRequest("POST", "api.stripe.com", "/v1/charges", "", []byte(`{"amount":`), false)
	if _, err := reg.Classify(r); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("invalid body: %v", err)
	}
}

func TestDeclaredValidation(t *testing.T) {
	ok := Route{Method: "GET", Path: "/v1/x/{id}", Action: "acme.x.get", Params: map[string]string{"id": "path.id"}}
	cases := map[string]Declared{
		"bad name":            {Name: "Acme!", Hosts: []string{"a.example"}},
		"reserved name":       {Name: "github", Hosts: []string{"a.example"}},
		"no hosts":            {Name: "acme"},
		"bad host":            {Name: "acme", Hosts: []string{"*"}},
		"host with path":      {Name: "acme", Hosts: []string{"a.example/x"}},
		"bad template":        {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "GET", Path: "/v1/{id", Action: "acme.x.get"}}},
		"action without dot":  {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "GET", Path: "/v1", Action: "acmeget"}}},
		"action upper case":   {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "GET", Path: "/v1", Action: "acme.X.get"}}},
		"unknown source":      {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "GET", Path: "/v1", Action: "acme.x.get", Params: map[string]string{"a": "header.x"}}}},
		"source without key":  {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "GET", Path: "/v1", Action: "acme.x.get", Params: map[string]string{"a": "body"}}}},
		"path param missing":  {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "GET", Path: "/v1", Action: "acme.x.get", Params: map[string]string{"a": "path.id"}}}},
		"bad method":          {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "G ET", Path: "/v1", Action: "acme.x.get"}}},
		"duplicate route":     {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{ok, ok}},
		"empty method":        {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Path: "/v1", Action: "acme.x.get"}}},
		"template no leading": {Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{{Method: "GET", Path: "v1", Action: "acme.x.get"}}},
	}
	for name, d := range cases {
		if _, err := NewDeclared(d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewDeclared(Declared{Name: "acme", Hosts: []string{"a.example"}, Routes: []Route{ok}}); err != nil {
		t.Errorf("valid declaration refused: %v", err)
	}
}
