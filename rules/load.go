package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/expr-lang/expr/file"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// PolicyFile is the name of the main policy file in a policy directory.
const PolicyFile = "tameflare.yaml"

// LoadDir loads the policy in dir: tameflare.yaml plus policies/*.yaml.
func LoadDir(dir string) (*Policy, error) {
	return LoadFS(os.DirFS(dir), dir)
}

// LoadFS loads a policy from fsys. label names the directory in error
// messages (file names are label/tameflare.yaml and so on). The error, if
// any, is an Errors listing every problem with its position.
func LoadFS(fsys fs.FS, label string) (*Policy, error) {
	l := loader{fsys: fsys, label: label, names: map[string]*PosError{}, hash: sha256.New()}
	return l.load()
}

type loader struct {
	fsys  fs.FS
	label string
	errs  Errors
	names map[string]*PosError // rule name → where it was first defined
	rules []*CompiledRule
	hash  interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func (l *loader) display(name string) string {
	if l.label == "" {
		return name
	}
	return path.Join(filepathToSlash(l.label), name)
}

func filepathToSlash(s string) string { return strings.ReplaceAll(s, string(os.PathSeparator), "/") }

func (l *loader) errorf(file string, n ast.Node, format string, args ...any) {
	e := &PosError{File: l.display(file), Msg: fmt.Sprintf(format, args...)}
	e.Line, e.Col = position(n)
	l.errs = append(l.errs, e)
}

// position is where a node starts; for a mapping, where its first key is
// (the parser's own token for a mapping is its first colon).
func position(n ast.Node) (line, col int) {
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 {
		n = m.Values[0].Key
	}
	if n == nil {
		return 0, 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line, tk.Position.Column
	}
	return 0, 0
}

func (l *loader) load() (*Policy, error) {
	p := &Policy{Source: l.label}
	var main File
	body, ok := l.parse(PolicyFile, &main)
	if !ok {
		return nil, l.errs
	}
	if main.Version != 1 {
		l.errorf(PolicyFile, valueOf(body, "version"), "%s", versionMessage(main.Version))
	}
	p.Mode, p.Default = main.Mode, main.Default
	switch p.Mode {
	case "":
		p.Mode = Enforce
	case Enforce, Monitor:
	default:
		l.errorf(PolicyFile, valueOf(body, "mode"), "mode %q: want enforce or monitor", p.Mode)
	}
	switch {
	case p.Default == "":
		p.Default = Deny
	case !p.Default.Valid():
		l.errorf(PolicyFile, valueOf(body, "default"), "default %q: want allow, deny or require_approval", p.Default)
	}
	l.addRules(PolicyFile, body, main.Rules)
	p.Passthrough = append(p.Passthrough, l.hosts(PolicyFile, body, "passthrough", main.Passthrough)...)
	p.PrivateHosts = l.hosts(PolicyFile, body, "private_hosts", main.PrivateHosts)
	if main.Credentials != nil {
		if err := main.Credentials.Validate(); err != nil {
			l.errorf(PolicyFile, valueOf(body, "credentials"), "credentials: %v", err)
		}
		p.Credentials = main.Credentials
	}
	p.MCPServers = l.mcpServers(body, main.MCPServers)
	p.MCPFilterTools = main.MCP == nil || main.MCP.FilterTools == nil || *main.MCP.FilterTools
	if main.MCP != nil && main.MCP.PinTools != "" {
		switch main.MCP.PinTools {
		case "deny", "require_approval", "monitor":
			p.MCPPinTools = main.MCP.PinTools
		default:
			l.errorf(PolicyFile, valueOf(valueOf(body, "mcp"), "pin_tools"), "mcp.pin_tools %q: want deny, require_approval or monitor", main.MCP.PinTools)
		}
	}

	frags, err := fs.Glob(l.fsys, "policies/*.yaml")
	if err != nil {
		l.errorf("policies", nil, "listing policy files: %v", err)
	}
	sort.Strings(frags)
	for _, name := range frags {
		var f Fragment
		fb, ok := l.parse(name, &f)
		if !ok {
			continue
		}
		if f.Version != 0 && f.Version != 1 {
			l.errorf(name, valueOf(fb, "version"), "%s", versionMessage(f.Version))
		}
		l.addRules(name, fb, f.Rules)
		p.Passthrough = append(p.Passthrough, l.hosts(name, fb, "passthrough", f.Passthrough)...)
	}
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	p.Rules = l.rules
	for i, r := range p.Rules {
		r.pos = i
	}
	for _, r := range p.Rules {
		if r.Quota != nil {
			p.limits = append(p.limits, r)
		}
	}
	p.index = newIndex(p.Rules)
	p.paramsRead = paramsReadOf(p.Rules)
	p.Revision = "sha256:" + hex.EncodeToString(l.hash.Sum(nil))
	return p, nil
}

func versionMessage(v int) string {
	if v == 0 {
		return "version is missing: write version: 1"
	}
	return fmt.Sprintf("unknown policy version %d: this tf reads version 1", v)
}

// parse reads, parses and strictly decodes one file into v, returning the
// document's top-level node for position lookups.
func (l *loader) parse(name string, v any) (ast.Node, bool) {
	data, err := readLimited(l.fsys, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && name == PolicyFile {
			l.errs = append(l.errs, &PosError{File: l.display(name), Msg: "no policy here: " + PolicyFile + " not found"})
		} else {
			l.errs = append(l.errs, &PosError{File: l.display(name), Msg: err.Error()})
		}
		return nil, false
	}
	fmt.Fprintf(l.hash, "%s\x00%d\x00", name, len(data))
	l.hash.Write(data)
	body, ok := l.document(name, data)
	if !ok {
		return nil, false
	}
	if err := decodeNode(body, v); err != nil {
		l.errs = append(l.errs, yamlError(l.display(name), err))
		return nil, false
	}
	return body, true
}

// decodeNode decodes strictly. The decoder has panicked on some malformed
// input (fuzzing found a tagged flow value that does it); a file must never
// take tf down, so that is an error like any other.
func decodeNode(body ast.Node, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML decoder could not read this file (%v)", r)
		}
	}()
	return yaml.NodeToValue(body, v, yaml.Strict())
}

