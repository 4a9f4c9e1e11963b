package connectors

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/actions.md")

// docs/actions.md is the catalogue as generated now.
func TestActionsDoc(t *testing.T) {
	c, err := BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "docs", "actions.md")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, b.Bytes()) {
		t.Fatalf("docs/actions.md is stale: run go test ./connectors -run TestActionsDoc -update")
	}
}

// Every action type the connectors' code names is in the catalogue: a
// type added to a connector without its entry fails here.
func TestCatalogCoversTheConnectorsTypes(t *testing.T) {
	c, err := BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	lit := regexp.MustCompile(`"((?:github|npm|anthropic|openai|google)\.[a-z_]+\.[a-z_]+)"`)
	files, _ := filepath.Glob("*.go")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "catalog.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			n++
			if !c.Matches(m[1]) || !has(c, m[1]) {
				t.Errorf("%s names %s, which the catalogue lacks", f, m[1])
			}
		}
	}
	if n < 100 {
		t.Fatalf("found only %d action type literals; the scan is broken", n)
	}
	for _, typ := range []string{"github.pr.close", "github.branch.create", "github.file.update", "npm.package.publish", "http.<method>", "mcp.<server>.<tool>"} {
		if !has(c, typ) {
			t.Errorf("catalogue lacks %s", typ)
		}
	}
}

func has(c Catalog, typ string) bool {
	for _, a := range c {
		if a.Type == typ {
			return true
		}
	}
	return false
}

// A glob matches the catalogue when it can match one of its types; the
// closest names are offered for one that cannot.
func TestCatalogMatchesAndClosest(t *testing.T) {
	stripe := Declared{Name: "stripe", Hosts: []string{"api.stripe.com"}, Routes: []Route{
		{Method: "POST", Path: "/v1/charges", Action: "stripe.charge.create", Params: map[string]string{"amount": "body.amount"}},
	}}
	c, err := BuiltinCatalog(stripe)
	if err != nil {
		t.Fatal(err)
	}
	for glob, want := range map[string]bool{
		"github.pr.merge": true, "github.*.get": true, "github.*": true, "*": true,
		"github.pull.merge": false, "github.pr.merged": false, "gitlab.*": false,
		"http.post": true, "http.*": true, "npm.api.get": true, "mcp.github.delete_repository": true,
		"mcp.*.@tools/list": true, "stripe.charge.create": true, "stripe.api.post": true, "stripe.refund.create": false,
		"tf.unclassified": true,
	} {
		if got := c.Matches(glob); got != want {
			t.Errorf("Matches(%q) = %v, want %v", glob, got, want)
		}
	}
	if got := c.Closest("github.pull.merge", 3); len(got) == 0 || got[0] != "github.pr.merge" {
		t.Errorf("Closest(github.pull.merge) = %v", got)
	}
	var charge *ActionInfo
	for i := range c {
		if c[i].Type == "stripe.charge.create" {
			charge = &c[i]
		}
	}
	if charge == nil || charge.Connector != "stripe" || len(charge.Params) != 1 || charge.Params[0] != "amount" || charge.Via[0] != "POST /v1/charges" {
		t.Errorf("declared entry: %+v", charge)
	}
}
