package connectors

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/xrash/smetrics"

	"github.com/tameflare/tf/rules"
)

// ActionInfo describes one action type a connector can produce.
type ActionInfo struct {
	// Type is the action type; when Pattern is set it holds a <placeholder>
	// (http.<method>) and stands for every type its glob form matches.
	Type      string `json:"type"`
	Pattern   bool   `json:"pattern,omitempty"`
	Connector string `json:"connector"`
	// Resource lists the keys of the action's resource.
	Resource []string `json:"resource,omitempty"`
	// Params lists the params the connector sets (a refinement may add
	// more for some requests, see Via).
	Params []string `json:"params,omitempty"`
	// Via says which requests produce it: "PATCH /repos/{owner}/{repo}",
	// "GraphQL mergePullRequest", "git push".
	Via []string `json:"via,omitempty"`
}

// Glob is the type as a glob: each <placeholder> becomes *.
func (a ActionInfo) Glob() string {
	if !a.Pattern {
		return a.Type
	}
	var b strings.Builder
	for s := a.Type; s != ""; {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		b.WriteByte('*')
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		s = s[i+j+1:]
	}
	return b.String()
}

// A Cataloguer lists the action types its connector can produce.
type Cataloguer interface {
	Catalog() []ActionInfo
}

var (
	_ Cataloguer = (*GitHub)(nil)
	_ Cataloguer = (*NPM)(nil)
	_ Cataloguer = (*HTTP)(nil)
	_ Cataloguer = (*DeclaredConnector)(nil)
)

// Catalog lists every action type of the registry's connectors that list
// theirs, sorted by type, one entry per type.
func (reg *Registry) Catalog() Catalog {
	var all []ActionInfo
	for _, c := range reg.all() {
		if cc, ok := c.(Cataloguer); ok {
			all = append(all, cc.Catalog()...)
		}
	}
	return merge(all)
}

// all is every connector of the registry, the generic one included.
func (reg *Registry) all() []Connector {
	out := append([]Connector(nil), reg.list...)
	if reg.generic != nil && !slices.Contains(out, reg.generic) {
		out = append(out, reg.generic)
	}
	return out
}

// BuiltinCatalog is the catalogue of the built-in connectors and of the
// declared ones given, plus the MCP and tf types that other packages
// produce.
func BuiltinCatalog(declared ...Declared) (Catalog, error) {
	reg, err := NewRegistry(Options{Declared: declared})
	if err != nil {
		return nil, err
	}
	return append(reg.Catalog(), otherActions...).sorted(), nil
}

// otherActions are produced outside the connectors of this package: the
// MCP classifier (package mcp) and the gateway itself.
var otherActions = []ActionInfo{
	{Type: "mcp.<server>.<tool>", Pattern: true, Connector: "mcp", Params: []string{"the tool call's arguments"}, Via: []string{"MCP tools/call"}},
	{Type: "mcp.<server>.@<method>", Pattern: true, Connector: "mcp", Via: []string{"other MCP methods: @tools/list, @initialize, ..."}},
	{Type: "tf.unclassified", Connector: "tf", Params: []string{"error"}, Via: []string{"a request its connector could not classify (always refused)"}},
}

// A Catalog is a list of action types, sorted by type.
type Catalog []ActionInfo

func (c Catalog) sorted() Catalog {
	sort.SliceStable(c, func(i, j int) bool { return c[i].Type < c[j].Type })
	return c
}

// Connector returns the entries of one connector.
func (c Catalog) Connector(name string) Catalog {
	var out Catalog
	for _, a := range c {
		if a.Connector == name {
			out = append(out, a)
		}
	}
	return out
}

// Matches reports whether the actions glob of a rule matches at least one
// type of the catalogue. A glob matches a pattern entry when it matches
// the pattern with its placeholders filled in by any value: the check is
// whether the two globs can match a common string.
func (c Catalog) Matches(glob string) bool {
	for _, a := range c {
		if a.Pattern {
			if globsOverlap(glob, a.Glob()) {
				return true
			}
		} else if rules.GlobMatch(glob, a.Type) {
			return true
		}
	}
	return false
}

