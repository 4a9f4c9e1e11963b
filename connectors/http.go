package connectors

import (
	"strings"

	"github.com/tameflare/tf/rules"
)

// HTTP is the generic connector for hosts no other connector serves: an
// action http.<method> about the host; rules look at request.path and the
// rest of the request.
type HTTP struct{}

var _ Connector = (*HTTP)(nil)

// Name returns "http".
func (*HTTP) Name() string { return "http" }

// Handles reports true for every host.
func (*HTTP) Handles(string) bool { return true }

// Classify returns one http.<method> action.
func (*HTTP) Classify(r *Request) ([]rules.Action, error) {
	return []rules.Action{{
		Connector: "http",
		Type:      "http." + methodVerb(r.HTTP.Method),
		Resource:  map[string]string{"host": requestHost(r)},
	}}, nil
}

// methodVerb turns an HTTP method into the verb of an action name. Methods
// are tokens, so anything odd is kept out of the name.
func methodVerb(m string) string {
	if m == "" {
		return "get"
	}
	switch m {
	case "GET":
		return "get"
	case "POST":
		return "post"
	case "PUT":
		return "put"
	case "PATCH":
		return "patch"
	case "DELETE":
		return "delete"
	case "HEAD":
		return "head"
	case "OPTIONS":
		return "options"
	}
	var b strings.Builder
	for i := 0; i < len(m) && i < 32; i++ {
		c := m[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
