package connectors

import (
	"fmt"
	"net/url"
	"strings"
)

// maxSegments bounds the path segments a route matcher looks at; a longer
// path matches no route (it can still match a trailing {name...}).
const maxSegments = 32

// maxCaptures bounds the path parameters of one template.
const maxCaptures = 8

// A router matches a method and a URL path against route templates such as
// /repos/{owner}/{repo}/pulls/{number}. The path is split once and walked
// down a tree of segments, so matching costs the same however many routes
// there are. A final {name...} captures the rest of the path (one segment or
// more). Literal segments win over parameters, parameters over a rest
// capture.
type router[T any] struct {
	root rnode[T]
}

type rnode[T any] struct {
	// lit holds the literal children. Nodes have few, and comparing a
	// handful of strings (length first) beats hashing the segment.
	lit       []litChild[T]
	param     *rnode[T]
	paramName string
	rest      *rnode[T]
	restName  string
	// handlers by method; "*" matches any method.
	handlers map[string]T
}

type litChild[T any] struct {
	name string
	node *rnode[T]
}

// child returns the literal child named seg, or nil.
func (n *rnode[T]) child(seg string) *rnode[T] {
	for i := range n.lit {
		if n.lit[i].name == seg {
			return n.lit[i].node
		}
	}
	return nil
}

// capture is one path parameter of a match.
type capture struct {
	name, value string
}

// match is the result of a route lookup. Values are still escaped as they
// were in the path; Param unescapes them.
type match struct {
	n        int
	captures [maxCaptures]capture
}

// Param returns the unescaped value of the named path parameter.
func (m *match) Param(name string) (string, bool) {
	for i := 0; i < m.n; i++ {
		if m.captures[i].name == name {
			return m.value(i), true
		}
	}
	return "", false
}

// value returns the unescaped value of the i-th capture; a value that does
// not unescape is returned as it was.
func (m *match) value(i int) string {
	v := m.captures[i].value
	if strings.IndexByte(v, '%') < 0 {
		return v
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return v
	}
	return u
}

// add registers value for method and template. It rejects malformed
// templates and duplicate routes.
func (rt *router[T]) add(method, template string, value T) error {
	if method == "" {
		return fmt.Errorf("route %q: empty method", template)
	}
	segs, err := parseTemplate(template)
	if err != nil {
		return err
	}
	n := &rt.root
	for _, s := range segs {
		switch {
		case s.rest:
			if n.rest == nil {
				n.rest = &rnode[T]{}
				n.restName = s.name
			} else if n.restName != s.name {
				return fmt.Errorf("route %q: parameter {%s...} conflicts with {%s...} of another route", template, s.name, n.restName)
			}
			n = n.rest
		case s.param:
			if n.param == nil {
				n.param = &rnode[T]{}
				n.paramName = s.name
			} else if n.paramName != s.name {
				return fmt.Errorf("route %q: parameter {%s} conflicts with {%s} of another route", template, s.name, n.paramName)
			}
			n = n.param
		default:
			c := n.child(s.name)
			if c == nil {
				c = &rnode[T]{}
				n.lit = append(n.lit, litChild[T]{s.name, c})
			}
			n = c
		}
	}
	if n.handlers == nil {
		n.handlers = map[string]T{}
	}
	if _, dup := n.handlers[method]; dup {
		return fmt.Errorf("route %s %s: defined twice", method, template)
	}
	n.handlers[method] = value
	return nil
}

type tseg struct {
	name        string
	param, rest bool
}

// parseTemplate splits a route template into segments and checks them.
func parseTemplate(t string) ([]tseg, error) {
	if !strings.HasPrefix(t, "/") {
		return nil, fmt.Errorf("route %q: template must start with /", t)
	}
	if t == "/" {
		return nil, nil
	}
	parts := strings.Split(t[1:], "/")
	if len(parts) > maxSegments {
		return nil, fmt.Errorf("route %q: more than %d segments", t, maxSegments)
	}
	segs := make([]tseg, 0, len(parts))
	seen := map[string]bool{}
	for i, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("route %q: empty segment", t)
		}
		if !strings.HasPrefix(p, "{") {
			if strings.ContainsAny(p, "{}") {
				return nil, fmt.Errorf("route %q: segment %q mixes text and a parameter", t, p)
			}
			segs = append(segs, tseg{name: p})
			continue
		}
		if !strings.HasSuffix(p, "}") {
			return nil, fmt.Errorf("route %q: unclosed parameter %q", t, p)
		}
		name := p[1 : len(p)-1]
		rest := strings.HasSuffix(name, "...")
		if rest {
			name = strings.TrimSuffix(name, "...")
			if i != len(parts)-1 {
				return nil, fmt.Errorf("route %q: {%s...} must be the last segment", t, name)
			}
		}
		if !validIdent(name) {
			return nil, fmt.Errorf("route %q: bad parameter name %q", t, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("route %q: parameter %q used twice", t, name)
		}
		seen[name] = true
		if len(seen) > maxCaptures {
			return nil, fmt.Errorf("route %q: more than %d parameters", t, maxCaptures)
		}
		segs = append(segs, tseg{name: name, param: !rest, rest: rest})
	}
	return segs, nil
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// splitPath splits an escaped path into segments without allocating. A
// single trailing slash is ignored. ok is false when the path does not start
// with a slash or has more than maxSegments segments; starts then holds the
// offsets up to the limit so that a rest capture still works.
type splitPath struct {
	path string
	n    int
	// Offsets rather than strings keep the value small: it is zeroed for
	// every request.
	starts, ends [maxSegments]int32
	over         bool
}

// seg returns the i-th segment.
func (sp *splitPath) seg(i int) string { return sp.path[sp.starts[i]:sp.ends[i]] }

func (sp *splitPath) split(p string) bool {
	sp.path, sp.n, sp.over = p, 0, false
	if p == "" || p[0] != '/' {
		return false
	}
	if len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
		sp.path = p
	}
	if p == "/" {
		return true
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if sp.n == maxSegments {
				sp.over = true
				return true
			}
			sp.starts[sp.n], sp.ends[sp.n] = int32(start), int32(i)
			sp.n++
			start = i + 1
		}
	}
	return true
}

// lookup finds the route for method and the split path.
func (rt *router[T]) lookup(method string, sp *splitPath, m *match) (T, bool) {
	m.n = 0
	if v, ok := rt.walk(&rt.root, method, sp, 0, m); ok {
		return v, true
	}
	var zero T
	return zero, false
}

func (rt *router[T]) walk(n *rnode[T], method string, sp *splitPath, i int, m *match) (T, bool) {
	var zero T
	if i == sp.n {
		if sp.over {
			return zero, false
		}
		if v, ok := n.handlers[method]; ok {
			return v, true
		}
		v, ok := n.handlers["*"]
		return v, ok
	}
	seg := sp.seg(i)
	if c := n.child(seg); c != nil {
		if v, ok := rt.walk(c, method, sp, i+1, m); ok {
			return v, true
		}
	}
	if n.param != nil && seg != "" && m.n < maxCaptures {
		m.captures[m.n] = capture{n.paramName, seg}
		m.n++
		if v, ok := rt.walk(n.param, method, sp, i+1, m); ok {
			return v, true
		}
		m.n--
	}
	if n.rest != nil && m.n < maxCaptures {
		v, ok := n.rest.handlers[method]
		if !ok {
			v, ok = n.rest.handlers["*"]
		}
		if ok {
			m.captures[m.n] = capture{n.restName, sp.path[sp.starts[i]:]}
			m.n++
			return v, true
		}
	}
	return zero, false
}