// Closest returns up to n types nearest to glob by edit distance,
// nearest first.
func (c Catalog) Closest(glob string, n int) []string {
	type cand struct {
		t string
		d int
	}
	var cs []cand
	for _, a := range c {
		cs = append(cs, cand{a.Type, smetrics.WagnerFischer(glob, a.Type, 1, 1, 1)})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	var out []string
	for i := 0; i < len(cs) && len(out) < n; i++ {
		if cs[i].d <= max(3, len(glob)/3) {
			out = append(out, cs[i].t)
		}
	}
	return out
}

// globsOverlap reports whether some string matches both globs (* matches
// any run of characters).
func globsOverlap(a, b string) bool {
	type state struct{ i, j int }
	seen := map[state]bool{}
	var walk func(i, j int) bool
	walk = func(i, j int) bool {
		if seen[state{i, j}] {
			return false
		}
		seen[state{i, j}] = true
		switch {
		case i == len(a) && j == len(b):
			return true
		case i < len(a) && a[i] == '*':
			return walk(i+1, j) || (j < len(b) && walk(i, j+1))
		case j < len(b) && b[j] == '*':
			return walk(i, j+1) || (i < len(a) && walk(i+1, j))
		case i < len(a) && j < len(b) && a[i] == b[j]:
			return walk(i+1, j+1)
		}
		return false
	}
	return walk(0, 0)
}

// merge folds entries of the same type together (one type reached by
// several routes), keeping the union of resources, params and routes.
func merge(all []ActionInfo) Catalog {
	byType := map[string]*ActionInfo{}
	var order []string
	for _, a := range all {
		m, ok := byType[a.Type]
		if !ok {
			cp := a
			cp.Resource = slices.Clone(a.Resource)
			cp.Params = slices.Clone(a.Params)
			cp.Via = slices.Clone(a.Via)
			byType[a.Type] = &cp
			order = append(order, a.Type)
			continue
		}
		m.Resource = union(m.Resource, a.Resource)
		m.Params = union(m.Params, a.Params)
		m.Via = append(m.Via, a.Via...)
	}
	out := make(Catalog, 0, len(order))
	for _, t := range order {
		a := byType[t]
		sort.Strings(a.Resource)
		sort.Strings(a.Params)
		sort.Strings(a.Via)
		a.Via = slices.Compact(a.Via)
		out = append(out, *a)
	}
	return out.sorted()
}

func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}

// Catalog lists the GitHub connector's types, read from its REST route
// table, its GraphQL mutation table and the git protocol's.
func (*GitHub) Catalog() []ActionInfo {
	var out []ActionInfo
	for _, d := range githubRoutes {
		a := ActionInfo{Type: d.action, Connector: "github", Via: []string{d.method + " " + d.path}}
		segs, err := parseTemplate(d.path)
		if err != nil {
			continue // the route table's own check panics on this
		}
		for _, sg := range segs {
			if !sg.param && !sg.rest {
				continue
			}
			switch sg.name {
			case "owner", "repo", "org":
				a.Resource = union(a.Resource, []string{sg.name})
			default:
				a.Params = union(a.Params, []string{sg.name})
			}
		}
		for _, f := range strings.Fields(d.fields) {
			src, param, ok := strings.Cut(f, ">")
			if !ok {
				param = src
			}
			a.Params = union(a.Params, []string{param})
		}
		out = append(out, a)
		for _, r := range githubRefined[d.action] {
			ra := a
			ra.Type, ra.Via = r.typ, []string{d.method + " " + d.path + " " + r.when}
			out = append(out, ra)
		}
	}
	for name, m := range githubMutations {
		out = append(out, ActionInfo{Type: m.action, Connector: "github", Via: []string{"GraphQL " + name}})
		if m.closeOn != "" {
			out = append(out, ActionInfo{Type: m.closeOn, Connector: "github", Via: []string{"GraphQL " + name + " with state CLOSED"}})
		}
	}
	repo := []string{"owner", "repo"}
	out = append(out,
		ActionInfo{Type: "github.repo.pull", Connector: "github", Resource: repo, Via: []string{"git fetch/clone"}},
		ActionInfo{Type: "github.repo.push", Connector: "github", Resource: repo, Params: []string{"ref", "old", "new", "create", "delete", "branch", "tag", "push_options"}, Via: []string{"git push (one action per ref)"}},
		ActionInfo{Type: "github.branch.delete", Connector: "github", Resource: repo, Params: []string{"ref", "branch"}, Via: []string{"git push of a branch deletion"}},
		ActionInfo{Type: "github.tag.delete", Connector: "github", Resource: repo, Params: []string{"ref", "tag"}, Via: []string{"git push of a tag deletion"}},
		ActionInfo{Type: "github.branch.create", Connector: "github", Resource: repo, Params: []string{"ref", "branch"}, Via: []string{"GraphQL createRef of refs/heads/..."}},
		ActionInfo{Type: "github.tag.create", Connector: "github", Resource: repo, Params: []string{"ref", "tag"}, Via: []string{"GraphQL createRef of refs/tags/..."}},
		ActionInfo{Type: "github.graphql.query", Connector: "github", Params: []string{"operation", "name"}, Via: []string{"GraphQL query"}},
		ActionInfo{Type: "github.graphql.mutation", Connector: "github", Params: []string{"field", "alias"}, Via: []string{"GraphQL mutation without a REST twin"}},
		ActionInfo{Type: "github.api.<method>", Pattern: true, Connector: "github", Via: []string{"any other api.github.com request"}},
		ActionInfo{Type: "github.web.<method>", Pattern: true, Connector: "github", Via: []string{"any other github.com page"}},
	)
	return out
}