// document parses data into its single YAML document, refusing what a
// policy has no use for and could abuse (aliases can expand a small file
// into a huge value).
func (l *loader) document(name string, data []byte) (ast.Node, bool) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		l.errs = append(l.errs, yamlError(l.display(name), err))
		return nil, false
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d.Body != nil {
			docs = append(docs, d)
		}
	}
	switch {
	case len(docs) == 0:
		l.errs = append(l.errs, &PosError{File: l.display(name), Msg: "empty file"})
		return nil, false
	case len(docs) > 1:
		l.errorf(name, docs[1].Body, "more than one YAML document; a policy file holds one")
		return nil, false
	}
	bad := false
	ast.Walk(visitFunc(func(n ast.Node) bool {
		if bad {
			return false
		}
		switch n.Type() {
		case ast.AliasType, ast.AnchorType:
			l.errorf(name, n, "YAML anchors and aliases are not supported in policy files")
			bad = true
		}
		return !bad
	}), docs[0].Body)
	if bad {
		return nil, false
	}
	if docs[0].Body.Type() != ast.MappingType {
		l.errorf(name, docs[0].Body, "want a mapping of keys (version, rules, ...)")
		return nil, false
	}
	return docs[0].Body, true
}

type visitFunc func(ast.Node) bool

func (f visitFunc) Visit(n ast.Node) ast.Visitor {
	if f(n) {
		return f
	}
	return nil
}

func readLimited(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("file larger than %d MiB; refused", MaxFileBytes>>20)
	}
	return data, nil
}

// valueOf returns the value node of key in a mapping node, or the mapping
// itself when the key is absent (so errors still point somewhere useful).
func valueOf(n ast.Node, key string) ast.Node {
	if m, ok := n.(*ast.MappingNode); ok {
		for _, mv := range m.Values {
			if keyString(mv.Key) == key {
				return mv.Value
			}
		}
	}
	return n
}

func keyString(k ast.MapKeyNode) string {
	if s, ok := k.(*ast.StringNode); ok {
		return s.Value
	}
	return k.GetToken().Value
}

func itemOf(n ast.Node, i int) ast.Node {
	if s, ok := n.(*ast.SequenceNode); ok && i < len(s.Values) {
		return s.Values[i]
	}
	return n
}

var globChars = regexp.MustCompile(`^[a-z0-9_.*@/:\-]+$`)

