package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/keyring/injection"
	"github.com/tameflare/tf/rules"
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

// prepare returns the edit of the outbound request for an allowed request:
// the connector's credential, replacing whatever credential the agent sent.
// The secret is read at this moment, so `tf creds set` while the gateway
// runs takes effect on the next request.
func (g *Gateway) prepare(req *connectors.Request, actions []rules.Action) func(*http.Request) {
	if len(actions) == 0 {
		return nil
	}
	in, gitBasic := injectionFor(g.policy.Load().Credentials, &actions[0], req)
	if in == nil || g.secrets == nil {
		return stripPlaceholder
	}
	return func(out *http.Request) {
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

// warn reports a problem of the gateway's own on stderr, never a secret.
func (g *Gateway) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if g.secrets != nil {
		msg = g.secrets.Redactor().Redact(msg)
	}
	fmt.Fprintf(os.Stderr, "tf: %s\n", msg)
}

// ScrubEnv returns env without the variables that hold secrets: the usual
// token variables, and any whose value holds a secret this gateway
// injects, except the names in keep (never one holding a managed secret).
// removed names what went, never a value.
func (g *Gateway) ScrubEnv(env, keep []string) (out, removed []string) {
	var managed []string
	if c := g.policy.Load().Credentials; c != nil && g.secrets != nil {
		for _, name := range c.Secrets() {
			if v, err := g.secrets.Get(name); err == nil {
				managed = append(managed, v)
			}
		}
	}
	return keyring.ScrubEnv(env, managed, keep)
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
