package connectors

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/tameflare/tf/rules"
)

// NPMRegistry is one npm registry: a host and an optional path prefix
// (/api/npm/npm-remote for a repository manager).
type NPMRegistry struct {
	Host       string `yaml:"host" json:"host"`
	PathPrefix string `yaml:"path_prefix,omitempty" json:"path_prefix,omitempty"`
}

// NPMOptions configure the npm connector. registry.npmjs.org is always
// served.
type NPMOptions struct {
	Registries []NPMRegistry
}

// NPM classifies npm registry requests: installs, publishes, unpublishes,
// dist-tags, logins and tokens.
type NPM struct {
	prefixes map[string][]string // host → path prefixes, longest first
}

var _ Connector = (*NPM)(nil)

// NewNPM returns the npm connector.
func NewNPM(opts NPMOptions) (*NPM, error) {
	n := &NPM{prefixes: map[string][]string{"registry.npmjs.org": {""}}}
	for _, reg := range opts.Registries {
		host := normalizeHost(reg.Host)
		if host == "" || strings.ContainsAny(host, "/*") {
			return nil, fmt.Errorf("npm registry host %q: want a host name", reg.Host)
		}
		prefix := strings.TrimSuffix(reg.PathPrefix, "/")
		if prefix != "" && !strings.HasPrefix(prefix, "/") {
			return nil, fmt.Errorf("npm registry %s: path prefix %q must start with /", host, reg.PathPrefix)
		}
		n.prefixes[host] = append(n.prefixes[host], prefix)
	}
	for h, ps := range n.prefixes {
		// Longest prefix first, so that /npm/private wins over /npm.
		for i := 1; i < len(ps); i++ {
			for j := i; j > 0 && len(ps[j]) > len(ps[j-1]); j-- {
				ps[j], ps[j-1] = ps[j-1], ps[j]
			}
		}
		n.prefixes[h] = ps
	}
	return n, nil
}

// Name returns "npm".
func (*NPM) Name() string { return "npm" }

// Handles reports whether host is a configured registry.
func (n *NPM) Handles(host string) bool {
	_, ok := n.prefixes[host]
	return ok
}

// Classify returns the action of one registry request.
func (n *NPM) Classify(r *Request) ([]rules.Action, error) {
	path := r.escapedPath()
	matched := false
	for _, p := range n.prefixes[requestHost(r)] {
		if p == "" {
			matched = true
			break
		}
		if rest, ok := strings.CutPrefix(path, p); ok && (rest == "" || rest[0] == '/') {
			path, matched = rest, true
			break
		}
	}
	if !matched {
		// Outside the registry's prefix: another service on the host.
		return []rules.Action{{Connector: "npm", Type: "npm.api." + methodVerb(r.HTTP.Method), Params: map[string]any{"path": unescapePath(path)}}}, nil
	}
	a, err := classifyNPMPath(r.HTTP.Method, path, r.Body, r.Truncated)
	if err != nil {
		return nil, err
	}
	return []rules.Action{a}, nil
}

// npmSegments splits an escaped registry path into unescaped segments, with
// a scoped name (@scope/name or @scope%2fname) kept as one segment.
func npmSegments(path string) ([]string, error) {
	raw := strings.Split(strings.Trim(path, "/"), "/")
	if len(raw) == 1 && raw[0] == "" {
		return nil, nil
	}
	segs := make([]string, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		s, err := url.PathUnescape(raw[i])
		if err != nil {
			return nil, fmt.Errorf("bad escape in path segment %q", raw[i])
		}
		if strings.HasPrefix(s, "@") && !strings.Contains(s, "/") && i+1 < len(raw) && raw[i+1] != "-" {
			next, err := url.PathUnescape(raw[i+1])
			if err != nil {
				return nil, fmt.Errorf("bad escape in path segment %q", raw[i+1])
			}
			s += "/" + next
			i++
		}
		segs = append(segs, s)
	}
	return segs, nil
}

// validPackageName applies npm's rules (validate-npm-package-name) to a
// name: at most 214 characters, not starting with . or _, an optional
// @scope/ and otherwise only the characters encodeURIComponent leaves
// alone. Upper case stays valid, as it is for the legacy packages that
// have it: the registry treats names case-sensitively (JSONStream and
// jsonstream are two packages), so no case is folded.
func validPackageName(name string) bool {
	if name == "" || len(name) > 214 || name == "node_modules" || name == "favicon.ico" {
		return false
	}
	base := name
	if scope, rest, ok := strings.Cut(name, "/"); ok {
		if !strings.HasPrefix(scope, "@") || len(scope) < 2 || rest == "" || strings.Contains(rest, "/") || !npmNameChars(scope[1:]) {
			return false
		}
		base = rest
	} else if strings.HasPrefix(name, "@") {
		return false
	}
	if base[0] == '.' || base[0] == '_' || base[0] == '-' {
		return false
	}
	return npmNameChars(base)
}

