package connectors

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tameflare/tf/rules"
)

// A Refuser answers a refused request in the client's own protocol, so that
// the client shows the rule and reason instead of a bare HTTP error (git
// prints "! [remote rejected] main -> main (reason)"). The gateway calls it
// for a refused request of a connector that implements it; ok false means
// the gateway's plain refusal applies. actions are the refused actions of
// the request; rule and reason are the deciding rule and its reason.
type Refuser interface {
	Refuse(r *Request, actions []rules.Action, rule, reason, requestID string) (status int, header http.Header, body []byte, ok bool)
}

// An EachRefuser answers a refused request that carries several messages
// (a JSON-RPC batch) message by message. The gateway prefers it to
// Refuser. actions and decisions are all of the request's, in the order
// Classify returned them; the gateway's final decision on a held action
// replaces the one in decisions. A request that could not be classified
// comes with one action, tf.unclassified, whose params.error says why.
type EachRefuser interface {
	RefuseEach(r *Request, actions []rules.Action, decisions []rules.Decision, requestID string) (status int, header http.Header, body []byte, ok bool)
}

// A Sniffer is a connector that recognises its requests by their content
// (a JSON-RPC body, protocol headers) rather than by host. The registry
// consults sniffers, in order, for requests to hosts that only the generic
// connector serves; the hosts of specific connectors stay theirs.
type Sniffer interface {
	Connector
	// Sniff reports whether the connector classifies r. It must be cheap:
	// it runs for every request to an unclaimed host.
	Sniff(r *Request) bool
}

// An UpgradeGovernor is a connector that governs a protocol a request
// upgrades to (WebSocket, h2c): it classifies what the connection carries
// after the upgrade. A request that asks for an upgrade to a protocol its
// connector does not govern is refused, since after the upgrade tf reads
// no more of the connection. No built-in connector governs one.
type UpgradeGovernor interface {
	GovernsUpgrade(protocol string) bool
}

// Options configure the default registry.
type Options struct {
	GitHub GitHubOptions
	NPM    NPMOptions
	// Declared connectors are registered after the built-in ones; one that
	// claims a host a built-in connector serves is an error.
	Declared []Declared
}

// A Registry holds connectors and picks the one that serves a host. The
// generic http connector serves every other host.
type Registry struct {
	list     []Connector
	sniffers []Sniffer
	names    map[string]bool
	generic  Connector
	headers  headerMaps
}

// NewEmptyRegistry returns a registry with only the generic http connector.
func NewEmptyRegistry() *Registry {
	g := &HTTP{}
	return &Registry{names: map[string]bool{g.Name(): true}, generic: g, headers: newHeaderMaps()}
}

// NewRegistry returns the default registry: github, npm, the model APIs
// (anthropic, openai, google), the built-in declared connectors (slack,
// stripe), then the declared connectors of opts.
func NewRegistry(opts Options) (*Registry, error) {
	reg := NewEmptyRegistry()
	gh, err := NewGitHub(opts.GitHub)
	if err != nil {
		return nil, fmt.Errorf("configuring the github connector: %w", err)
	}
	reg.Register(gh)
	np, err := NewNPM(opts.NPM)
	if err != nil {
		return nil, fmt.Errorf("configuring the npm connector: %w", err)
	}
	reg.Register(np)
	reg.Register(NewAnthropic())
	reg.Register(NewOpenAI())
	reg.Register(NewGoogle())
	// The built-in declared connectors (Slack, Stripe) give way to a
	// declared connector of the same name, which replaces them.
	mine := map[string]bool{}
	for _, d := range opts.Declared {
		mine[d.Name] = true
	}
	for _, d := range builtinDeclared() {
		if !mine[d.Name] {
			reg.Register(mustDeclared(d))
		}
	}
	for _, d := range opts.Declared {
		dc, err := NewDeclared(d)
		if err != nil {
			return nil, err
		}
		if reg.names[dc.Name()] {
			return nil, fmt.Errorf("declared connector %q: name already taken", dc.Name())
		}
		for _, h := range dc.hostPatterns {
			probe := strings.TrimPrefix(h, "*.")
			if c := reg.Lookup(probe); c != reg.generic {
				return nil, fmt.Errorf("declared connector %q: host %q is served by the %s connector", dc.Name(), h, c.Name())
			}
		}
		reg.Register(dc)
	}
	return reg, nil
}

