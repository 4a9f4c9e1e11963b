package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tf mcp wrap-config takes its flags after the file too (the documented
// order), wraps the local-scope servers of a ~/.claude.json, and passes
// the policy as an absolute path, since servers start in their project.
func TestWrapConfigFlagOrderAndClaudeJSON(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	mcpJSON := filepath.Join(dir, ".mcp.json")
	os.WriteFile(mcpJSON, []byte(`{"mcpServers": {"files": {"command": "files-mcp", "args": ["."]}}}`), 0o644)
	claude := filepath.Join(dir, ".claude.json")
	os.WriteFile(claude, []byte(`{"projects": {"/work/app": {"mcpServers": {"db": {"type": "stdio", "command": "db-mcp"}}}}}`), 0o600)

	r := runTFIn(t, dir, home, nil, "mcp", "wrap-config", ".mcp.json", "--policy", "policy")
	if r.code != 0 || !strings.Contains(r.stdout, "wrapped files") {
		t.Fatalf("flags after the file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(mcpJSON)
	if !strings.Contains(string(b), `"--policy",`) || !strings.Contains(string(b), filepath.Join(dir, "policy")) {
		t.Errorf("the policy is not absolute:\n%s", b)
	}

	r = runTFIn(t, dir, home, nil, "mcp", "wrap-config", claude)
	if r.code != 0 || !strings.Contains(r.stdout, "wrapped projects[/work/app].db") {
		t.Fatalf("~/.claude.json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var doc struct {
		Projects map[string]struct {
			MCPServers map[string]struct {
				Command string
				Args    []string
			} `json:"mcpServers"`
		} `json:"projects"`
	}
	b, _ = os.ReadFile(claude)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if db := doc.Projects["/work/app"].MCPServers["db"]; db.Command != "tf" || strings.Join(db.Args, " ") != "mcp wrap --server db -- db-mcp" {
		t.Errorf("local scope server: %+v", db)
	}
	if st, err := os.Stat(claude); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the file's mode changed: %v %v", st.Mode(), err)
	}
	if r := runTF(t, home, nil, "mcp", "wrap", "--help"); !strings.Contains(r.stdout, "default: the pinned policy, else the built-in example") {
		t.Errorf("tf mcp wrap --help:\n%s", r.stdout)
	}
}
