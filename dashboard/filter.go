package dashboard

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/agents"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/killswitch"
	"github.com/tameflare/tf/rules"
)

// maxFilterLen bounds one filter value.
const maxFilterLen = 256

// trafficFilter is the Traffic page's filter as the form shows it.
type trafficFilter struct {
	Decision, Connector, Action, Gateway string
	// Range is a preset window ending now (1h, 24h, 7d); Since and Until
	// bound the window explicitly, in UTC, as a datetime-local input
	// writes them (2006-01-02T15:04).
	Range, Since, Until string
	// Before is the seq below which rows are shown: the older page.
	Before uint64
}

// ranges are the Range presets.
var ranges = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

// timeLayout is a datetime-local input's value.
const timeLayout = "2006-01-02T15:04"

// parseFilter reads the Traffic filters from a query. A value that could
// never match (an unknown decision, a control character) is an error, not
// a silently empty table.
func parseFilter(q url.Values, now time.Time) (trafficFilter, audit.Filter, error) {
	tf := trafficFilter{
		Decision:  strings.TrimSpace(q.Get("decision")),
		Connector: strings.TrimSpace(q.Get("connector")),
		Action:    strings.TrimSpace(q.Get("action")),
		Gateway:   strings.TrimSpace(q.Get("gateway")),
		Range:     strings.TrimSpace(q.Get("range")),
		Since:     strings.TrimSpace(q.Get("since")),
		Until:     strings.TrimSpace(q.Get("until")),
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
	if tf.Range != "" {
		d, ok := ranges[tf.Range]
		if !ok {
			return tf, audit.Filter{}, fmt.Errorf("range %q: want 1h, 24h or 7d", tf.Range)
		}
		f.Since = now.Add(-d)
	}
	for _, b := range []struct {
		name, v string
		t       *time.Time
	}{{"since", tf.Since, &f.Since}, {"until", tf.Until, &f.Until}} {
		if b.v == "" {
			continue
		}
		t, err := time.Parse(timeLayout, b.v)
		if err != nil {
			return tf, audit.Filter{}, fmt.Errorf("%s %q: want a time such as 2026-01-02T15:04 (UTC)", b.name, b.v)
		}
		if b.name == "since" && !f.Since.IsZero() && f.Since.After(t) {
			continue // a range that starts later wins
		}
		*b.t = t
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return tf, audit.Filter{}, fmt.Errorf("before %q: want a record's seq", v)
		}
		tf.Before, f.Before = n, n
	}
	if err := f.Validate(); err != nil {
		return tf, audit.Filter{}, fmt.Errorf("filter: %w", err)
	}
	return tf, f, nil
}

// Query is the filter as query parameters, for the live stream's URL and
// the paging links; the older page's seq is left out.
func (t trafficFilter) Query() string {
	q := url.Values{}
	for k, v := range map[string]string{"decision": t.Decision, "connector": t.Connector, "action": t.Action, "gateway": t.Gateway,
		"range": t.Range, "since": t.Since, "until": t.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// Older is the URL of the page of rows before seq. (Whole URLs, not
// queries: html/template escapes the = of a query it is handed after
// the ?.)
func (t trafficFilter) Older(seq uint64) string {
	q, _ := url.ParseQuery(t.Query())
	q.Set("before", strconv.FormatUint(seq, 10))
	return "/traffic?" + q.Encode()
}

// Newest is the URL of the first page with the same filter.
func (t trafficFilter) Newest() string {
	if q := t.Query(); q != "" {
		return "/traffic?" + q
	}
	return "/traffic"
}

// Live reports whether new rows can belong on the page: not on an older
// page, nor in a window that has ended.
func (t trafficFilter) Live() bool { return t.Before == 0 && t.Until == "" }

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
	case "agent":
		if err := agents.ValidName(name); err != nil {
			return s, err
		}
		s.Agent = name
	default:
		return s, fmt.Errorf("scope %q: want all, connector, gateway or agent", kind)
	}
	return s, s.Validate()
}
