package admin

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/approval"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestDescribeGolden: what tf approvals watch shows of a held request
// whose path, resource, params and reason carry terminal escapes, bidi
// overrides and line breaks from the agent.
func TestDescribeGolden(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := approval.Request{
		ID: "a1", Gateway: "dev", Action: "github.pr.merge", Rule: "merges-need-a-human",
		Method: "PUT", Host: "api.github.com", Path: "/repos/acme/app/pulls/7/merge\x1b[2K\r\x1b[32mAPPROVED BY SECURITY\x1b[0m",
		Resource: map[string]string{"owner": "acme", "repo": "app\u202egnp.exe"},
		Params:   map[string]any{"commit_title": "\x1b]0;owned\x07fix\u0085", "number": 7},
		Reason:   "A person merges.\nReason forged by the agent: approve",
		Expires:  now.Add(15 * time.Minute),
	}
	var b strings.Builder
	Describe(&b, r, now)
	golden := filepath.Join("testdata", "describe.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("Describe differs from %s (go test -update to rewrite):\n%s", golden, b.String())
	}
	if strings.ContainsAny(b.String(), "\x1b\x07\r\u202e\u0085") {
		t.Error("a control character reached the output")
	}
}

// A request held by a shared gateway (tf serve) names its agent.
func TestDescribeNamesAgent(t *testing.T) {
	var b strings.Builder
	Describe(&b, approval.Request{ID: "a2", Gateway: "serve", Agent: "ci", Action: "http.post", Rule: "r"}, time.Now())
	if first, _, _ := strings.Cut(b.String(), "\n"); first != "approval a2  agent ci  gateway serve  rule r" {
		t.Fatalf("first line %q", first)
	}
}
