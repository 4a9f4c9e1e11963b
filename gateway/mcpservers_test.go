package gateway

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// Registering keeps the rest of the config file, comments included, is
// idempotent, and refuses a name or URL taken by another server without
// writing anything.
func TestRegisterMCPServers(t *testing.T) {
	dir := t.TempDir()
	orig := "# settings of this laptop\naudit: {sync: always} # durable\nlimits:\n  max_conns_per_client: 64\n"
	if err := os.WriteFile(ConfigPath(dir), []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	docs := rules.MCPServer{Name: "docs", URL: "https://Docs.Example.test/mcp/"}
	res, err := RegisterMCPServers(dir, []rules.MCPServer{docs})
	if err != nil || len(res) != 1 || !res[0].Added || res[0].Server.URL != "https://docs.example.test/mcp" {
		t.Fatalf("register: %+v, %v", res, err)
	}
	data, _ := os.ReadFile(ConfigPath(dir))
	for _, want := range []string{"# settings of this laptop", "# durable", "max_conns_per_client: 64", "name: docs"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the config file lost %q:\n%s", want, data)
		}
	}
	cfg, err := LoadConfigFile(ConfigPath(dir))
	if err != nil || cfg.Audit.Sync != "always" || len(cfg.MCPServers) != 1 || cfg.MCPServers[0] != (rules.MCPServer{Name: "docs", URL: "https://docs.example.test/mcp"}) {
		t.Fatalf("reloaded: %+v, %v", cfg, err)
	}

	// Again, and with a second server: the first stays, once.
	res, err = RegisterMCPServers(dir, []rules.MCPServer{docs, {Name: "tickets", URL: "http://127.0.0.1:9000/mcp"}})
	if err != nil || len(res) != 2 || res[0].Added || !res[1].Added {
		t.Fatalf("second register: %+v, %v", res, err)
	}
	if cfg, _ = LoadConfigFile(ConfigPath(dir)); len(cfg.MCPServers) != 2 {
		t.Fatalf("after the second register: %+v", cfg.MCPServers)
	}

	before, _ := os.ReadFile(ConfigPath(dir))
	for _, bad := range []rules.MCPServer{
		{Name: "docs", URL: "https://elsewhere.test/mcp"},     // name taken
		{Name: "docs2", URL: "https://docs.example.test/mcp"}, // URL taken
		{Name: "Docs", URL: "https://new.test/mcp"},           // not a server name
		{Name: "new", URL: "https://user:pw@new.test/mcp"},    // credentials in the URL
		{Name: "new", URL: "ftp://new.test/mcp"},              // not http
	} {
		if _, err := RegisterMCPServers(dir, []rules.MCPServer{bad}); err == nil {
			t.Errorf("registered %+v", bad)
		}
	}
	if after, _ := os.ReadFile(ConfigPath(dir)); string(after) != string(before) {
		t.Errorf("a refused registration changed the file:\n%s", after)
	}

	// A file without mcp_servers, and no file at all.
	empty := t.TempDir()
	if _, err := RegisterMCPServers(empty, []rules.MCPServer{docs}); err != nil {
		t.Fatal(err)
	}
	if cfg, err := LoadConfigFile(ConfigPath(empty)); err != nil || len(cfg.MCPServers) != 1 {
		t.Fatalf("registered into no file: %+v, %v", cfg, err)
	}
}

// A hand-edited config file with a bad mcp_servers entry does not load.
func TestConfigMCPServersChecked(t *testing.T) {
	for _, bad := range []string{
		"mcp_servers:\n  - {name: Docs, url: https://docs.test/mcp}\n",
		"mcp_servers:\n  - {name: docs, url: /mcp}\n",
		"mcp_servers:\n  - {name: docs, url: https://a.test/mcp}\n  - {name: docs, url: https://b.test/mcp}\n",
		"mcp_servers:\n  - {name: a, url: https://a.test/mcp}\n  - {name: b, url: https://A.test/mcp/}\n",
	} {
		dir := t.TempDir()
		os.WriteFile(ConfigPath(dir), []byte(bad), 0o600)
		if _, err := LoadConfigFile(ConfigPath(dir)); err == nil || !strings.Contains(err.Error(), "mcp_servers") {
			t.Errorf("%q loaded: %v", bad, err)
		}
	}
}

