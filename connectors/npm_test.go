package connectors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNPMPublishPrefixes cuts the recorded publish body at every length:
// the classification is either the full answer or an error, never a wrong
// answer.
func TestNPMPublishPrefixes(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "npm_publish_body.json"))
	if err != nil {
		t.Fatal(err)
	}
	reg := testRegistry(t)
	ok := 0
	for n := 0; n <= len(body); n++ {
		r := newRequest("PUT", "registry.npmjs.org", "/@tfdemo%2fhello", "", body[:n], n < len(body))
		acts, err := reg.Classify(r)
		if err != nil {
			continue
		}
		a := acts[0]
		if a.Type != "npm.package.publish" || a.Params["version"] != "1.2.3" || a.Params["tag"] != "beta" || a.Params["package"] != "@tfdemo/hello" {
			t.Fatalf("prefix %d: %+v", n, a)
		}
		ok++
	}
	if ok == 0 {
		t.Fatal("no prefix classified")
	}
	// access comes after versions: a prefix that ends between them
	// classifies without it, which rules see as no access change.
	i := strings.Index(string(body), `"_attachments"`)
	if i < 0 {
		t.Fatal("fixture has no _attachments")
	}
}

func TestNPMOptions(t *testing.T) {
	if _, err := NewNPM(NPMOptions{Registries: []NPMRegistry{{Host: "npm.example", PathPrefix: "nope"}}}); err == nil {
		t.Error("relative path prefix accepted")
	}
	if _, err := NewNPM(NPMOptions{Registries: []NPMRegistry{{Host: ""}}}); err == nil {
		t.Error("empty host accepted")
	}
	n, err := NewNPM(NPMOptions{Registries: []NPMRegistry{{Host: "r.example", PathPrefix: "/npm"}, {Host: "r.example", PathPrefix: "/npm/private"}}})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := n.Classify(newRequest("GET", "r.example", "/npm/private/left-pad", "", nil, false))
	if err != nil || acts[0].Params["package"] != "left-pad" {
		t.Errorf("longest prefix: %+v %v", acts, err)
	}
}

func readFixture(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}
