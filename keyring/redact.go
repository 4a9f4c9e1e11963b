package keyring

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/tameflare/tf/keyring/injection"
)

// Redacted replaces what must not be shown.
const Redacted = "[redacted]"

// maxDepth bounds RedactParams' recursion; anything deeper (or a cycle) is
// redacted whole rather than walked.
const maxDepth = 32

// sensitiveHeaders are credential headers whose names do not contain one of
// the words below.
var sensitiveHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
	"private-token": true, "x-csrf-token": true, "dpop": true,
}

// sensitiveHeaderWords mark a header as sensitive anywhere in its name. Broad
// on purpose: redacting Sec-WebSocket-Key from a record costs nothing,
// missing a vendor's X-Foo-Auth costs a leak.
var sensitiveHeaderWords = []string{"token", "secret", "key", "password", "passwd", "signature", "session", "auth", "credential", "cookie"}

// SensitiveHeader reports whether a header may carry a credential and must
// be kept out of records and logs. Case-insensitive.
func SensitiveHeader(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	if sensitiveHeaders[n] {
		return true
	}
	for _, w := range sensitiveHeaderWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// secretKeyParts mark a parameter name as secret when found anywhere in its
// letters and digits, lower-cased (so api_key, apiKey and API-KEY agree).
var secretKeyParts = []string{
	"password", "passwd", "passphrase", "secret", "credential", "authorization",
	"apikey", "privatekey", "accesskey", "signingkey", "encryptionkey", "masterkey",
	"authtoken", "accesstoken", "refreshtoken", "idtoken", "bearertoken", "sessiontoken", "sessionid",
	"cookie",
}

// secretKeyWords mark a parameter name as secret when one of its words (split
// at separators and case changes) is exactly one of them. Whole words, so
// "author", "max_tokens" and "tokenizer" stay visible.
var secretKeyWords = map[string]bool{"token": true, "auth": true, "pwd": true, "otp": true, "signature": true, "jwt": true}

// keyQualifiers: "<qualifier> key" is a secret (ssh_key, clientKey); other
// keys (sort_key, partitionKey, keys) are data. A bare "key" is a secret.
var keyQualifiers = map[string]bool{
	"api": true, "private": true, "access": true, "secret": true, "client": true, "ssh": true,
	"signing": true, "license": true, "session": true, "shared": true, "deploy": true,
	"service": true, "account": true, "storage": true, "subscription": true, "app": true,
	"auth": true, "encryption": true, "master": true, "admin": true, "x": true,
}

// keyVerdicts caches SecretKey: parameter names repeat from request to
// request. Bounded, so that a stream of novel names cannot grow it forever.
var (
	keyVerdicts     sync.Map // string → bool
	keyVerdictCount atomic.Int64
)

const maxKeyVerdicts = 4096

// SecretKey reports whether a parameter with this name is treated as holding
// a secret by RedactParams.
func SecretKey(key string) bool {
	if v, ok := keyVerdicts.Load(key); ok {
		return v.(bool)
	}
	v := secretKey(key)
	if keyVerdictCount.Load() < maxKeyVerdicts {
		if _, loaded := keyVerdicts.LoadOrStore(key, v); !loaded {
			keyVerdictCount.Add(1)
		}
	}
	return v
}

func secretKey(key string) bool {
	words := splitWords(key)
	if len(words) == 0 {
		return false
	}
	joined := strings.Join(words, "")
	for _, p := range secretKeyParts {
		if strings.Contains(joined, p) {
			return true
		}
	}
	for _, w := range words {
		if secretKeyWords[w] {
			return true
		}
	}
	if words[len(words)-1] == "key" {
		return len(words) == 1 || keyQualifiers[words[len(words)-2]]
	}
	return false
}

// splitWords splits snake_case, kebab-case, camelCase and APIKey into lower
// case words of letters and digits.
func splitWords(s string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(s)
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if unicode.IsUpper(r) && len(cur) > 0 {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || unicode.IsUpper(prev) && nextLower {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return words
}

// tokenPrefixes are well-known credential formats; a string value that has
// one is redacted whatever its key.
var tokenPrefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "npm_", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xapp-", "sk-ant-", "sk-proj-", "AKIA", "ASIA"}

// SecretValue reports whether s looks like a credential by its form alone:
// a known token prefix followed by at least 16 token characters, an
// Authorization-style value, a JWT, or a PEM private key.
func SecretValue(s string) bool {
	t := strings.TrimSpace(s)
	for _, p := range tokenPrefixes {
		if strings.HasPrefix(t, p) && len(t) >= len(p)+16 && tokenChars(t[len(p):]) {
			return true
		}
	}
	lower := strings.ToLower(t)
	for _, p := range []string{"bearer ", "basic ", "token "} {
		if strings.HasPrefix(lower, p) && len(t) >= len(p)+8 && !strings.ContainsAny(strings.TrimSpace(t[len(p):]), " \t") {
			return true
		}
	}
	if strings.HasPrefix(t, "eyJ") && strings.Count(t, ".") == 2 && len(t) >= 30 && tokenChars(strings.ReplaceAll(t, ".", "")) {
		return true
	}
	return strings.Contains(t, "-----BEGIN") && strings.Contains(t, "PRIVATE KEY")
}

func tokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// RedactParams returns params with the value of every secret-looking key
// (SecretKey) Redacted, whole, whatever its type, and every string that
// looks like a credential (SecretValue) Redacted wherever it sits. Maps and
// slices are walked; values of types it cannot walk are Redacted, since what
// cannot be inspected cannot be shown. When nothing needs redacting, which
// is nearly always, params itself is returned (action maps are read-only);
// otherwise a deep copy.
func RedactParams(params map[string]any) map[string]any {
	if params == nil {
		return nil
	}
	if cleanMap(params, 0) {
		return params
	}
	return redactMap(params, 0)
}

// clean reports whether redactValue(v, depth) would return v unchanged:
// no secret key or value, nothing too deep, only types it keeps as they
// are. It reads without copying, so that the common case costs no
// allocation.
func clean(v any, depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch x := v.(type) {
	case nil, bool, float64, float32, int, int64, int32, uint, uint64, uint32, json.Number:
		return true
	case string:
		return !SecretValue(x)
	case map[string]any:
		return cleanMap(x, depth)
	case []any:
		for _, e := range x {
			if !clean(e, depth+1) {
				return false
			}
		}
		return true
	case json.RawMessage:
		return rawClean(x, depth)
	}
	// map[string]string, []string and the rest are converted or
	// Redacted: the copy does that.
	return false
}

// cleanMap is clean for redactMap(m, depth).
func cleanMap(m map[string]any, depth int) bool {
	for k, e := range m {
		if SecretKey(k) || !clean(e, depth+1) {
			return false
		}
	}
	return true
}

func redactMap(m map[string]any, depth int) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if SecretKey(k) {
			out[k] = Redacted
			continue
		}
		out[k] = redactValue(v, depth+1)
	}
	return out
}

func redactValue(v any, depth int) any {
	if depth > maxDepth {
		return Redacted
	}
	switch x := v.(type) {
	case nil, bool, float64, float32, int, int64, int32, uint, uint64, uint32, json.Number:
		return x
	case string:
		if SecretValue(x) {
			return Redacted
		}
		return x
	case map[string]any:
		return redactMap(x, depth)
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return redactMap(m, depth)
	case json.RawMessage:
		// Kept undecoded because no rule reads it; what is to be
		// redacted in it is found in the decoded value.
		return redactValue(decodeRaw(x), depth)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e, depth+1)
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e, depth+1)
		}
		return out
	default:
		return Redacted
	}
}

