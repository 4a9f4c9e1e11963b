package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tf policy validate refuses an actions glob that no connector produces,
// naming the closest types; a declared connector's types count with
// --declared. tf actions lists the catalogue.
func TestValidateUnknownActionsAndCatalogue(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	policy := `version: 1
default: deny
rules:
  - name: merges-need-a-person
    actions: [github.pull.merge, github.pr.*]
    decision: require_approval
  - name: charges
    actions: [shop.charge.create, slack.chat.post, stripe.refund.*]
    decision: deny
`
	if err := os.WriteFile(filepath.Join(dir, "tameflare.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTF(t, home, nil, "policy", "validate", dir)
	if r.code != 1 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		`tameflare.yaml:4:5: rule "merges-need-a-person": actions "github.pull.merge" matches no action type a connector produces (closest: github.pr.merge`,
		`tameflare.yaml:7:5: rule "charges": actions "shop.charge.create" matches no action type`,
		"2 problem(s) in the policy",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("validate lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, `"github.pr.*"`) || strings.Contains(r.stderr, `actions "slack.`) || strings.Contains(r.stderr, `actions "stripe.`) {
		t.Errorf("a glob that matches (the built-in Slack and Stripe connectors' too) was reported:\n%s", r.stderr)
	}

	decl := filepath.Join(dir, "shop.yaml")
	if err := os.WriteFile(decl, []byte("name: shop\nhosts: [api.shop.example]\nroutes:\n  - {method: POST, path: /v1/charges, action: shop.charge.create, params: {amount: body.amount}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runTF(t, home, nil, "policy", "validate", dir, "--declared", decl)
	if r.code != 1 || strings.Contains(r.stderr, "shop.charge.create") || !strings.Contains(r.stderr, "1 problem(s)") {
		t.Errorf("with --declared: exit %d\n%s", r.code, r.stderr)
	}

	r = runTF(t, home, nil, "actions", "--json", "shop", "--declared", decl)
	var cat []struct {
		Type   string   `json:"type"`
		Params []string `json:"params"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &cat); err != nil || len(cat) != 2 || cat[0].Type != "shop.api.<method>" || cat[1].Type != "shop.charge.create" || cat[1].Params[0] != "amount" {
		t.Errorf("tf actions shop: %v %+v\n%s", err, cat, r.stderr)
	}
	r = runTF(t, home, nil, "actions", "github")
	if r.code != 0 || !strings.Contains(r.stdout, "github.pr.merge") || strings.Contains(r.stdout, "npm.") {
		t.Errorf("tf actions github: exit %d\n%s", r.code, r.stdout)
	}
	r = runTF(t, home, nil, "actions", "--markdown")
	doc, err := os.ReadFile("../../docs/actions.md")
	if err != nil || r.stdout != string(doc) {
		t.Errorf("tf actions --markdown differs from docs/actions.md (%v)", err)
	}
}
