package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/tameflare/tf/home"
)

// WrapConfigOptions say how tf mcp wrap-config runs the servers.
type WrapConfigOptions struct {
	// TF is the command that runs tf (default "tf").
	TF string
	// Policy, when set, is passed as --policy.
	Policy string
}

// WrapConfig rewrites the JSON of a Claude Code configuration so that
// every stdio server (one with a command) runs under tf mcp wrap, named
// after its key. It reads each place Claude Code keeps servers: the
// top-level mcpServers (a project's .mcp.json, and the user scope of
// ~/.claude.json) and projects["/path"].mcpServers (the local scope that
// `claude mcp add` writes by default, in ~/.claude.json). Servers over
// HTTP, and servers wrapped already, are left as they are, so running it
// twice changes nothing. Every other member is kept. It returns the new
// JSON and the servers it wrapped: their keys, with "projects[/path]." in
// front for the local scope.
func WrapConfig(data []byte, o WrapConfigOptions) ([]byte, []string, error) {
	if o.TF == "" {
		o.TF = "tf"
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("reading the MCP configuration: %w", err)
	}
	rawServers, hasTop := doc["mcpServers"]
	rawProjects, hasProjects := doc["projects"]
	if !hasTop && !hasProjects {
		return nil, nil, errors.New("reading the MCP configuration: no mcpServers, and no projects with mcpServers")
	}
	var wrapped []string
	if hasTop {
		out, names, err := wrapServers(rawServers, o, "mcpServers")
		if err != nil {
			return nil, nil, err
		}
		doc["mcpServers"], wrapped = out, names
	}
	if hasProjects {
		var projects map[string]map[string]json.RawMessage
		if err := json.Unmarshal(rawProjects, &projects); err != nil {
			return nil, nil, fmt.Errorf("reading projects: %w", err)
		}
		paths := make([]string, 0, len(projects))
		for p := range projects {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		changed := false
		for _, p := range paths {
			raw, ok := projects[p]["mcpServers"]
			if !ok || string(raw) == "null" {
				continue
			}
			prefix := "projects[" + p + "]"
			out, names, err := wrapServers(raw, o, prefix+".mcpServers")
			if err != nil {
				return nil, nil, err
			}
			if len(names) == 0 {
				continue
			}
			projects[p]["mcpServers"], changed = out, true
			for _, n := range names {
				wrapped = append(wrapped, prefix+"."+n)
			}
		}
		if changed {
			var err error
			if doc["projects"], err = json.Marshal(projects); err != nil {
				return nil, nil, err
			}
		}
	}
	if len(wrapped) == 0 {
		return data, nil, nil
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	// MarshalIndent leaves the re-marshalled members compact; indent all.
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "  "); err != nil {
		return nil, nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), wrapped, nil
}

// wrapServers wraps the stdio servers of one mcpServers object; where
// names the object in errors. It returns the object unchanged when it
// wraps none.
func wrapServers(raw json.RawMessage, o WrapConfigOptions, where string) (json.RawMessage, []string, error) {
	var servers map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &servers); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", where, err)
	}
	names := make([]string, 0, len(servers))
	for k := range servers {
		names = append(names, k)
	}
	sort.Strings(names)
	var wrapped []string
	taken := map[string]bool{}
	for _, key := range names {
		s := servers[key]
		var command string
		if raw, ok := s["command"]; !ok || json.Unmarshal(raw, &command) != nil || command == "" {
			continue // an HTTP or SSE server: the proxy governs it
		}
		var typ string
		if raw, ok := s["type"]; ok {
			_ = json.Unmarshal(raw, &typ)
		}
		if typ != "" && typ != "stdio" {
			continue
		}
		var args []string
		if raw, ok := s["args"]; ok {
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, nil, fmt.Errorf("%s.%s.args: %w", where, key, err)
			}
		}
		if isWrapped(args) {
			continue
		}
		name := serverNameFor(key, taken)
		taken[name] = true
		wargs := []string{"mcp", "wrap", "--server", name}
		if o.Policy != "" {
			wargs = append(wargs, "--policy", o.Policy)
		}
		wargs = append(append(wargs, "--", command), args...)
		var err error
		if s["command"], err = json.Marshal(o.TF); err != nil {
			return nil, nil, err
		}
		if s["args"], err = json.Marshal(wargs); err != nil {
			return nil, nil, err
		}
		wrapped = append(wrapped, key)
	}
	if len(wrapped) == 0 {
		return raw, nil, nil
	}
	out, err := json.Marshal(servers)
	return out, wrapped, err
}

