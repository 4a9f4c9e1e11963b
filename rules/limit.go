package rules

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit is a rule's limit as written: at most Count matching actions, or
// at most Tokens tokens of model calls, Per a sliding window (a duration)
// or the session.
type Limit struct {
	Count  *int64 `yaml:"count,omitempty" json:"count,omitempty" jsonschema:"minimum=1,maximum=1000000" jsonschema_description:"At most this many actions the rule lets through per window. Give count or tokens, not both."`
	Tokens *int64 `yaml:"tokens,omitempty" json:"tokens,omitempty" jsonschema:"minimum=1" jsonschema_description:"A token budget for model calls (anthropic.*, openai.*, google.*): a call is refused once the calls the rule let through used this many tokens in the window. Give count or tokens, not both."`
	Per    string `yaml:"per" json:"per" jsonschema:"required,pattern=^(session|([0-9]+(\\.[0-9]+)?(s|m|h|d))+)$" jsonschema_description:"The window: a duration (30m, 1h, 24h, 7d; a sliding window, at most 31d) or session (one run of the gateway)."`
}

// Limits on limits: counters hold one timestamp per counted action, and a
// gateway rebuilds them from the audit log of the longest window at start.
const (
	MaxLimitCount  = 1_000_000
	MaxLimitWindow = 31 * 24 * time.Hour
	minLimitWindow = time.Second
)

// A Quota is a rule's limit, compiled.
type Quota struct {
	// Count or Tokens is set, not both.
	Count, Tokens int64
	// Window is the sliding window; zero means the session.
	Window time.Duration
	// Per is the window as written ("1h", "session"), for messages.
	Per string
}

// Session reports whether the quota counts per session.
func (q *Quota) Session() bool { return q.Window == 0 }

// String is the limit as a person reads it: "5 per 1h", "2000000 tokens
// per session".
func (q *Quota) String() string {
	if q.Tokens > 0 {
		return fmt.Sprintf("%d tokens per %s", q.Tokens, q.Per)
	}
	return fmt.Sprintf("%d per %s", q.Count, q.Per)
}

// parsePer reads a window: session, or a Go duration with d (days) as a
// unit too.
func parsePer(s string) (time.Duration, error) {
	if s == "session" {
		return 0, nil
	}
	want := fmt.Errorf("per %q: want a duration such as 30m, 1h, 24h or 7d, or session", s)
	if s == "" || len(s) > 32 {
		return 0, want
	}
	var total time.Duration
	// Days are not a unit of time.ParseDuration; split them off first.
	rest := s
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseUint(rest[:i], 10, 16)
		if err != nil {
			return 0, want
		}
		total = time.Duration(n) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
			return 0, want
		}
		total += d
	}
	switch {
	case total < minLimitWindow:
		return 0, fmt.Errorf("per %q: want at least 1s", s)
	case total > MaxLimitWindow:
		return 0, fmt.Errorf("per %q: want at most 31d (counters are rebuilt from the audit log of the window)", s)
	}
	return total, nil
}

// modelConnectors are the connectors whose calls report token usage (see
// package usage); a token limit applies to their actions only.
var modelConnectors = []string{"anthropic", "openai", "google"}

// compileLimit checks l and returns its quota, or a message saying what is
// wrong and the key of the limit it is about ("" for the limit itself).
func compileLimit(l *Limit, r *Rule) (q *Quota, key, msg string) {
	q = &Quota{Per: l.Per}
	switch {
	case l.Count != nil && l.Tokens != nil:
		return nil, "tokens", "a limit has count or tokens, not both"
	case l.Count == nil && l.Tokens == nil:
		return nil, "", "a limit needs count (actions) or tokens (a model-call budget)"
	case l.Count != nil && *l.Count <= 0:
		return nil, "count", fmt.Sprintf("limit count %d: want at least 1", *l.Count)
	case l.Count != nil && *l.Count > MaxLimitCount:
		return nil, "count", fmt.Sprintf("limit count %d: want at most %d", *l.Count, MaxLimitCount)
	case l.Tokens != nil && *l.Tokens <= 0:
		return nil, "tokens", fmt.Sprintf("limit tokens %d: want at least 1", *l.Tokens)
	case l.Per == "":
		return nil, "", "a limit needs per: a duration such as 1h, or session"
	case r.Decision == Deny:
		return nil, "", "a deny rule refuses every action it matches; a limit applies to allow and require_approval rules"
	}
	if l.Count != nil {
		q.Count = *l.Count
	} else {
		q.Tokens = *l.Tokens
		for _, a := range r.Actions {
			conn, _, _ := strings.Cut(a, ".")
			ok := false
			for _, m := range modelConnectors {
				ok = ok || conn == m
			}
			if !ok {
				return nil, "tokens", fmt.Sprintf("a token limit applies to model calls (anthropic.*, openai.*, google.*), and %q is not one", a)
			}
		}
	}
	w, err := parsePer(l.Per)
	if err != nil {
		return nil, "per", "limit " + err.Error()
	}
	q.Window = w
	return q, "", ""
}

