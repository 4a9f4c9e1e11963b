// Package injection describes how a secret is put into an outgoing request: which header, in which format.
package injection

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Defaults applied when an Injection leaves Header or Format empty.
const (
	DefaultHeader = "Authorization"
	DefaultFormat = "Bearer {}"
	// Placeholder marks where the secret goes in Format.
	Placeholder = "{}"
	// GitUser is the user name GitHub expects with a token over git smart HTTP.
	GitUser = "x-access-token"
)

// Errors wrapped by the validation errors of this package.
var (
	ErrInvalid     = errors.New("invalid credential injection")
	ErrInvalidName = errors.New("invalid secret name")
)

// Injection says which secret goes into which request header, and how.
// It is plain data so that policy files can embed it.
type Injection struct {
	Secret string `yaml:"secret" json:"secret" jsonschema:"required" jsonschema_description:"Name of the secret in the keyring (tf creds set NAME)."`
	Header string `yaml:"header,omitempty" json:"header,omitempty" jsonschema_description:"Request header that carries the secret (default Authorization)."`
	Format string `yaml:"format,omitempty" json:"format,omitempty" jsonschema_description:"Header value with {} where the secret goes (default Bearer {})."`
}

// Credentials maps connectors to the secrets the gateway injects for them.
// In a policy file:
//
//	credentials:
//	  github: {secret: gh-token}
//	  npm: {secret: npm-token}
//	  mcp: {docs: {secret: docs-token, header: Authorization, format: "Bearer {}"}}
//	  connectors: {jira: {secret: jira-token, header: X-Api-Key, format: "{}"}}
type Credentials struct {
	GitHub *Injection            `yaml:"github,omitempty" json:"github,omitempty" jsonschema_description:"Credentials for the github connector (REST, GraphQL, git over HTTPS)."`
	NPM    *Injection            `yaml:"npm,omitempty" json:"npm,omitempty" jsonschema_description:"Credentials for the npm registry."`
	MCP    map[string]*Injection `yaml:"mcp,omitempty" json:"mcp,omitempty" jsonschema_description:"Credentials per MCP server name."`
	// Connectors holds declared (YAML) connectors by name. An explicit key
	// rather than an inline map keeps strict decoding and the JSON Schema
	// simple: an unknown key under credentials stays an error.
	Connectors map[string]*Injection `yaml:"connectors,omitempty" json:"connectors,omitempty" jsonschema_description:"Credentials per declared connector name."`
}

// HeaderName returns the header the secret goes into.
func (in *Injection) HeaderName() string {
	if in.Header == "" {
		return DefaultHeader
	}
	return http.CanonicalHeaderKey(in.Header)
}

// FormatString returns the value template.
func (in *Injection) FormatString() string {
	if in.Format == "" {
		return DefaultFormat
	}
	return in.Format
}

// Validate reports the first problem with the injection.
func (in *Injection) Validate() error {
	if in == nil {
		return fmt.Errorf("%w: empty entry", ErrInvalid)
	}
	if err := ValidSecretName(in.Secret); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	h := in.HeaderName()
	if !validHeaderName(h) {
		return fmt.Errorf("%w: header %q is not a valid header name", ErrInvalid, in.Header)
	}
	if forbiddenHeader(h) {
		return fmt.Errorf("%w: header %q cannot carry a credential", ErrInvalid, h)
	}
	f := in.FormatString()
	if n := strings.Count(f, Placeholder); n != 1 {
		return fmt.Errorf("%w: format %q must contain {} exactly once", ErrInvalid, f)
	}
	if !validHeaderValue(strings.Replace(f, Placeholder, "", 1)) {
		return fmt.Errorf("%w: format %q contains a control character", ErrInvalid, f)
	}
	return nil
}

// Value returns the header value for secret. It refuses a secret that is
// empty or would break the header (line breaks and other control characters).
func (in *Injection) Value(secret string) (string, error) {
	if err := in.Validate(); err != nil {
		return "", err
	}
	if err := ValidSecretValue(secret); err != nil {
		return "", fmt.Errorf("secret %q: %w", in.Secret, err)
	}
	return strings.Replace(in.FormatString(), Placeholder, secret, 1), nil
}

// Apply removes the credentials the agent sent (see StripCredentials) and
// the injection's own header, then sets the header with the secret. The
// caller calls it only for requests to the connector's hosts, after the
// request was allowed. On error h is left with the agent's credentials
// removed and none added.
func (in *Injection) Apply(h http.Header, secret string) error {
	StripCredentials(h)
	if in != nil && in.Header != "" {
		h.Del(in.Header)
	}
	v, err := in.Value(secret)
	if err != nil {
		return err
	}
	h.Set(in.HeaderName(), v)
	return nil
}

