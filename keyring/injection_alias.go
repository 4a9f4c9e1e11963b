package keyring

import "github.com/tameflare/tf/keyring/injection"

// The injection types live in keyring/injection, which imports only the
// standard library, so that the rules package can embed Credentials without
// linking the OS keyring backends. They are re-exported here.
type (
	// Injection says which secret goes into which header, and how.
	Injection = injection.Injection
	// Credentials maps connectors to their injections (policy: credentials).
	Credentials = injection.Credentials
)

// BearerHeader returns "Bearer " + token.
func BearerHeader(token string) string { return injection.BearerHeader(token) }

// GitBasicHeader returns Basic base64("x-access-token:" + token), the form
// GitHub accepts over git smart HTTP.
func GitBasicHeader(token string) string { return injection.GitBasicHeader(token) }