// npmNameChars reports whether s has only characters encodeURIComponent
// does not escape.
func npmNameChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0) {
			return false
		}
	}
	return true
}

func npmAction(typ, pkg string) rules.Action {
	a := rules.Action{Connector: "npm", Type: typ, Params: map[string]any{}}
	if pkg != "" {
		a.Resource = map[string]string{"package": pkg}
		a.Params["package"] = pkg
	}
	return a
}

// classifyNPMPath classifies a request by method and path (without the
// registry prefix).
func classifyNPMPath(method, path string, body []byte, truncated bool) (rules.Action, error) {
	fallback := rules.Action{Connector: "npm", Type: "npm.api." + methodVerb(method), Params: map[string]any{"path": unescapePath(path)}}
	segs, err := npmSegments(path)
	if err != nil {
		return rules.Action{}, fmt.Errorf("npm: %w", err)
	}
	if len(segs) == 0 {
		return fallback, nil
	}
	if segs[0] == "-" {
		return classifyNPMService(method, segs[1:], body, truncated, fallback)
	}
	pkg := segs[0]
	if !validPackageName(pkg) {
		if method != "GET" && method != "HEAD" {
			// A write names a package or nothing: one that npm's rules
			// reject cannot be told apart from the one a rule names.
			return rules.Action{}, fmt.Errorf("npm: %s of %q: not a valid npm package name", method, pkg)
		}
		return fallback, nil
	}
	rest := segs[1:]
	switch {
	case len(rest) == 0:
		switch method {
		case "GET", "HEAD":
			return npmAction("npm.package.get", pkg), nil
		case "PUT":
			return classifyPublish(pkg, body, truncated)
		}
	case len(rest) == 1 && (method == "GET" || method == "HEAD"):
		a := npmAction("npm.package.get", pkg)
		a.Params["version"] = rest[0]
		return a, nil
	case len(rest) == 2 && rest[0] == "-rev":
		// libnpmpublish unpublishes every version with DELETE, and one
		// version with a PUT of the document without it (the tarball
		// DELETE below follows).
		switch method {
		case "DELETE":
			a := npmAction("npm.package.unpublish", pkg)
			a.Params["rev"] = rest[1]
			a.Params["all"] = true
			return a, nil
		case "PUT":
			a := npmAction("npm.package.unpublish", pkg)
			a.Params["rev"] = rest[1]
			a.Params["all"] = false
			return a, nil
		}
	case len(rest) >= 2 && rest[0] == "-" && strings.HasSuffix(rest[len(rest)-1], ".tgz") && (method == "GET" || method == "HEAD"):
		a := npmAction("npm.package.get", pkg)
		if v := tarballVersion(pkg, rest[len(rest)-1]); v != "" {
			a.Params["version"] = v
		}
		return a, nil
	case len(rest) >= 4 && rest[0] == "-" && rest[len(rest)-2] == "-rev" && method == "DELETE":
		file := rest[len(rest)-3]
		a := npmAction("npm.package.unpublish", pkg)
		a.Params["rev"] = rest[len(rest)-1]
		a.Params["all"] = false
		if v := tarballVersion(pkg, file); v != "" {
			a.Params["version"] = v
		}
		return a, nil
	}
	return withPackage(fallback, pkg), nil
}

func withPackage(a rules.Action, pkg string) rules.Action {
	a.Resource = map[string]string{"package": pkg}
	a.Params["package"] = pkg
	return a
}

// tarballVersion reads the version from a tarball file name: name-1.2.3.tgz
// (the unscoped part of the package name).
func tarballVersion(pkg, file string) string {
	base := pkg
	if _, n, ok := strings.Cut(pkg, "/"); ok {
		base = n
	}
	file = strings.TrimPrefix(file, pkg[:len(pkg)-len(base)])
	v, ok := strings.CutPrefix(strings.TrimSuffix(file, ".tgz"), base+"-")
	if !ok {
		return ""
	}
	return v
}