// isWrapped reports args that already run under tf mcp wrap.
func isWrapped(args []string) bool {
	return len(args) >= 2 && args[0] == "mcp" && args[1] == "wrap"
}

// serverNameFor turns a configuration key into a valid, unused server name.
func serverNameFor(key string, taken map[string]bool) string {
	var b strings.Builder
	for _, r := range strings.ToLower(key) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-_")
	if len(name) > 56 {
		name = name[:56]
	}
	if name == "" {
		name = "server"
	}
	base := name
	for i := 2; taken[name]; i++ {
		name = base + "-" + strconv.Itoa(i)
	}
	return name
}

// WrapConfigFile rewrites the .mcp.json at path in place (see WrapConfig),
// keeping the old file as path.bak (path.bak.2 and so on when that exists).
// Nothing is written when nothing changes. It returns the servers wrapped
// and the backup's path.
func WrapConfigFile(path string, o WrapConfigOptions) (wrapped []string, backup string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	out, wrapped, err := WrapConfig(data, o)
	if err != nil || len(wrapped) == 0 {
		return nil, "", err
	}
	backup = path + ".bak"
	for i := 2; ; i++ {
		f, err := os.OpenFile(backup, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
		if errors.Is(err, os.ErrExist) {
			backup = path + ".bak." + strconv.Itoa(i)
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("writing the backup: %w", err)
		}
		_, werr := f.Write(data)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, "", fmt.Errorf("writing the backup %s: %w", backup, werr)
		}
		break
	}
	if err := home.WriteFile(path, out, st.Mode().Perm(), false); err != nil {
		return nil, "", fmt.Errorf("replacing %s: %w", path, err)
	}
	return wrapped, backup, nil
}

// ConfiguredServer is an MCP server over HTTP in an agent's configuration.
type ConfiguredServer struct {
	// Key is where the configuration has it: its key, with
	// "projects[/path]." in front for the local scope.
	Key string
	// Name is the server's name for tf, made from its key.
	Name string
	// URL is its endpoint; Type is "http" or "sse" (the older transport).
	URL, Type string
}

// HTTPServers returns the servers over HTTP (Streamable HTTP or the older
// HTTP+SSE transport) of a Claude Code configuration, from the same
// places as WrapConfig, each named after its key. A URL configured in
// several places is one server, named where it is met first (the
// top-level mcpServers, then projects in path order).
func HTTPServers(data []byte) ([]ConfiguredServer, error) {
	var doc struct {
		MCPServers map[string]map[string]json.RawMessage `json:"mcpServers"`
		Projects   map[string]struct {
			MCPServers map[string]map[string]json.RawMessage `json:"mcpServers"`
		} `json:"projects"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("reading the MCP configuration: %w", err)
	}
	var out []ConfiguredServer
	taken, seen := map[string]bool{}, map[string]bool{}
	add := func(prefix string, servers map[string]map[string]json.RawMessage) {
		keys := make([]string, 0, len(servers))
		for k := range servers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			s := servers[key]
			var url, typ string
			if raw, ok := s["url"]; !ok || json.Unmarshal(raw, &url) != nil || url == "" {
				continue
			}
			if raw, ok := s["type"]; ok {
				_ = json.Unmarshal(raw, &typ)
			}
			switch typ {
			case "", "http", "streamable-http":
				typ = "http"
			case "sse":
			default:
				continue
			}
			if seen[url] {
				continue
			}
			seen[url] = true
			name := serverNameFor(key, taken)
			taken[name] = true
			out = append(out, ConfiguredServer{Key: prefix + key, Name: name, URL: url, Type: typ})
		}
	}
	add("", doc.MCPServers)
	paths := make([]string, 0, len(doc.Projects))
	for p := range doc.Projects {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		add("projects["+p+"].", doc.Projects[p].MCPServers)
	}
	return out, nil
}
