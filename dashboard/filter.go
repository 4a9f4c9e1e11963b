package dashboard

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/killswitch"
	"github.com/tameflare/tf/rules"
)

// maxFilterLen bounds one filter value.
const maxFilterLen = 256

// trafficFilter is the Traffic page's filter as the form shows it.
type trafficFilter struct {
	Decision, Connector, Action, Gateway string
}

// parseFilter reads the Traffic filters from a query. A value that could
// never match (an unknown decision, a control character) is an error, not
// a silently empty table.
func parseFilter(q url.Values) (trafficFilter, audit.Filter, error) {
	tf := trafficFilter{
		Decision:  strings.TrimSpace(q.Get("decision")),
		Connector: strings.TrimSpace(q.Get("connector")),
		Action:    strings.TrimSpace(q.Get("action")),
		Gateway:   strings.TrimSpace(q.Get("gateway")),
	}
	for name, v := range map[string]string{"decision": tf.Decision, "connector": tf.Connector, "action": tf.Action, "gateway": tf.Gateway} {
		if len(v) > maxFilterLen {
			return tf, audit.Filter{}, fmt.Errorf("filter %s: longer than %d bytes", name, maxFilterLen)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return tf, audit.Filter{}, fmt.Errorf("filter %s: holds control characters", name)
		}
	}
	f := audit.Filter{Kind: audit.KindDecision, Decision: rules.Effect(tf.Decision), Connector: tf.Connector, Action: tf.Action, Gateway: tf.Gateway}
	if err := f.Validate(); err != nil {
		return tf, audit.Filter{}, fmt.Errorf("filter: %w", err)
	}
	return tf, f, nil
}

// Query is the filter as query parameters, for the live stream's URL.
func (t trafficFilter) Query() string {
	q := url.Values{}
	for k, v := range map[string]string{"decision": t.Decision, "connector": t.Connector, "action": t.Action, "gateway": t.Gateway} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// parseScope reads a kill switch scope from a form: kind is all,
// connector or gateway, and name names the connector or gateway.
func parseScope(kind, name string) (killswitch.Scope, error) {
	name = strings.TrimSpace(name)
	var s killswitch.Scope
	switch kind {
	case "all":
		if name != "" {
			return s, fmt.Errorf("the scope all takes no name (got %q)", name)
		}
		s.All = true
	case "connector":
		if name == "" || len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			return s, fmt.Errorf("connector %q: want 1 to 64 lower-case letters, digits, '-' or '_'", name)
		}
		s.Connector = name
	case "gateway":
		if err := admin.ValidName(name); err != nil {
			return s, err
		}
		s.Gateway = name
	default:
		return s, fmt.Errorf("scope %q: want all, connector or gateway", kind)
	}
	return s, s.Validate()
}