// classifyNPMService classifies /-/... endpoints.
func classifyNPMService(method string, segs []string, body []byte, truncated bool, fallback rules.Action) (rules.Action, error) {
	join := strings.Join(segs, "/")
	switch {
	case len(segs) >= 3 && segs[0] == "package" && segs[2] == "dist-tags":
		pkg := segs[1]
		if !validPackageName(pkg) {
			if method != "GET" && method != "HEAD" {
				return rules.Action{}, fmt.Errorf("npm dist-tag: %s of %q: not a valid npm package name", method, pkg)
			}
			return fallback, nil
		}
		if len(segs) == 3 && method == "GET" {
			return npmAction("npm.dist_tag.list", pkg), nil
		}
		if len(segs) != 4 {
			break
		}
		tag := segs[3]
		switch method {
		case "PUT", "POST":
			a := npmAction("npm.dist_tag.set", pkg)
			a.Params["tag"] = tag
			v, err := decodeBody(body, truncated)
			if err != nil {
				return rules.Action{}, fmt.Errorf("npm dist-tag %s of %s: %w", tag, pkg, err)
			}
			ver, ok := v.(string)
			if !ok {
				return rules.Action{}, fmt.Errorf("npm dist-tag %s of %s: body is not a version string", tag, pkg)
			}
			a.Params["version"] = ver
			return a, nil
		case "DELETE":
			a := npmAction("npm.dist_tag.delete", pkg)
			a.Params["tag"] = tag
			return a, nil
		}
	case len(segs) == 2 && segs[0] == "user" && strings.HasPrefix(segs[1], "org.couchdb.user:") && method == "PUT":
		a := npmAction("npm.user.login", "")
		a.Params["username"] = strings.TrimPrefix(segs[1], "org.couchdb.user:")
		return a, nil
	case join == "v1/login" && method == "POST":
		a := npmAction("npm.user.login", "")
		a.Params["web"] = true
		return a, nil
	case join == "whoami" && method == "GET":
		return npmAction("npm.user.get", ""), nil
	case join == "npm/v1/user" && method == "GET":
		return npmAction("npm.user.get", ""), nil
	case join == "npm/v1/tokens" && method == "POST":
		a := npmAction("npm.token.create", "")
		vals, err := bodyMembers(body, truncated, func(k string) bool { return k == "readonly" || k == "cidr_whitelist" })
		if err != nil {
			return rules.Action{}, fmt.Errorf("npm token create: %w", err)
		}
		for k, v := range vals {
			a.Params[k] = v
		}
		return a, nil
	case join == "npm/v1/tokens" && method == "GET":
		return npmAction("npm.token.list", ""), nil
	case len(segs) == 4 && join == "npm/v1/tokens/token/"+segs[3] && method == "DELETE":
		return npmAction("npm.token.delete", ""), nil
	case len(segs) >= 3 && segs[0] == "npm" && segs[1] == "v1" && segs[2] == "security" && method == "POST":
		a := npmAction("npm.audit", "")
		a.Params["endpoint"] = strings.Join(segs[3:], "/")
		return a, nil
	case join == "v1/search" && method == "GET":
		return npmAction("npm.package.search", ""), nil
	case join == "ping" && method == "GET":
		return npmAction("npm.registry.ping", ""), nil
	}
	return fallback, nil
}

// classifyPublish reads a PUT /{name} body, whole and strictly: the
// registry applies the last of repeated keys, so a "versions" after the
// large base64 _attachments must be seen. A PUT with several versions and
// no attachment is a document update (npm deprecate).
func classifyPublish(pkg string, body []byte, truncated bool) (rules.Action, error) {
	want := map[string]bool{"name": true, "dist-tags": true, "versions": true, "access": true}
	seen := map[string]bool{}
	vals, err := bodyMembers(body, truncated, func(k string) bool {
		seen[k] = true
		// Attachments are skipped, not decoded: only their presence counts.
		return want[k]
	})
	if err != nil {
		return rules.Action{}, fmt.Errorf("npm publish of %s: %w", pkg, err)
	}
	for _, k := range []string{"dist-tags", "versions"} {
		if _, ok := vals[k]; !ok {
			return rules.Action{}, fmt.Errorf("npm publish of %s: body has no %q", pkg, k)
		}
	}
	if name, ok := vals["name"].(string); ok && name != pkg {
		return rules.Action{}, fmt.Errorf("npm publish: body names package %q but the path names %q", name, pkg)
	}
	versions, ok := vals["versions"].(map[string]any)
	if !ok {
		return rules.Action{}, fmt.Errorf("npm publish of %s: versions is not an object", pkg)
	}
	tags, ok := vals["dist-tags"].(map[string]any)
	if !ok {
		return rules.Action{}, fmt.Errorf("npm publish of %s: dist-tags is not an object", pkg)
	}
	if len(versions) != 1 {
		if seen["_attachments"] {
			return rules.Action{}, fmt.Errorf("npm publish of %s: %d versions in one publish", pkg, len(versions))
		}
		a := npmAction("npm.package.update", pkg)
		a.Params["versions"] = len(versions)
		return a, nil
	}
	a := npmAction("npm.package.publish", pkg)
	for v := range versions {
		a.Params["version"] = v
	}
	if len(tags) == 1 {
		for t, v := range tags {
			a.Params["tag"] = t
			if s, ok := v.(string); ok && s != a.Params["version"] {
				return rules.Action{}, fmt.Errorf("npm publish of %s: dist-tag %s points at %s, not the published %s", pkg, t, s, a.Params["version"])
			}
		}
	} else if len(tags) > 1 {
		return rules.Action{}, fmt.Errorf("npm publish of %s: %d dist-tags in one publish", pkg, len(tags))
	}
	if acc, ok := vals["access"].(string); ok {
		a.Params["access"] = acc
	}
	return a, nil
}