// Register adds c. Like a module registry, a duplicate name is a programming
// error and panics.
func (reg *Registry) Register(c Connector) {
	name := c.Name()
	if name == "" {
		panic("connectors: Register of a connector with an empty name")
	}
	if reg.names[name] {
		panic(fmt.Sprintf("connectors: connector %q registered twice", name))
	}
	reg.names[name] = true
	reg.list = append(reg.list, c)
}

// AddSniffer adds a connector consulted by content for requests to hosts
// no specific connector serves. A duplicate name panics, as in Register.
func (reg *Registry) AddSniffer(s Sniffer) {
	name := s.Name()
	if name == "" {
		panic("connectors: AddSniffer of a connector with an empty name")
	}
	if reg.names[name] {
		panic(fmt.Sprintf("connectors: connector %q registered twice", name))
	}
	reg.names[name] = true
	reg.sniffers = append(reg.sniffers, s)
}

// For returns the connector that classifies r: the one that handles its
// host, else the first sniffer that recognises it, else the generic one.
func (reg *Registry) For(r *Request) Connector {
	return reg.forHost(r, r.Host())
}

// forHost is For with the host of r already normalised.
func (reg *Registry) forHost(r *Request, host string) Connector {
	c := reg.lookupNormal(host)
	if c != reg.generic {
		return c
	}
	for _, s := range reg.sniffers {
		if s.Sniff(r) {
			return s
		}
	}
	return c
}

// Lookup returns the first registered connector that handles host, else the
// generic http connector. host may carry a port and any case.
func (reg *Registry) Lookup(host string) Connector {
	return reg.lookupNormal(normalizeHost(host))
}

// lookupNormal is Lookup of a host without port, in lower case.
func (reg *Registry) lookupNormal(host string) Connector {
	for _, c := range reg.list {
		if c.Handles(host) {
			return c
		}
	}
	return reg.generic
}

// Classify returns the actions of r, each with its connector and the
// non-secret parts of the request filled in. An error refuses the request.
func (reg *Registry) Classify(r *Request) ([]rules.Action, error) {
	if r == nil || r.HTTP == nil || r.HTTP.URL == nil {
		return nil, errors.New("classifying a request: no request")
	}
	info := reg.requestInfo(r)
	// info.Host is r.Host(): normalised once, not again for the lookup
	// and the connector.
	r.host, r.path = info.Host, escapedPath(r.HTTP.URL)
	defer func() { r.host, r.path = "", "" }()
	c := reg.forHost(r, info.Host)
	if up := r.HTTP.Header.Get("Upgrade"); up != "" {
		if ug, ok := c.(UpgradeGovernor); !ok || !ug.GovernsUpgrade(strings.ToLower(strings.TrimSpace(up))) {
			return nil, fmt.Errorf("%s connector: a protocol upgrade to %q is refused: no connector governs that protocol, and after the upgrade tf would read no more of the connection", c.Name(), up)
		}
	}
	actions, err := c.Classify(r)
	if err != nil {
		return nil, fmt.Errorf("%s connector: %w", c.Name(), err)
	}
	if len(actions) == 0 {
		return nil, fmt.Errorf("%s connector: no action for %s %s", c.Name(), info.Method, info.Path)
	}
	for i := range actions {
		if actions[i].Connector == "" {
			actions[i].Connector = c.Name()
		}
		// The actions of one request share its read-only header map.
		actions[i].Request = info
	}
	return actions, nil
}

// maxHeaderValue bounds a recorded header value.
const maxHeaderValue = 256