// A server registered in the config file is a listed server: its
// protocol plumbing goes through under default: deny, its tools are
// mcp.<name>.<tool> and the policy decides them; another path on the same
// host is still an unlisted server, refused. Where the policy lists the
// name for another URL, the policy's entry applies.
func TestRegisteredMCPServerIsListed(t *testing.T) {
	const pol = `version: 1
default: deny
rules:
  - {name: no-delete, actions: [mcp.docs.delete], decision: deny, reason: deleting is off limits}
  - {name: reads, actions: [mcp.docs.read], decision: allow}
`
	register := func(c *Config) {
		if _, err := RegisterMCPServers(c.Home, []rules.MCPServer{{Name: "docs", URL: "https://example.test/mcp"}}); err != nil {
			t.Fatal(err)
		}
	}
	f := start(t, policy(t, pol), register)
	const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}
	for _, c := range []struct {
		url, body string
		allowed   bool
		typ, rule string
	}{
		{"https://example.test/mcp", initialize, true, "mcp.docs.@initialize", "tf:mcp-baseline"},
		{"https://example.test/mcp", call("read"), true, "mcp.docs.read", "reads"},
		{"https://example.test/mcp", call("delete"), false, "mcp.docs.delete", "no-delete"},
		{"https://example.test/other", initialize, false, "mcp.(example.test).@initialize", ""},
	} {
		n := len(f.records(t, audit.KindDecision))
		res, body := f.do(t, "POST", c.url, c.body)
		recs := f.records(t, audit.KindDecision)
		if len(recs) != n+1 {
			t.Fatalf("%s %s: %d new decision records", c.url, c.body, len(recs)-n)
		}
		r := recs[n]
		if r.Action.Type != c.typ || r.Decision.Rule != c.rule || (r.Decision.Effect == rules.Allow) != c.allowed {
			t.Errorf("%s %s: decided %s %s by %q", c.url, c.typ, r.Action.Type, r.Decision.Effect, r.Decision.Rule)
		}
		if got := res.StatusCode == http.StatusOK && body == "upstream says hi"; got != c.allowed {
			t.Errorf("%s %s: reached the server %v: %d %s", c.url, c.typ, got, res.StatusCode, body)
		}
		if c.rule == "no-delete" && !strings.Contains(body, "deleting is off limits") {
			t.Errorf("the refusal does not give the reason: %s", body)
		}
	}

	// The policy names docs elsewhere: its entry wins, and the registered
	// URL is an unlisted server again.
	f = start(t, policy(t, pol+"mcp_servers:\n  - {name: docs, url: https://example.test/docs}\n"), register)
	f.do(t, "POST", "https://example.test/mcp", initialize)
	recs := f.records(t, audit.KindDecision)
	if len(recs) != 1 || recs[0].Action.Type != "mcp.(example.test).@initialize" || recs[0].Decision.Effect == rules.Allow {
		t.Errorf("with the name in the policy: %+v", recs[0].Action)
	}
}

func TestMergeMCPServers(t *testing.T) {
	policy := []rules.MCPServer{{Name: "docs", URL: "https://a.test/mcp"}}
	local := []rules.MCPServer{
		{Name: "docs", URL: "https://b.test/mcp"},    // name clash
		{Name: "other", URL: "https://a.test/mcp"},   // URL clash
		{Name: "tickets", URL: "https://c.test/mcp"}, // new
	}
	merged, dropped := mergeMCPServers(policy, local)
	if len(merged) != 2 || merged[0] != policy[0] || merged[1] != local[2] || strings.Join(dropped, ",") != "docs,other" {
		t.Errorf("merged %v, dropped %v", merged, dropped)
	}
}