// githubRefined are the types a REST route's refinement turns its action
// into, looking at the body or the path.
var githubRefined = map[string][]struct{ typ, when string }{
	"github.pr.update":    {{"github.pr.close", "with state=closed"}},
	"github.issue.update": {{"github.issue.close", "with state=closed"}},
	"github.ref.create":   {{"github.branch.create", "of refs/heads/..."}, {"github.tag.create", "of refs/tags/..."}},
	"github.ref.delete":   {{"github.branch.delete", "of heads/..."}, {"github.tag.delete", "of tags/..."}},
	"github.file.create":  {{"github.file.update", "with sha (replacing a file)"}},
}

// Catalog lists the npm connector's types.
func (*NPM) Catalog() []ActionInfo {
	pkg := []string{"package"}
	return []ActionInfo{
		{Type: "npm.package.get", Connector: "npm", Resource: pkg, Params: []string{"package", "version"}, Via: []string{"GET /{package}[/{version}]"}},
		{Type: "npm.package.publish", Connector: "npm", Resource: pkg, Params: []string{"package", "version", "tag", "access"}, Via: []string{"PUT /{package} with a new version"}},
		{Type: "npm.package.update", Connector: "npm", Resource: pkg, Params: []string{"package", "versions"}, Via: []string{"PUT /{package} without a new version (deprecate, ...)"}},
		{Type: "npm.package.unpublish", Connector: "npm", Resource: pkg, Params: []string{"package", "rev", "all", "version"}, Via: []string{"DELETE /{package}/-rev/{rev}, or a PUT removing versions"}},
		{Type: "npm.package.search", Connector: "npm", Via: []string{"GET /-/v1/search"}},
		{Type: "npm.dist_tag.list", Connector: "npm", Resource: pkg, Params: []string{"package"}, Via: []string{"GET /-/package/{package}/dist-tags"}},
		{Type: "npm.dist_tag.set", Connector: "npm", Resource: pkg, Params: []string{"package", "tag", "version"}, Via: []string{"PUT /-/package/{package}/dist-tags/{tag}"}},
		{Type: "npm.dist_tag.delete", Connector: "npm", Resource: pkg, Params: []string{"package", "tag"}, Via: []string{"DELETE /-/package/{package}/dist-tags/{tag}"}},
		{Type: "npm.user.login", Connector: "npm", Params: []string{"username", "web"}, Via: []string{"PUT /-/user/org.couchdb.user:{name}", "POST /-/v1/login"}},
		{Type: "npm.user.get", Connector: "npm", Via: []string{"GET /-/whoami", "GET /-/npm/v1/user"}},
		{Type: "npm.token.create", Connector: "npm", Params: []string{"readonly", "cidr_whitelist"}, Via: []string{"POST /-/npm/v1/tokens"}},
		{Type: "npm.token.list", Connector: "npm", Via: []string{"GET /-/npm/v1/tokens"}},
		{Type: "npm.token.delete", Connector: "npm", Via: []string{"DELETE /-/npm/v1/tokens/token/{key}"}},
		{Type: "npm.audit", Connector: "npm", Params: []string{"endpoint"}, Via: []string{"POST /-/npm/v1/security/..."}},
		{Type: "npm.registry.ping", Connector: "npm", Via: []string{"GET /-/ping"}},
		{Type: "npm.api.<method>", Pattern: true, Connector: "npm", Params: []string{"path"}, Via: []string{"any other registry request"}},
	}
}

