package mcp

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tameflare/tf/rules"
)

func TestPolicyMCPKeys(t *testing.T) {
	p := loadPolicy(t, "version: 1\nmcp_servers:\n  - {name: docs, url: \"HTTPS://MCP.Example.com/mcp/\"}\nmcp: {filter_tools: false}\n")
	if len(p.MCPServers) != 1 || p.MCPServers[0].URL != "https://mcp.example.com/mcp" || p.MCPFilterTools {
		t.Fatalf("%+v %v", p.MCPServers, p.MCPFilterTools)
	}
	if !loadPolicy(t, "version: 1\n").MCPFilterTools {
		t.Fatal("filter_tools defaults to true")
	}
	src := `version: 1
mcp_servers:
  - {name: docs, url: "https://a.test/mcp"}
  - {name: Docs.Two, url: "https://b.test/mcp"}
  - {name: three, url: "ftp://c.test/"}
  - {name: docs, url: "https://a.test/mcp"}
  - {name: four, url: "https://user:pw@d.test/mcp"}
`
	_, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(src)}}, "p")
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		`p/tameflare.yaml:4:12: mcp_servers: name "Docs.Two"`,
		`p/tameflare.yaml:5:24: mcp_servers: url "ftp://c.test/"`,
		`p/tameflare.yaml:6:12: mcp_servers: duplicate name "docs"`,
		`mcp_servers: url "https://a.test/mcp" is listed twice`,
		`mcp_servers: url "https://user:pw@d.test/mcp": no user`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	_, err = rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte("version: 1\nmcp: {filter_tool: true}\n")}}, "p")
	if err == nil || !strings.Contains(err.Error(), `p/tameflare.yaml:2:7: unknown field "filter_tool"`) {
		t.Errorf("misspelt mcp key: %v", err)
	}
}
