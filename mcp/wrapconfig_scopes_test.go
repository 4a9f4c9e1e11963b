package mcp

import (
	"encoding/json"
	"reflect"
	"testing"
)

// Each place Claude Code keeps servers is wrapped: the user scope (top
// level of ~/.claude.json), the local scope (projects["/path"].mcpServers,
// what `claude mcp add` writes by default) and a project's .mcp.json (top
// level too). Other members, HTTP servers and projects without servers
// are kept as they were; a second run changes nothing.
func TestWrapConfigClaudeScopes(t *testing.T) {
	claudeJSON := `{
  "numStartups": 12,
  "mcpServers": {"user-files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/"]}},
  "projects": {
    "/home/pat/app": {
      "allowedTools": [],
      "mcpServers": {
        "db": {"type": "stdio", "command": "db-mcp", "args": ["--ro"], "env": {"DB": "x"}},
        "docs": {"type": "http", "url": "https://docs.example.com/mcp"}
      }
    },
    "/home/pat/empty": {"allowedTools": ["Bash"]},
    "/home/pat/other": {"mcpServers": {}}
  }
}`
	out, wrapped, err := WrapConfig([]byte(claudeJSON), WrapConfigOptions{Policy: "/etc/tf/policy"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"user-files", "projects[/home/pat/app].db"}; !reflect.DeepEqual(wrapped, want) {
		t.Errorf("wrapped %v, want %v", wrapped, want)
	}
	var doc struct {
		NumStartups int `json:"numStartups"`
		MCPServers  map[string]struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"mcpServers"`
		Projects map[string]struct {
			AllowedTools []string `json:"allowedTools"`
			MCPServers   map[string]struct {
				Type    string            `json:"type"`
				Command string            `json:"command"`
				Args    []string          `json:"args"`
				URL     string            `json:"url"`
				Env     map[string]string `json:"env"`
			} `json:"mcpServers"`
		} `json:"projects"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.NumStartups != 12 || len(doc.Projects) != 3 || doc.Projects["/home/pat/empty"].AllowedTools[0] != "Bash" {
		t.Errorf("other members not kept:\n%s", out)
	}
	u := doc.MCPServers["user-files"]
	if u.Command != "tf" || !reflect.DeepEqual(u.Args, []string{"mcp", "wrap", "--server", "user-files", "--policy", "/etc/tf/policy", "--", "npx", "-y", "@modelcontextprotocol/server-filesystem", "/"}) {
		t.Errorf("user scope: %+v", u)
	}
	db := doc.Projects["/home/pat/app"].MCPServers["db"]
	if db.Command != "tf" || db.Env["DB"] != "x" || !reflect.DeepEqual(db.Args, []string{"mcp", "wrap", "--server", "db", "--policy", "/etc/tf/policy", "--", "db-mcp", "--ro"}) {
		t.Errorf("local scope: %+v", db)
	}
	if d := doc.Projects["/home/pat/app"].MCPServers["docs"]; d.Command != "" || d.URL != "https://docs.example.com/mcp" {
		t.Errorf("an HTTP server was touched: %+v", d)
	}
	again, w2, err := WrapConfig(out, WrapConfigOptions{Policy: "/etc/tf/policy"})
	if err != nil || len(w2) != 0 || string(again) != string(out) {
		t.Errorf("second run: %v %v", w2, err)
	}

	// A project's .mcp.json: the top level only.
	_, wrapped, err = WrapConfig([]byte(`{"mcpServers": {"files": {"command": "files-mcp"}}}`), WrapConfigOptions{})
	if err != nil || !reflect.DeepEqual(wrapped, []string{"files"}) {
		t.Errorf(".mcp.json: %v %v", wrapped, err)
	}
	// Neither place: an error, not a silent no-op.
	if _, _, err := WrapConfig([]byte(`{"numStartups": 1}`), WrapConfigOptions{}); err == nil {
		t.Error("a file without servers was accepted")
	}
}

// The HTTP servers of every scope are found, named after their keys: the
// older transport too, stdio servers and unknown types not, a URL in two
// scopes once, and two keys that make the same name kept apart.
func TestHTTPServers(t *testing.T) {
	claudeJSON := `{
  "mcpServers": {
    "Docs": {"type": "http", "url": "https://docs.example.com/mcp"},
    "legacy": {"type": "sse", "url": "https://old.example.com/sse"},
    "bare": {"url": "https://bare.example.com/mcp"},
    "files": {"command": "npx", "args": ["server-filesystem"]},
    "odd": {"type": "websocket", "url": "wss://ws.example.com"}
  },
  "projects": {
    "/home/pat/app": {"mcpServers": {
      "docs": {"type": "http", "url": "https://docs.example.com/mcp"},
      "docs!": {"type": "http", "url": "https://docs2.example.com/mcp"}
    }},
    "/home/pat/empty": {"allowedTools": ["Bash"]}
  }
}`
	got, err := HTTPServers([]byte(claudeJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := []ConfiguredServer{
		{Key: "Docs", Name: "docs", URL: "https://docs.example.com/mcp", Type: "http"},
		{Key: "bare", Name: "bare", URL: "https://bare.example.com/mcp", Type: "http"},
		{Key: "legacy", Name: "legacy", URL: "https://old.example.com/sse", Type: "sse"},
		{Key: "projects[/home/pat/app].docs!", Name: "docs-2", URL: "https://docs2.example.com/mcp", Type: "http"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := HTTPServers([]byte(`{"mcpServers": [1]}`)); err == nil {
		t.Error("a malformed configuration was read")
	}
}