// A CounterKey names one counter: a rule's limit in one gateway, and for a
// per-session limit in one run of it. Keys are made by counterKey only, so
// that what a counter is per (an agent of tf serve, say) changes in one
// place.
type CounterKey struct {
	Rule    string
	Gateway string
	// Session is empty for a limit over a duration: such counters span
	// runs of the gateway.
	Session string
	// Agent is the agent of a shared gateway (tf serve): each agent has
	// its own counters, as each tf run does; empty under tf run.
	Agent string
}

func counterKey(r *CompiledRule, a *Action, session string) CounterKey {
	k := CounterKey{Rule: r.Name, Gateway: a.Gateway, Agent: a.Agent}
	if r.Quota.Session() {
		k.Session = session
	}
	return k
}

// Counters keep the use of limits. Implementations are safe for
// concurrent use; Take is atomic, so that of N concurrent actions under a
// limit of 5 exactly 5 are let through.
type Counters interface {
	// Take counts one action under q at t if the window holds room for
	// it. A token quota only checks: its tokens come later, by AddTokens.
	// When there is no room, reset is when there will be (zero for a
	// session quota).
	Take(k CounterKey, q *Quota, t time.Time) (ok bool, reset time.Time)
	// Release undoes the latest Take of k: the action it counted was not
	// let through after all.
	Release(k CounterKey, q *Quota)
	// AddTokens adds a model call's tokens, used at t, to a token quota.
	AddTokens(k CounterKey, q *Quota, t time.Time, n int64)
	// Record counts an action at t without a check, as rebuilding from a
	// log does: the newest q.Count are kept, so a limit lowered since
	// still sees the latest use.
	Record(k CounterKey, q *Quota, t time.Time)
}

// MemCounters are counters in memory: a bounded ring of timestamps per
// count limit, a list of (time, tokens) per token limit. A zero
// MemCounters is ready to use.
type MemCounters struct {
	mu sync.RWMutex
	m  map[CounterKey]*counter
}

var _ Counters = (*MemCounters)(nil)

// NewMemCounters returns empty counters.
func NewMemCounters() *MemCounters { return &MemCounters{} }

type counter struct {
	mu sync.Mutex
	// ring holds the times (Unix nanoseconds) of counted actions, oldest
	// at head; it grows up to the quota's count. A session quota keeps
	// only n.
	ring    []int64
	head, n int
	// tok holds token use, oldest first from tokHead; sum is its total.
	tok     []tokUse
	tokHead int
	sum     int64
}

type tokUse struct{ t, n int64 }

func (c *MemCounters) get(k CounterKey) *counter {
	c.mu.RLock()
	ct := c.m[k]
	c.mu.RUnlock()
	if ct != nil {
		return ct
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[CounterKey]*counter{}
	}
	if ct = c.m[k]; ct == nil {
		ct = &counter{}
		c.m[k] = ct
	}
	return ct
}

// Take implements Counters.
func (c *MemCounters) Take(k CounterKey, q *Quota, t time.Time) (bool, time.Time) {
	ct := c.get(k)
	ct.mu.Lock()
	defer ct.mu.Unlock()
	now := t.UnixNano()
	if q.Tokens > 0 {
		ct.pruneTokens(q, now)
		if ct.sum < q.Tokens {
			return true, time.Time{}
		}
		if q.Session() {
			return false, time.Time{}
		}
		// Room comes back when enough of the oldest use leaves the window.
		left := ct.sum
		for _, u := range ct.tok[ct.tokHead:] {
			left -= u.n
			if left < q.Tokens {
				return false, time.Unix(0, u.t).Add(q.Window)
			}
		}
		return false, time.Time{}
	}
	if q.Session() {
		// No window to slide: a count is enough.
		if ct.n >= int(q.Count) {
			return false, time.Time{}
		}
		ct.n++
		return true, time.Time{}
	}
	ct.prune(q, now)
	if int64(ct.n) >= q.Count {
		// The oldest of the last Count actions must leave the window.
		i := ct.n - int(q.Count)
		return false, time.Unix(0, ct.ring[(ct.head+i)%len(ct.ring)]).Add(q.Window)
	}
	ct.push(now, q.Count)
	return true, time.Time{}
}

// prune drops the times that left q's window.
func (ct *counter) prune(q *Quota, now int64) {
	if q.Session() {
		return
	}
	cut := now - int64(q.Window)
	for ct.n > 0 && ct.ring[ct.head] <= cut {
		ct.head = (ct.head + 1) % len(ct.ring)
		ct.n--
	}
}

func (ct *counter) push(now, limit int64) {
	if ct.n == len(ct.ring) {
		// Grow, up to the limit: memory follows use, not the quota.
		size := min(max(2*len(ct.ring), 8), int(max(limit, int64(len(ct.ring)+1))))
		ring := make([]int64, size)
		for i := range ct.n {
			ring[i] = ct.ring[(ct.head+i)%len(ct.ring)]
		}
		ct.ring, ct.head = ring, 0
	}
	ct.ring[(ct.head+ct.n)%len(ct.ring)] = now
	ct.n++
}

