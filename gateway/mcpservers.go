package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/rules"
)

// checkMCPServers validates the config file's mcp_servers as the policy
// loader validates the policy's, and normalises their URLs in place.
func checkMCPServers(servers []rules.MCPServer) error {
	names, urls := map[string]bool{}, map[string]bool{}
	for i := range servers {
		s := &servers[i]
		if err := rules.CheckMCPServerName(s.Name); err != nil {
			return fmt.Errorf("mcp_servers: server %d: %w", i+1, err)
		}
		key, err := rules.NormalizeMCPServerURL(s.URL)
		if err != nil {
			return fmt.Errorf("mcp_servers: server %q: %w", s.Name, err)
		}
		if names[s.Name] {
			return fmt.Errorf("mcp_servers: duplicate name %q", s.Name)
		}
		if urls[key] {
			return fmt.Errorf("mcp_servers: url %q is listed twice", s.URL)
		}
		names[s.Name], urls[key] = true, true
		s.URL = key
	}
	return nil
}

// mergeMCPServers returns the policy's servers followed by the local ones
// whose name and URL the policy does not have: the reviewed policy wins
// every clash. dropped names the local servers left out.
func mergeMCPServers(policy, local []rules.MCPServer) (merged []rules.MCPServer, dropped []string) {
	if len(local) == 0 {
		return policy, nil
	}
	names, urls := map[string]bool{}, map[string]bool{}
	for _, s := range policy {
		names[s.Name], urls[s.URL] = true, true
	}
	merged = append([]rules.MCPServer(nil), policy...)
	for _, s := range local {
		if names[s.Name] || urls[s.URL] {
			dropped = append(dropped, s.Name)
			continue
		}
		merged = append(merged, s)
	}
	return merged, dropped
}

// mcpServerList is the servers the MCP connector names: the policy's
// mcp_servers and those registered in the config file, merged once per
// policy revision.
type mcpServerList struct {
	local  []rules.MCPServer
	policy func() *rules.Policy
	cached atomic.Pointer[mergedServers]
}

type mergedServers struct {
	policy  *rules.Policy
	servers []rules.MCPServer
}

func (l *mcpServerList) servers() []rules.MCPServer {
	p := l.policy()
	if p == nil {
		return l.local
	}
	if c := l.cached.Load(); c != nil && c.policy == p {
		return c.servers
	}
	merged, _ := mergeMCPServers(p.MCPServers, l.local)
	l.cached.Store(&mergedServers{policy: p, servers: merged})
	return merged
}

// RegisterResult says what RegisterMCPServers did with each server.
type RegisterResult struct {
	Server rules.MCPServer
	// Added is true when the server was written; false when the file had
	// it already, under this name and URL.
	Added bool
}

// RegisterMCPServers adds servers to the mcp_servers of the config file
// in dir ($TF_HOME), so that gateways started from it name them like the
// policy's listed servers (their protocol plumbing allowed, their tools
// mcp.<name>.<tool>). The rest of the file, comments included, is kept.
// A server already there under the same name and URL is left as it is;
// a name or URL registered for another server is an error, and nothing
// is written. Registering is for the person who runs tf, outside the
// agent: $TF_HOME is not visible inside tf run's sandbox.
func RegisterMCPServers(dir string, servers []rules.MCPServer) ([]RegisterResult, error) {
	path := ConfigPath(dir)
	cur, err := LoadConfigFile(path)
	if err != nil {
		return nil, err
	}
	all := append([]rules.MCPServer(nil), cur.MCPServers...)
	var results []RegisterResult
	for _, s := range servers {
		key, err := rules.NormalizeMCPServerURL(s.URL)
		if err != nil {
			return nil, fmt.Errorf("MCP server %q: %w", s.Name, err)
		}
		if err := rules.CheckMCPServerName(s.Name); err != nil {
			return nil, fmt.Errorf("MCP server at %s: %w", key, err)
		}
		s.URL = key
		known := false
		for _, c := range all {
			switch {
			case c.Name == s.Name && c.URL == s.URL:
				known = true
			case c.Name == s.Name:
				return nil, fmt.Errorf("MCP server %q is registered in %s for %s already, not %s: remove that entry, or rename the server in the agent's configuration", s.Name, path, c.URL, s.URL)
			case c.URL == s.URL:
				return nil, fmt.Errorf("MCP server %s is registered in %s as %q already, not %q", s.URL, path, c.Name, s.Name)
			}
		}
		results = append(results, RegisterResult{Server: s, Added: !known})
		if !known {
			all = append(all, s)
		}
	}
	if len(all) == len(cur.MCPServers) {
		return results, nil
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	out, err := withMCPServers(data, all)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := home.WriteFile(path, out, 0o600, true); err != nil {
		return nil, err
	}
	if _, err := LoadConfigFile(path); err != nil {
		return nil, fmt.Errorf("the config file written does not load (please report this): %w", err)
	}
	return results, nil
}

// withMCPServers returns the config file data with its mcp_servers
// replaced by servers (appended when it has none), the rest untouched.
func withMCPServers(data []byte, servers []rules.MCPServer) ([]byte, error) {
	var items strings.Builder
	for _, s := range servers {
		name, _ := yaml.Marshal(s.Name)
		url, _ := yaml.Marshal(s.URL)
		fmt.Fprintf(&items, "  - {name: %s, url: %s}\n", strings.TrimSpace(string(name)), strings.TrimSpace(string(url)))
	}
	section := "mcp_servers:\n" + items.String()
	if strings.TrimSpace(string(data)) == "" {
		return []byte(section), nil
	}
	file, err := parser.ParseBytes(data, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	path, err := yaml.PathString("$.mcp_servers")
	if err != nil {
		return nil, err
	}
	if _, err := path.FilterFile(file); err != nil {
		// No mcp_servers yet: a new section at the end.
		out := append([]byte(nil), data...)
		if out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		return append(out, section...), nil
	}
	if err := path.ReplaceWithReader(file, strings.NewReader(items.String())); err != nil {
		return nil, err
	}
	return []byte(file.String() + "\n"), nil
}
