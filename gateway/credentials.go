package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/httpproxy"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/keyring/injection"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/termtext"
)

// openSecrets resolves every secret the policy's credentials name, so that
// a missing one stops the gateway at start with its name rather than
// failing requests later. The keyring is opened only when the environment
// (TF_SECRET_<NAME>) does not provide them all.
func openSecrets(p *rules.Policy, r *keyring.Resolver) (*keyring.Resolver, error) {
	if p.Credentials == nil || len(p.Credentials.Secrets()) == 0 {
		return r, nil
	}
	names := p.Credentials.Secrets()
	if r == nil {
		r = keyring.NewResolver(nil, keyring.ResolverOptions{})
		if r.Resolve(names...) != nil {
			store, err := keyring.Open(keyring.Options{})
			if err != nil {
				return nil, fmt.Errorf("the policy names secrets (%s) and the keyring cannot be opened: %w", strings.Join(names, ", "), err)
			}
			r = keyring.NewResolver(store, keyring.ResolverOptions{})
		}
	}
	if err := r.Resolve(names...); err != nil {
		return nil, fmt.Errorf("resolving the policy's credentials: %w", err)
	}
	return r, nil
}

// injectionFor returns how to authenticate a request that conn classified,
// or nil when the policy gives that connector no credential. A credential
// belongs to its connector: it is only ever sent to the hosts that
// connector serves, so a request elsewhere, or a redirect to another host
// (a new request, classified afresh), never carries it.
func injectionFor(c *injection.Credentials, a *rules.Action, req *connectors.Request) (in *injection.Injection, gitBasic bool) {
	if c == nil {
		return nil, false
	}
	switch a.Connector {
	case "github":
		// git over HTTPS authenticates with Basic x-access-token; the API
		// with a bearer token.
		return c.GitHub, c.GitHub != nil && isGitRequest(req)
	case "npm":
		return c.NPM, false
	case "mcp":
		return c.MCP[a.Resource["server"]], false
	case "http", "net", "":
		return nil, false
	}
	return c.Connectors[a.Connector], false
}

func isGitRequest(req *connectors.Request) bool {
	p := req.HTTP.URL.Path
	return strings.HasSuffix(p, "/info/refs") || strings.HasSuffix(p, "/git-upload-pack") || strings.HasSuffix(p, "/git-receive-pack")
}

// holdAgentKeys takes the model API keys tf took from its environment:
// each must resolve now (from TF_SECRET_<NAME>), so a key that went
// missing stops the gateway at start rather than failing model calls.
func (g *Gateway) holdAgentKeys(keys []keyring.AgentKey) error {
	if len(keys) == 0 {
		return nil
	}
	if g.secrets == nil {
		g.secrets = keyring.NewResolver(nil, keyring.ResolverOptions{})
	}
	g.agentKeys = keys
	g.agentCreds = map[string]*injection.Injection{}
	for _, k := range keys {
		if _, err := g.secrets.Get(k.Secret); err != nil {
			return fmt.Errorf("the model API key of %s: %w", k.Env, err)
		}
		if g.agentCreds[k.Connector] == nil {
			g.agentCreds[k.Connector] = k.Injection()
		}
	}
	return nil
}

// credential is injectionFor with the agent keys as the fallback: the
// policy's credential for a connector wins over the key tf took from its
// environment.
func (g *Gateway) credential(a *rules.Action, req *connectors.Request) (in *injection.Injection, gitBasic bool) {
	if in, gitBasic = injectionFor(g.policy.Load().Credentials, a, req); in != nil {
		return in, gitBasic
	}
	return g.agentCreds[a.Connector], false
}

// prepare returns the edit of the outbound request for an allowed request:
// the connector's credential, replacing whatever credential the agent sent.
// The secret is read at this moment, so `tf creds set` while the gateway
// runs takes effect on the next request.
func (g *Gateway) prepare(req *connectors.Request, actions []rules.Action) func(*http.Request) {
	if len(actions) == 0 {
		return nil
	}
	in, gitBasic := g.credential(&actions[0], req)
	if in == nil || g.secrets == nil {
		return stripPlaceholder
	}
	if req.Scheme != "https" {
		// Credentials travel only over TLS: on plain HTTP anyone on the
		// path would read them.
		return func(out *http.Request) {
			injection.StripCredentials(out.Header)
			g.plainOnce.Do(func() {
				g.warn("credential %s not sent to %s: plain HTTP; credentials go only over TLS", in.Secret, req.Host())
			})
		}
	}
	return func(out *http.Request) {
		// The response is checked for the secret on its way back (see
		// guardResponse), which an encoded body would hide.
		out.Header.Set("Accept-Encoding", "identity")
		secret, err := g.secrets.Get(in.Secret)
		if err != nil {
			// Forward without a credential rather than with the agent's:
			// the upstream refuses, and the gateway says why on stderr.
			injection.StripCredentials(out.Header)
			g.warn("credential %s unavailable: %v", in.Secret, errors.Unwrap(err))
			return
		}
		if gitBasic {
			err = in.ApplyGitBasic(out.Header, secret)
		} else {
			err = in.Apply(out.Header, secret)
		}
		if err != nil {
			injection.StripCredentials(out.Header)
			g.warn("credential %s not applied: %v", in.Secret, err)
		}
	}
}

