package connectors

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/tameflare/tf/rules"
)

// Declared is a connector declared in configuration rather than written in
// Go: the hosts it serves and a route table from method and path template
// to action.
type Declared struct {
	// Name is the connector name and the first part of its action names.
	Name string `yaml:"name" json:"name"`
	// Hosts are host names or patterns: *.example.com matches every
	// subdomain of example.com (not example.com itself).
	Hosts  []string `yaml:"hosts" json:"hosts"`
	Routes []Route  `yaml:"routes" json:"routes"`
}

// Route maps one method and path template to an action.
type Route struct {
	// Method is an HTTP method, or * for any.
	Method string `yaml:"method" json:"method"`
	// Path is a template: /v1/charges/{id}; a final {name...} takes the
	// rest of the path.
	Path string `yaml:"path" json:"path"`
	// Action is the action type, connector.resource.verb.
	Action string `yaml:"action" json:"action"`
	// Params maps a param name to its source: path.<name>, query.<name>
	// or body.<dot.path> into a JSON body.
	Params map[string]string `yaml:"params,omitempty" json:"params,omitempty"`
}

// DeclaredConnector is a connector built from a Declared.
type DeclaredConnector struct {
	name         string
	hostPatterns []string
	router       router[*declRoute]
}

type declRoute struct {
	action string
	params []declParam
	body   bool
}

type declParam struct {
	name, kind, key string
}

var _ Connector = (*DeclaredConnector)(nil)

// NewDeclared validates d and returns its connector.
func NewDeclared(d Declared) (*DeclaredConnector, error) {
	if !validActionPart(d.Name) {
		return nil, fmt.Errorf("declared connector %q: name must be lower-case letters, digits, _ or -", d.Name)
	}
	switch d.Name {
	case "github", "npm", "http", "mcp", "anthropic", "openai", "google":
		return nil, fmt.Errorf("declared connector %q: name is reserved for a built-in connector", d.Name)
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("declared connector %q: "+format, append([]any{d.Name}, args...)...)
	}
	if len(d.Hosts) == 0 {
		return nil, errf("no hosts")
	}
	c := &DeclaredConnector{name: d.Name}
	for _, h := range d.Hosts {
		p := strings.ToLower(strings.TrimSpace(h))
		base := strings.TrimPrefix(p, "*.")
		if base == "" || strings.ContainsAny(base, "*/:@ ") || !strings.Contains(base, ".") && base != "localhost" {
			return nil, errf("bad host pattern %q (want host.example.com or *.example.com)", h)
		}
		c.hostPatterns = append(c.hostPatterns, p)
	}
	for i, rt := range d.Routes {
		where := fmt.Sprintf("route %d (%s %s)", i+1, rt.Method, rt.Path)
		method := strings.ToUpper(strings.TrimSpace(rt.Method))
		if method == "" || method != "*" && !validToken(method) {
			return nil, errf("%s: bad method %q", where, rt.Method)
		}
		if !validActionType(rt.Action) {
			return nil, errf("%s: action %q is not connector.resource.verb in lower case", where, rt.Action)
		}
		segs, err := parseTemplate(rt.Path)
		if err != nil {
			return nil, errf("%s: %w", where, err)
		}
		pathParams := map[string]bool{}
		for _, s := range segs {
			if s.param || s.rest {
				pathParams[s.name] = true
			}
		}
		dr := &declRoute{action: rt.Action}
		for name, src := range rt.Params {
			kind, key, ok := strings.Cut(src, ".")
			if name == "" || !ok || key == "" {
				return nil, errf("%s: param %q: source %q is not path.<name>, query.<name> or body.<path>", where, name, src)
			}
			switch kind {
			case "path":
				if !pathParams[key] {
					return nil, errf("%s: param %q: the template has no {%s}", where, name, key)
				}
			case "query":
			case "body":
				dr.body = true
			default:
				return nil, errf("%s: param %q: unknown source %q (want path., query. or body.)", where, name, kind+".")
			}
			dr.params = append(dr.params, declParam{name: name, kind: kind, key: key})
		}
		if err := c.router.add(method, rt.Path, dr); err != nil {
			return nil, errf("%s: %w", where, err)
		}
	}
	return c, nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

func validActionPart(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validActionType accepts dotted lower-case names with at least one dot.
func validActionType(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if !validActionPart(p) {
			return false
		}
	}
	return true
}

// Name returns the declared name.
func (c *DeclaredConnector) Name() string { return c.name }

// Handles reports whether host matches one of the host patterns.
func (c *DeclaredConnector) Handles(host string) bool {
	for _, p := range c.hostPatterns {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}

// Classify returns the action of the matching route, or <name>.api.<method>.
func (c *DeclaredConnector) Classify(r *Request) ([]rules.Action, error) {
	host := requestHost(r)
	path := r.escapedPath()
	var sp splitPath
	var m match
	var route *declRoute
	ok := false
	if sp.split(path) {
		route, ok = c.router.lookup(r.HTTP.Method, &sp, &m)
	}
	if !ok {
		return []rules.Action{{
			Connector: c.name,
			Type:      c.name + ".api." + methodVerb(r.HTTP.Method),
			Resource:  map[string]string{"host": host},
			Params:    map[string]any{"path": unescapePath(path)},
		}}, nil
	}
	a := rules.Action{Connector: c.name, Type: route.action, Resource: map[string]string{"host": host}, Params: map[string]any{}}
	var body any
	if route.body {
		var err error
		if body, err = c.body(r); err != nil {
			return nil, fmt.Errorf("%s %s (%s): %w", r.HTTP.Method, unescapePath(path), route.action, err)
		}
	}
	for _, p := range route.params {
		switch p.kind {
		case "path":
			if v, ok := m.Param(p.key); ok {
				a.Params[p.name] = v
			}
		case "query":
			if vs, ok := r.HTTP.URL.Query()[p.key]; ok && len(vs) > 0 {
				a.Params[p.name] = vs[0]
			}
		case "body":
			if v, ok := lookupPath(body, p.key); ok && v != nil {
				a.Params[p.name] = v
			}
		}
	}
	return []rules.Action{a}, nil
}

// body decodes a JSON or form body for body.<path> params.
func (c *DeclaredConnector) body(r *Request) (any, error) {
	if len(r.Body) == 0 && !r.Truncated {
		return nil, nil
	}
	ct := strings.ToLower(r.HTTP.Header.Get("Content-Type"))
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		if r.Truncated {
			return nil, errors.New("form body is larger than the inspected prefix")
		}
		// Form bodies (Stripe's API) are flat: body.amount is the field.
		vals, err := parseForm(string(r.Body))
		if err != nil {
			return nil, err
		}
		return vals, nil
	}
	return decodeBody(r.Body, r.Truncated)
}

func parseForm(s string) (map[string]any, error) {
	out := map[string]any{}
	for _, kv := range strings.Split(s, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		uk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("invalid form body: %w", err)
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("invalid form body: %w", err)
		}
		if _, dup := out[uk]; dup {
			// Services differ on which of repeated fields counts.
			return nil, fmt.Errorf("ambiguous form body: field %q appears twice", uk)
		}
		out[uk] = uv
	}
	return out, nil
}