// requestInfo returns the part of r that rules may look at. Its header map
// is shared with other requests that recorded the same values: read-only.
func (reg *Registry) requestInfo(r *Request) rules.Request {
	u := r.HTTP.URL
	hostport := u.Host
	if hostport == "" {
		hostport = r.HTTP.Host
	}
	host, port := splitHostPort(hostport)
	scheme := r.Scheme
	if scheme == "" {
		scheme = u.Scheme
	}
	if scheme == "" {
		scheme = "http"
	}
	if port == 0 {
		port = 80
		if scheme == "https" {
			port = 443
		}
	}
	info := rules.Request{
		Method: r.HTTP.Method,
		Scheme: scheme,
		Host:   host,
		Port:   port,
		Path:   u.Path,
		Query:  redactQuery(u.RawQuery),
	}
	if info.Method == "" {
		info.Method = http.MethodGet
	}
	// Ranging over the request's few headers beats a canonicalizing Get
	// per allowed name; keys of parsed requests are canonical already.
	var hv headerValues
	recorded := false
	for k, vs := range r.HTTP.Header {
		i := recordedHeader(k)
		if i < 0 || len(vs) == 0 || vs[0] == "" {
			continue
		}
		v := vs[0]
		if len(v) > maxHeaderValue {
			v = v[:maxHeaderValue]
		}
		hv[i], recorded = v, true
	}
	if recorded {
		info.Headers = reg.headers.get(&hv)
	}
	return info
}

// escapedPath is u.EscapedPath(), without its byte-by-byte escaping for a
// path that has nothing to escape, which is nearly every path.
func escapedPath(u *url.URL) string {
	if u.RawPath != "" {
		return u.EscapedPath()
	}
	p := u.Path
	for i := 0; i < len(p); i++ {
		if !pathByte[p[i]] {
			return u.EscapedPath()
		}
	}
	return p
}

// pathByte marks the bytes EscapedPath keeps as they are: RFC 3986
// unreserved characters and the reserved ones it leaves in paths.
var pathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~$&+,;=:@/" {
		t[c] = true
	}
	return t
}()

// requestHost returns the lower-case host of r without its port.
func requestHost(r *Request) string {
	if r.host != "" {
		return r.host
	}
	h := r.HTTP.URL.Host
	if h == "" {
		h = r.HTTP.Host
	}
	return normalizeHost(h)
}

func normalizeHost(h string) string {
	host, _ := splitHostPort(h)
	return host
}

// splitHostPort splits host[:port] without allocating in the common cases
// (net.SplitHostPort allocates an error for a host without a port).
func splitHostPort(hp string) (string, int) {
	host, portStr := hp, ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return lowerHost(strings.TrimPrefix(hp, "[")), 0
		}
		host = hp[1:end]
		if rest := hp[end+1:]; strings.HasPrefix(rest, ":") {
			portStr = rest[1:]
		}
	} else if i := strings.LastIndexByte(hp, ':'); i >= 0 && strings.IndexByte(hp, ':') == i {
		host, portStr = hp[:i], hp[i+1:]
	}
	port := 0
	if len(portStr) > 0 && len(portStr) <= 5 {
		for i := 0; i < len(portStr); i++ {
			c := portStr[i]
			if c < '0' || c > '9' {
				port = 0
				break
			}
			port = port*10 + int(c-'0')
		}
		if port > 65535 {
			port = 0
		}
	}
	return lowerHost(host), port
}

// lowerHost lower-cases h and drops a trailing dot, allocating only when
// something changes.
func lowerHost(h string) string {
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// secretQueryKeys are query parameters whose values are replaced in
// records: tokens in URLs are common enough (access_token, sig) that they
// must not reach an audit log.
var secretQueryKeys = []string{"token", "access_token", "auth", "key", "api_key", "apikey", "secret", "client_secret", "password", "passwd", "sig", "signature", "code", "jwt", "session"}

func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	changed := false
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		if !hasValue {
			continue
		}
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if isSecretName(name) {
			parts[i] = k + "=REDACTED"
			changed = true
		}
	}
	if !changed {
		return q
	}
	return strings.Join(parts, "&")
}

func isSecretName(name string) bool {
	n := strings.ToLower(name)
	for _, s := range secretQueryKeys {
		if n == s || strings.HasSuffix(n, "_"+s) || strings.HasSuffix(n, "-"+s) {
			return true
		}
	}
	return strings.Contains(n, "token") || strings.Contains(n, "secret") || strings.Contains(n, "password")
}
