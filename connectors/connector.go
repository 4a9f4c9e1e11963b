// Package connectors turns one HTTP request into the actions it carries.
package connectors

import (
	"net/http"

	"github.com/tameflare/tf/rules"
)

// Request is what a connector sees of one HTTP request: the request itself
// (its body is not to be read) and the first bytes of the body, up to the
// proxy's peek limit.
type Request struct {
	HTTP *http.Request
	// Scheme is "https" for intercepted TLS, "http" for plain proxying.
	Scheme string
	// Body holds the start of the request body; Truncated reports whether
	// more follows.
	Body      []byte
	Truncated bool

	// host and path (escaped) are set by Registry.Classify for the length
	// of the call, so that its connector does not work them out again.
	host, path string
}

// A Connector classifies requests for the hosts it serves.
type Connector interface {
	// Name is the connector name recorded in actions: github, npm, mcp.
	Name() string
	// Handles reports whether the connector classifies requests to host
	// (a host name without port, lower case).
	Handles(host string) bool
	// Classify returns the actions one request carries, at least one. An
	// error refuses the request (fail closed) with the error as the reason.
	Classify(r *Request) ([]rules.Action, error)
}

// Host is the request's host, lower case, without port.
func (r *Request) Host() string { return requestHost(r) }

// escapedPath is the request's escaped URL path.
func (r *Request) escapedPath() string {
	if r.path != "" {
		return r.path
	}
	return escapedPath(r.HTTP.URL)
}