// A Redactor replaces known secret values in any text with Redacted: for
// error messages, logs and records. It also knows the forms a secret takes
// on the wire (URL-escaped, base64, the git Basic header). Safe for
// concurrent use; Redact does not lock.
type Redactor struct {
	mu    sync.Mutex
	added map[string]bool // secrets as given
	known map[string]bool // and every form of them
	rep   atomic.Pointer[strings.Replacer]
	// forms lists every known form, for finding one without replacing.
	forms atomic.Pointer[[]string]
	// find searches for every form in one pass.
	find atomic.Pointer[finder]
}

// NewRedactor returns a Redactor that knows secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{added: map[string]bool{}, known: map[string]bool{}}
	r.Add(secrets...)
	return r
}

// Add teaches r more secret values. The empty string and the placeholder
// tf gives agents are ignored.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, s := range secrets {
		if s == "" || s == PlaceholderValue || r.added[s] {
			continue
		}
		r.added[s] = true
		for _, f := range forms(s) {
			if !r.known[f] {
				r.known[f] = true
				changed = true
			}
		}
	}
	if !changed {
		return
	}
	// The marker maps to itself, so that a short secret that happens to
	// occur in "[redacted]" cannot mangle earlier redactions.
	pats := make([]string, 0, len(r.known)+1)
	if !r.known[Redacted] {
		pats = append(pats, Redacted)
	}
	for k := range r.known {
		pats = append(pats, k)
	}
	// Longest first: where one secret contains another, the whole of the
	// longer one goes.
	sort.Slice(pats, func(i, j int) bool {
		if len(pats[i]) != len(pats[j]) {
			return len(pats[i]) > len(pats[j])
		}
		return pats[i] < pats[j]
	})
	args := make([]string, 0, 2*len(pats))
	for _, p := range pats {
		args = append(args, p, Redacted)
	}
	r.rep.Store(strings.NewReplacer(args...))
	fs := make([]string, 0, len(r.known))
	for k := range r.known {
		fs = append(fs, k)
	}
	r.find.Store(newFinder(fs))
	r.forms.Store(&fs)
}