// Catalog lists the generic connector's types.
func (*HTTP) Catalog() []ActionInfo {
	return []ActionInfo{{Type: "http.<method>", Pattern: true, Connector: "http", Resource: []string{"host"}, Via: []string{"any request to a host no other connector serves"}}}
}

// Catalog lists a declared connector's types: its routes and the
// fallback for the rest.
func (c *DeclaredConnector) Catalog() []ActionInfo {
	var out []ActionInfo
	c.router.routes(func(method, path string, r *declRoute) {
		a := ActionInfo{Type: r.action, Connector: c.name, Resource: []string{"host"}, Via: []string{method + " " + path}}
		for _, p := range r.params {
			a.Params = union(a.Params, []string{p.name})
		}
		out = append(out, a)
	})
	return append(out, ActionInfo{Type: c.name + ".api.<method>", Pattern: true, Connector: c.name, Resource: []string{"host"}, Via: []string{"any other request to its hosts"}})
}

// routes calls f for each route of the router, with its method and its
// template rebuilt from the tree, in template order.
func (rt *router[T]) routes(f func(method, path string, h T)) {
	var visit func(n *rnode[T], path string)
	visit = func(n *rnode[T], path string) {
		p := path
		if p == "" {
			p = "/"
		}
		methods := make([]string, 0, len(n.handlers))
		for m := range n.handlers {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		for _, m := range methods {
			f(m, p, n.handlers[m])
		}
		lits := slices.Clone(n.lit)
		sort.Slice(lits, func(i, j int) bool { return lits[i].name < lits[j].name })
		for _, c := range lits {
			visit(c.node, path+"/"+c.name)
		}
		if n.param != nil {
			visit(n.param, path+"/{"+n.paramName+"}")
		}
		if n.rest != nil {
			visit(n.rest, path+"/{"+n.restName+"...}")
		}
	}
	visit(&rt.root, "")
}

// WriteMarkdown writes the catalogue as the Markdown of docs/actions.md.
func (c Catalog) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# Action types\n\n")
	b.WriteString("Generated from the connectors by `tf actions --markdown` (a test keeps it\n")
	b.WriteString("fresh: `go test ./connectors -run TestActionsDoc -update` rewrites it).\n")
	b.WriteString("A rule's `actions` globs match these types; `tf policy validate` reports a\n")
	b.WriteString("glob that matches none. A `<placeholder>` stands for any value.\n")
	var conns []string
	for _, a := range c {
		if !slices.Contains(conns, a.Connector) {
			conns = append(conns, a.Connector)
		}
	}
	sort.Strings(conns)
	for _, name := range conns {
		fmt.Fprintf(&b, "\n## %s\n\n| type | resource | params | from |\n|---|---|---|---|\n", name)
		for _, a := range c.Connector(name) {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", a.Type, cell(a.Resource), cell(a.Params), mdEscape(strings.Join(a.Via, "; ")))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func cell(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return mdEscape(strings.Join(xs, ", "))
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

// UnknownActions returns an error for each actions glob of p that matches
// no type of the catalogue: such a rule never fires, and nothing else
// would tell its author (github.pull.merge for github.pr.merge).
func (c Catalog) UnknownActions(p *rules.Policy) rules.Errors {
	var errs rules.Errors
	for _, r := range p.Rules {
		for _, g := range r.Actions {
			if c.Matches(g) {
				continue
			}
			msg := fmt.Sprintf("rule %q: actions %q matches no action type a connector produces", r.Name, g)
			if near := c.Closest(g, 3); len(near) > 0 {
				msg += fmt.Sprintf(" (closest: %s)", strings.Join(near, ", "))
			}
			errs = append(errs, &rules.PosError{File: r.File, Line: r.Line, Col: r.Col, Msg: msg + "; tf actions lists them"})
		}
	}
	return errs
}