// warn reports a problem of the gateway's own on stderr, never a secret,
// and nothing that acts on the terminal (a host name is the agent's).
func (g *Gateway) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if g.secrets != nil {
		msg = g.secrets.Redactor().Redact(msg)
	}
	fmt.Fprintf(os.Stderr, "tf: %s\n", termtext.Safe(msg))
}

// ScrubEnv returns env without the variables that hold secrets: the usual
// token variables, and any whose value holds a secret this gateway
// injects, except the names in keep (never one holding a managed secret).
// Each model API key the gateway holds (Config.AgentKeys) is replaced by
// the placeholder, so the agent believes it is logged in and sends what
// the proxy replaces. removed names what went, never a value.
func (g *Gateway) ScrubEnv(env, keep []string) (out, removed []string) {
	var names []string
	if c := g.policy.Load().Credentials; c != nil {
		names = c.Secrets()
	}
	for _, k := range g.agentKeys {
		names = append(names, k.Secret)
	}
	var managed []string
	if g.secrets != nil {
		for _, name := range names {
			if v, err := g.secrets.Get(name); err == nil {
				managed = append(managed, v)
			}
		}
	}
	out, removed = keyring.ScrubEnv(env, managed, keep)
	for _, m := range managed {
		if m != "" && strings.Contains(keyring.PlaceholderValue, m) {
			return out, removed // a trivially short secret: no placeholder may hold it
		}
	}
	for _, k := range g.agentKeys {
		if !hasVar(out, k.Env) {
			out = append(out, k.Env+"="+keyring.PlaceholderValue)
		}
	}
	return out, removed
}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if n, _, _ := strings.Cut(kv, "="); n == name {
			return true
		}
	}
	return false
}

// stripPlaceholder removes a credential header that carries only the
// placeholder tf puts in the agent's environment (GH_TOKEN=tf-managed):
// without a configured credential the request goes out unauthenticated,
// which public reads allow, rather than with a token that is always
// refused.
func stripPlaceholder(out *http.Request) {
	// Proxy-Authorization never gets here: the proxy drops it first.
	if strings.Contains(out.Header.Get("Authorization"), keyring.PlaceholderValue) {
		out.Header.Del("Authorization")
	}
}

// maxReadResponse is the largest response body read whole to redact a
// secret in it; longer or open-ended ones are streamed through a guard.
const maxReadResponse = 1 << 20

// EventSecretInResponse records an upstream response that carried an
// injected secret back: redacted in headers and bodies read whole, the
// stream cut in bodies streamed.
const EventSecretInResponse = "keyring.secret_in_response"

// guardResponse makes the response to a request tf put a credential into
// safe to hand to the agent: every known secret in its headers and in a
// body of known, bounded length is replaced with [redacted]; a streamed
// body is cut where a secret would pass. Either is recorded.
func (g *Gateway) guardResponse(v *httpproxy.Verdict, id string, req *connectors.Request, actions []rules.Action) {
	if g.secrets == nil || len(actions) == 0 || req.Scheme != "https" {
		return
	}
	if in, _ := g.credential(&actions[0], req); in == nil {
		return
	}
	red := g.secrets.Redactor()
	record := func(where string) {
		_ = g.log.AppendAsync(&audit.Record{Kind: audit.KindEvent, Gateway: g.name, Event: EventSecretInResponse, RequestID: id,
			Details: map[string]any{"host": req.Host(), "path": req.HTTP.URL.Path, "where": where}})
	}
	inner := v.ModifyResponse
	v.ModifyResponse = func(res *http.Response) error {
		if inner != nil {
			if err := inner(res); err != nil {
				return err
			}
		}
		if red.RedactHeader(res.Header) > 0 {
			record("header")
		}
		if res.Body == nil || res.Body == http.NoBody {
			return nil
		}
		if enc := res.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
			return fmt.Errorf("the response is %s-encoded, so tf cannot check it for the credential it sent", enc)
		}
		if res.ContentLength >= 0 && res.ContentLength <= maxReadResponse {
			b, err := io.ReadAll(io.LimitReader(res.Body, maxReadResponse+1))
			res.Body.Close()
			if err != nil {
				return err
			}
			if nb, changed := red.RedactBytes(b); changed {
				b = nb
				record("body")
			}
			res.Body = io.NopCloser(bytes.NewReader(b))
			res.ContentLength = int64(len(b))
			res.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		}
		res.Body = red.Guard(res.Body, func() { record("stream") })
		return nil
	}
}