func (ct *counter) pruneTokens(q *Quota, now int64) {
	if q.Session() {
		return
	}
	cut := now - int64(q.Window)
	for ct.tokHead < len(ct.tok) && ct.tok[ct.tokHead].t <= cut {
		ct.sum -= ct.tok[ct.tokHead].n
		ct.tokHead++
	}
	if ct.tokHead > 64 && ct.tokHead*2 > len(ct.tok) {
		ct.tok = append(ct.tok[:0], ct.tok[ct.tokHead:]...)
		ct.tokHead = 0
	}
}

// Record implements Counters.
func (c *MemCounters) Record(k CounterKey, q *Quota, t time.Time) {
	if q.Tokens > 0 {
		return
	}
	ct := c.get(k)
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if q.Session() {
		ct.n = min(ct.n+1, int(q.Count))
		return
	}
	now := t.UnixNano()
	ct.prune(q, now)
	if int64(ct.n) >= q.Count {
		ct.head = (ct.head + 1) % len(ct.ring) // the oldest makes room
		ct.n--
	}
	ct.push(now, q.Count)
}

// Release implements Counters.
func (c *MemCounters) Release(k CounterKey, q *Quota) {
	if q.Tokens > 0 {
		return // a token quota counted nothing at Take
	}
	ct := c.get(k)
	ct.mu.Lock()
	if ct.n > 0 {
		ct.n--
	}
	ct.mu.Unlock()
}

// AddTokens implements Counters.
func (c *MemCounters) AddTokens(k CounterKey, q *Quota, t time.Time, n int64) {
	if n <= 0 || q.Tokens == 0 {
		return
	}
	ct := c.get(k)
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if q.Session() {
		ct.sum += n
		return
	}
	ct.pruneTokens(q, t.UnixNano())
	ct.tok = append(ct.tok, tokUse{t.UnixNano(), n})
	ct.sum += n
}

// limitReason is the reason of an action refused by q of rule r.
func limitReason(r *CompiledRule, reset time.Time) string {
	s := "limit reached: " + r.Quota.String() + " (rule " + r.Name + ")"
	if r.Quota.Session() {
		return s + "; it resets when the session ends"
	}
	if reset.IsZero() {
		return s
	}
	return s + "; the next is allowed at " + reset.UTC().Format(time.RFC3339)
}

// Release gives back what dec counted under the limits of d's policy: the
// gateway calls it when another action of the same request was refused, so
// nothing was let through. It clears dec.Counted.
func (d *Decider) Release(a *Action, dec *Decision) {
	if d.Counters == nil {
		dec.Counted = nil
		return
	}
	for _, name := range dec.Counted {
		if r := d.Policy.limited(name); r != nil {
			d.Counters.Release(counterKey(r, a, d.Session), r.Quota)
		}
	}
	dec.Counted = nil
}

// AddTokens adds the tokens a model call used, at t, to the token limits
// that counted it (dec.Counted).
func (d *Decider) AddTokens(a *Action, dec *Decision, t time.Time, n int64) {
	if d.Counters == nil || n <= 0 {
		return
	}
	for _, name := range dec.Counted {
		if r := d.Policy.limited(name); r != nil && r.Quota.Tokens > 0 {
			d.Counters.AddTokens(counterKey(r, a, d.Session), r.Quota, t, n)
		}
	}
}

// limited returns the rule named name if it has a limit.
func (p *Policy) limited(name string) *CompiledRule {
	for _, r := range p.limits {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Limited returns the rules that have a limit, in policy order.
func (p *Policy) Limited() []*CompiledRule { return p.limits }

// LongestWindow is the longest window of the policy's limits over a
// duration: how far back a gateway reads the audit log to rebuild its
// counters. Zero when no limit spans runs.
func (p *Policy) LongestWindow() time.Duration {
	var w time.Duration
	for _, r := range p.limits {
		w = max(w, r.Quota.Window)
	}
	return w
}

// Restore counts a recorded action again in the counters of d's policy: a
// gateway rebuilding its counters from the audit log calls it for each
// recorded decision in the window, in log order. Session limits are left
// alone (a new run is a new session).
func (d *Decider) Restore(a *Action, dec *Decision, t time.Time) {
	if d.Counters == nil {
		return
	}
	for _, name := range dec.Counted {
		if r := d.Policy.limited(name); r != nil && r.Quota.Count > 0 && !r.Quota.Session() {
			d.Counters.Record(counterKey(r, a, d.Session), r.Quota, t)
		}
	}
}

// RestoreTokens adds recorded tokens like AddTokens, for duration limits
// only.
func (d *Decider) RestoreTokens(a *Action, dec *Decision, t time.Time, n int64) {
	if d.Counters == nil || n <= 0 {
		return
	}
	for _, name := range dec.Counted {
		if r := d.Policy.limited(name); r != nil && r.Quota.Tokens > 0 && !r.Quota.Session() {
			d.Counters.AddTokens(counterKey(r, a, d.Session), r.Quota, t, n)
		}
	}
}