func forms(s string) []string {
	out := []string{s}
	add := func(f string) {
		if f != s {
			out = append(out, f)
		}
	}
	add(url.QueryEscape(s))
	add(url.PathEscape(s))
	add(base64.StdEncoding.EncodeToString([]byte(s)))
	add(base64.RawURLEncoding.EncodeToString([]byte(s)))
	add(strings.TrimPrefix(injection.GitBasicHeader(s), "Basic "))
	return out
}

// Redact returns s with every known secret replaced.
func (r *Redactor) Redact(s string) string {
	rep := r.rep.Load()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// Params is RedactParams followed by Redact on every string left, keys
// included.
func (r *Redactor) Params(params map[string]any) map[string]any {
	p := RedactParams(params)
	if p == nil || r.rep.Load() == nil {
		return p
	}
	return r.scrubMap(p)
}

func (r *Redactor) scrubMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[r.Redact(k)] = r.scrub(v)
	}
	return out
}

func (r *Redactor) scrub(v any) any {
	switch x := v.(type) {
	case string:
		return r.Redact(x)
	case map[string]any:
		return r.scrubMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.scrub(e)
		}
		return out
	case json.RawMessage:
		// Decoded only when a known secret is in one of its strings.
		if _, ok := eachJSONString(x, func(s string, _ bool) bool { return !r.mentions(s) }); !ok {
			return r.scrub(decodeRaw(x))
		}
		return x
	default:
		return x
	}
}

// Mentions reports whether s holds any form of a known secret: a cheap
// test before Redact, for text that rarely holds one (MCP tool results).
func (r *Redactor) Mentions(s string) bool { return r.mentions(s) }

// mentions reports whether s holds any form of a known secret.
func (r *Redactor) mentions(s string) bool {
	f := r.find.Load()
	return f != nil && f.containsString(s)
}