// mcpGlobChars are the characters of MCP action patterns: MCP tool names
// keep their case (a rule for tool safe is not one for SAFE), unlisted
// servers are named (host), and escaped bytes read %XX.
var mcpGlobChars = regexp.MustCompile(`^mcp\.[A-Za-z0-9_.*@/:\-()%]*$`)

func (l *loader) addRules(file string, body ast.Node, rules []Rule) {
	if len(l.rules)+len(rules) > MaxRules {
		l.errorf(file, valueOf(body, "rules"), "too many rules: %d in all, the limit is %d", len(l.rules)+len(rules), MaxRules)
		return
	}
	seq := valueOf(body, "rules")
	for i := range rules {
		r := rules[i]
		node := itemOf(seq, i)
		cr := &CompiledRule{Rule: r, File: l.display(file)}
		cr.reason = ruleReason(&Match{Rule: r.Name, Decision: r.Decision, Reason: r.Reason})
		cr.Line, cr.Col = position(node)
		at := func(key string) ast.Node { return valueOf(node, key) }

		switch {
		case r.Name == "":
			l.errorf(file, node, "rule %d has no name", i+1)
		default:
			if first, dup := l.names[r.Name]; dup {
				l.errorf(file, at("name"), "duplicate rule name %q (first defined at %s:%d:%d)", r.Name, first.File, first.Line, first.Col)
			} else {
				pe := &PosError{File: l.display(file)}
				pe.Line, pe.Col = position(at("name"))
				l.names[r.Name] = pe
			}
		}
		label := ruleLabel(r.Name, i)
		if len(r.Actions) == 0 {
			l.errorf(file, node, "%s: actions is missing: list the action types it applies to, e.g. [github.repo.push]", label)
		}
		for j, a := range r.Actions {
			switch {
			case len(a) > maxGlobLength:
				l.errorf(file, itemOf(at("actions"), j), "%s: action pattern longer than %d characters", label, maxGlobLength)
			case !globChars.MatchString(a) && !mcpGlobChars.MatchString(a):
				l.errorf(file, itemOf(at("actions"), j), "%s: action pattern %q: use lower-case action types such as github.pr.merge, with * for any run of characters", label, a)
			default:
				cr.globs = append(cr.globs, newGlob(a))
			}
		}
		switch {
		case r.Decision == "":
			l.errorf(file, node, "%s: decision is missing: allow, deny or require_approval", label)
		case !r.Decision.Valid():
			l.errorf(file, at("decision"), "%s: decision %q: want allow, deny or require_approval", label, r.Decision)
		}
		switch r.Mode {
		case "", Enforce, Monitor:
		default:
			l.errorf(file, at("mode"), "%s: mode %q: want enforce or monitor", label, r.Mode)
		}
		if r.Approval != nil {
			if r.Decision != RequireApproval {
				l.errorf(file, at("approval"), "%s: approval settings apply only to decision: require_approval", label)
			}
			if r.Approval.Timeout != "" {
				d, err := time.ParseDuration(r.Approval.Timeout)
				switch {
				case err != nil:
					l.errorf(file, valueOf(at("approval"), "timeout"), "%s: approval timeout %q: want a duration such as 15m or 1h", label, r.Approval.Timeout)
				case d <= 0 || d > 24*time.Hour:
					l.errorf(file, valueOf(at("approval"), "timeout"), "%s: approval timeout %s: want more than 0 and at most 24h", label, d)
				default:
					cr.Timeout = d
				}
			}
		}
		if r.Limit != nil {
			q, key, msg := compileLimit(r.Limit, &r)
			if msg != "" {
				n := at("limit")
				if key != "" {
					n = valueOf(n, key)
				}
				l.errorf(file, n, "%s: %s", label, msg)
			} else {
				cr.Quota = q
			}
		}
		if r.When != "" {
			l.compile(file, at("when"), label, cr)
		}
		l.rules = append(l.rules, cr)
	}
}

func ruleLabel(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("rule %d", i+1)
	}
	return "rule " + name
}