// ApplyGitBasic is Apply for git smart HTTP, which only speaks Basic
// authentication: Authorization: Basic base64("x-access-token:" + secret).
// The injection's Header and Format are for API requests and do not apply.
func (in *Injection) ApplyGitBasic(h http.Header, secret string) error {
	StripCredentials(h)
	if in == nil {
		return fmt.Errorf("%w: empty entry", ErrInvalid)
	}
	if err := ValidSecretName(in.Secret); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := ValidSecretValue(secret); err != nil {
		return fmt.Errorf("secret %q: %w", in.Secret, err)
	}
	h.Set("Authorization", GitBasicHeader(secret))
	return nil
}

// credentialHeaders are removed from every request a credential is injected
// into: whatever the agent sent there is a placeholder or a leak.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie"}

// StripCredentials removes Authorization, Proxy-Authorization and Cookie.
// Wider stripping (every header whose name merely contains "key") would break
// headers such as Idempotency-Key or Sec-WebSocket-Key.
func StripCredentials(h http.Header) {
	for _, k := range credentialHeaders {
		h.Del(k)
	}
}

// BearerHeader returns "Bearer " + token.
func BearerHeader(token string) string { return "Bearer " + token }

// GitBasicHeader returns the Basic value GitHub accepts for a token over git
// smart HTTP.
func GitBasicHeader(token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(GitUser+":"+token))
}

// Validate reports every problem in the credentials, one per line, in a
// stable order.
func (c *Credentials) Validate() error {
	if c == nil {
		return nil
	}
	var errs []error
	check := func(where string, in *Injection) {
		if err := in.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("credentials.%s: %w", where, err))
		}
	}
	if c.GitHub != nil {
		check("github", c.GitHub)
	}
	if c.NPM != nil {
		check("npm", c.NPM)
	}
	for _, k := range sortedKeys(c.MCP) {
		if !validEntryName(k) {
			errs = append(errs, fmt.Errorf("credentials.mcp: %w: server name %q: use letters, digits, '-' and '_'", ErrInvalid, k))
			continue
		}
		check("mcp."+k, c.MCP[k])
	}
	for _, k := range sortedKeys(c.Connectors) {
		switch {
		case !validEntryName(k):
			errs = append(errs, fmt.Errorf("credentials.connectors: %w: connector name %q: use letters, digits, '-' and '_'", ErrInvalid, k))
			continue
		case k == "github" || k == "npm" || k == "mcp":
			errs = append(errs, fmt.Errorf("credentials.connectors.%s: %w: built-in connector, use credentials.%s", k, ErrInvalid, k))
			continue
		}
		check("connectors."+k, c.Connectors[k])
	}
	return errors.Join(errs...)
}

// Secrets returns the distinct secret names the credentials refer to,
// sorted: what a gateway resolves at start.
func (c *Credentials) Secrets() []string {
	if c == nil {
		return nil
	}
	seen := map[string]bool{}
	add := func(in *Injection) {
		if in != nil && in.Secret != "" {
			seen[in.Secret] = true
		}
	}
	add(c.GitHub)
	add(c.NPM)
	for _, in := range c.MCP {
		add(in)
	}
	for _, in := range c.Connectors {
		add(in)
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MaxNameLen bounds secret names.
const MaxNameLen = 128

// ValidSecretName reports whether name can name a secret: letters, digits,
// '-', '_' and '.', starting with a letter or digit, at most MaxNameLen
// bytes. The first-character rule keeps names apart from the keyring's own
// files (which start with '.' or '@') and from command-line flags.
func ValidSecretName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	ok := len(name) <= MaxNameLen && isAlnum(name[0])
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = isAlnum(c) || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return fmt.Errorf("%w %q: use letters, digits, '-', '_' and '.', starting with a letter or digit, at most %d characters", ErrInvalidName, name, MaxNameLen)
	}
	return nil
}

// ValidSecretValue refuses an empty secret and one that cannot travel in a
// header (control characters other than tab: a line break would split the
// request). The error never contains the value.
func ValidSecretValue(v string) error {
	if v == "" {
		return errors.New("secret value is empty")
	}
	if !validHeaderValue(v) {
		return errors.New("secret value contains a line break or another control character")
	}
	return nil
}

func validEntryName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validHeaderName follows RFC 9110's token grammar.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validHeaderValue allows visible ASCII, space, tab and bytes >= 0x80, as
// net/http does when it writes a request.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// forbiddenHeader lists headers whose meaning is the transport's, not a
// credential's: injecting into them would corrupt the request.
func forbiddenHeader(canon string) bool {
	switch canon {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Te", "Trailer", "Keep-Alive", "Proxy-Connection", "Content-Type", "Expect":
		return true
	}
	return false
}

func sortedKeys(m map[string]*Injection) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