func (l *loader) compile(fname string, n ast.Node, label string, cr *CompiledRule) {
	if len(cr.When) > MaxExprBytes {
		l.errorf(fname, n, "%s: condition is %d bytes, the limit is %d", label, len(cr.When), MaxExprBytes)
		return
	}
	prog, err := compileWhen(cr.When)
	if err == nil {
		cr.program = prog
		cr.native = compileNative(prog.Node())
		return
	}
	e := &PosError{File: l.display(fname), Msg: label + ": condition: " + exprMessage(err)}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		e.Line, e.Col = tk.Position.Line, tk.Position.Column
		var fe *file.Error
		if errors.As(err, &fe) && fe.Line <= 1 && !strings.Contains(cr.When, "\n") {
			// Point into a one-line condition: the column within the
			// expression, past the opening quote if there is one.
			e.Col += fe.Column
			if o := strings.TrimSpace(tk.Origin); strings.HasPrefix(o, "\"") || strings.HasPrefix(o, "'") {
				e.Col++
			}
		}
	}
	l.errs = append(l.errs, e)
}

// exprMessage keeps expr's message and drops the source excerpt it appends.
func exprMessage(err error) string {
	var fe *file.Error
	msg := err.Error()
	if errors.As(err, &fe) {
		msg = fe.Message
	}
	msg, _, _ = strings.Cut(msg, "\n")
	return envNames.Replace(msg)
}

// envNames rewrites the Go names of the environment types in expr's
// messages into the names policies use.
var envNames = strings.NewReplacer(
	"type rules.requestEnv", "request", "rules.requestEnv", "request",
	"type rules.actionEnv", "action", "rules.actionEnv", "action",
	"*rules.exprEnv", "the environment", "rules.exprEnv", "the environment",
)

func (l *loader) hosts(file string, body ast.Node, key string, hosts []string) []string {
	out := hosts[:0:0]
	for i, h := range hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" || strings.ContainsAny(h, " /") {
			l.errorf(file, itemOf(valueOf(body, key), i), "%s: %q is not a host name", key, hosts[i])
			continue
		}
		out = append(out, h)
	}
	return out
}

var mcpServerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// CheckMCPServerName checks an MCP server's name, which action types
// (mcp.<name>.<tool>) and credentials.mcp carry.
func CheckMCPServerName(name string) error {
	if name == "" {
		return errors.New("no name")
	}
	if len(name) > 64 || !mcpServerName.MatchString(name) {
		return fmt.Errorf("name %q: use lower-case letters, digits, - and _ (at most 64), e.g. docs", name)
	}
	return nil
}

// NormalizeMCPServerURL checks an MCP server's URL and returns the form
// servers are matched by: scheme://host/path, host in lower case, no
// trailing slash.
func NormalizeMCPServerURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case raw == "":
		return "", errors.New("no url")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("url %q: want an absolute http or https URL such as https://mcp.example.com/mcp", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("url %q: no user, query or fragment (credentials go under credentials.mcp)", raw)
	}
	return u.Scheme + "://" + strings.ToLower(u.Host) + strings.TrimSuffix(u.Path, "/"), nil
}

// mcpServers validates mcp_servers: unique names fit for action types,
// unique absolute http(s) URLs without credentials, query or fragment.
func (l *loader) mcpServers(body ast.Node, servers []MCPServer) []MCPServer {
	seq := valueOf(body, "mcp_servers")
	names := map[string]bool{}
	urls := map[string]bool{}
	var out []MCPServer
	for i, s := range servers {
		node := itemOf(seq, i)
		ok := true
		switch err := CheckMCPServerName(s.Name); {
		case s.Name == "":
			l.errorf(PolicyFile, node, "mcp_servers: server %d has no name", i+1)
			ok = false
		case err != nil:
			l.errorf(PolicyFile, valueOf(node, "name"), "mcp_servers: %v", err)
			ok = false
		case names[s.Name]:
			l.errorf(PolicyFile, valueOf(node, "name"), "mcp_servers: duplicate name %q", s.Name)
			ok = false
		}
		names[s.Name] = true
		switch key, err := NormalizeMCPServerURL(s.URL); {
		case s.URL == "":
			l.errorf(PolicyFile, node, "mcp_servers: server %q has no url", s.Name)
			ok = false
		case err != nil:
			l.errorf(PolicyFile, valueOf(node, "url"), "mcp_servers: %v", err)
			ok = false
		case urls[key]:
			l.errorf(PolicyFile, valueOf(node, "url"), "mcp_servers: url %q is listed twice", s.URL)
			ok = false
		default:
			urls[key] = true
			s.URL = key
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}
