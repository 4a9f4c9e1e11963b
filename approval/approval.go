// Package approval holds require_approval requests until a person answers,
// the timeout passes or the holder gives up, and tells people about them.
package approval

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tameflare/tf/rules"
)

// DefaultTimeout is how long a request waits for a person when its rule
// sets no timeout.
const DefaultTimeout = 5 * time.Minute

// Outcome is how a held request ended.
type Outcome string

const (
	Approved  Outcome = "approved"
	Denied    Outcome = "denied"
	Expired   Outcome = "expired"
	Cancelled Outcome = "cancelled"
	// Abandoned: the agent's client went away before anyone answered.
	Abandoned Outcome = "abandoned"
)

// ErrNotFound is returned when answering an approval that is not pending
// (unknown, already answered, expired).
var ErrNotFound = errors.New("no such pending approval")

// A Request is one pending approval: what a person is asked to decide.
type Request struct {
	ID        string            `json:"id"`
	RequestID string            `json:"request_id"`
	Gateway   string            `json:"gateway"`
	Action    string            `json:"action"`
	Connector string            `json:"connector,omitempty"`
	Resource  map[string]string `json:"resource,omitempty"`
	// Params are redacted: what a person may see.
	Params   map[string]any `json:"params,omitempty"`
	Method   string         `json:"method,omitempty"`
	Host     string         `json:"host,omitempty"`
	Path     string         `json:"path,omitempty"`
	Rule     string         `json:"rule"`
	Reason   string         `json:"reason,omitempty"`
	Revision string         `json:"revision,omitempty"`
	// Digest binds the approval to the exact actions held (see Digest).
	Digest  string    `json:"digest"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Agent is the agent of a shared gateway (tf serve) whose request is
	// held; empty under tf run.
	Agent string `json:"agent,omitempty"`
}

// Key is what an "approve for this session" grant is bound to: gateway,
// agent, action type, params digest and policy revision. The agent is in
// it so that a grant for one agent of a shared gateway lets no other
// agent through.
func (r Request) Key() string {
	return r.Gateway + "\x00" + r.Agent + "\x00" + r.Action + "\x00" + r.Digest + "\x00" + r.Revision
}

// An Answer is a person's decision on one pending approval.
type Answer struct {
	Approve bool `json:"approve"`
	// Session also approves, until the gateway stops, every later request
	// with the same Key.
	Session  bool   `json:"session,omitempty"`
	Approver string `json:"approver"`
	Reason   string `json:"reason,omitempty"`
}

// A Result is how a hold ended.
type Result struct {
	Outcome  Outcome
	Approver string
	Reason   string
	Session  bool
	// KillSwitch is set when a kill switch denied the request.
	KillSwitch bool
	At         time.Time
}

// A Grant is an "approve for this session" answer.
type Grant struct {
	ID       string // the approval that was answered
	Approver string
	Reason   string
	At       time.Time
}

// Digest is the SHA-256 of the canonical JSON of the actions' types,
// resources and params (object keys sorted, as encoding/json writes maps),
// in order.
func Digest(actions ...*rules.Action) (string, error) {
	type bound struct {
		Type     string            `json:"type"`
		Resource map[string]string `json:"resource"`
		Params   map[string]any    `json:"params"`
	}
	bs := make([]bound, len(actions))
	for i, a := range actions {
		bs[i] = bound{a.Type, a.Resource, a.Params}
	}
	b, err := json.Marshal(bs)
	if err != nil {
		return "", fmt.Errorf("digesting action params: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// NewID returns a short random approval identifier that is easy to type.
func NewID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ap_" + hex.EncodeToString(b[:])
}

// Options configure a Manager.
type Options struct {
	// Now is the clock for timestamps; nil means time.Now.
	Now func() time.Time
	// Notify, if set, is called with each new pending request; it must
	// not block (a Notifier queues).
	Notify func(Request)
	// Refuse, if set, is asked under the manager's lock before a request
	// is held: a kill switch already on denies it at once.
	Refuse func(Request) (reason string, refused bool)
}

// A Manager holds the pending approvals of one gateway.
type Manager struct {
	opts    Options
	mu      sync.Mutex
	pending map[string]*pending
	grants  map[string]Grant
	closed  string // the reason, once closed
}

type pending struct {
	req Request
	res chan Result // buffered 1: written once, by whoever resolves
}

// NewManager returns an empty manager.
func NewManager(opts Options) *Manager {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Manager{opts: opts, pending: map[string]*pending{}, grants: map[string]Grant{}}
}

// Granted returns the session grant that covers key, if any.
func (m *Manager) Granted(key string) (Grant, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.grants[key]
	return g, ok
}

// Hold waits until r is answered, timeout passes (zero means
// DefaultTimeout), ctx ends (Abandoned), or the manager cancels it. r.ID,
// Created and Expires are filled in when empty.
func (m *Manager) Hold(ctx context.Context, r Request, timeout time.Duration) Result {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	now := m.opts.Now()
	if r.ID == "" {
		r.ID = NewID()
	}
	if r.Created.IsZero() {
		r.Created = now
	}
	if r.Expires.IsZero() {
		r.Expires = now.Add(timeout)
	}
	p := &pending{req: r, res: make(chan Result, 1)}

	m.mu.Lock()
	switch {
	case m.closed != "":
		m.mu.Unlock()
		return Result{Outcome: Cancelled, Reason: m.closed, At: now}
	case m.pending[r.ID] != nil:
		m.mu.Unlock()
		return Result{Outcome: Denied, Reason: "duplicate approval id " + r.ID, At: now}
	}
	if g, ok := m.grants[r.Key()]; ok {
		m.mu.Unlock()
		return Result{Outcome: Approved, Approver: g.Approver, Reason: g.Reason, Session: true, At: now}
	}
	if m.opts.Refuse != nil {
		if reason, refused := m.opts.Refuse(r); refused {
			m.mu.Unlock()
			return Result{Outcome: Denied, Approver: "kill switch", Reason: reason, KillSwitch: true, At: now}
		}
	}
	m.pending[r.ID] = p
	m.mu.Unlock()
	if m.opts.Notify != nil {
		m.opts.Notify(r)
	}

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case res := <-p.res:
		return res
	case <-t.C:
		m.resolve(r.ID, Result{Outcome: Expired, Reason: fmt.Sprintf("no one answered within %s", timeout)})
	case <-ctx.Done():
		m.resolve(r.ID, Result{Outcome: Abandoned, Reason: "the client went away before anyone answered"})
	}
	return <-p.res // whoever resolved first decided
}

// resolve ends the pending request id with res, unless something else
// ended it first.
func (m *Manager) resolve(id string, res Result) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resolveLocked(id, res)
}

func (m *Manager) resolveLocked(id string, res Result) bool {
	p := m.pending[id]
	if p == nil {
		return false
	}
	delete(m.pending, id)
	if res.At.IsZero() {
		res.At = m.opts.Now()
	}
	p.res <- res
	return true
}

// Answer applies a person's answer to the pending approval id and returns
// it. A session approval also grants, until the manager closes, every
// request with the same Key, and releases those already pending.
func (m *Manager) Answer(id string, a Answer) (Request, error) {
	if a.Approver == "" {
		return Request{}, errors.New("an answer needs an approver")
	}
	if a.Session && !a.Approve {
		return Request{}, errors.New("only an approval can be for the session")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pending[id]
	if p == nil {
		return Request{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	res := Result{Outcome: Denied, Approver: a.Approver, Reason: a.Reason, At: m.opts.Now()}
	if a.Approve {
		res.Outcome, res.Session = Approved, a.Session
	}
	m.resolveLocked(id, res)
	if a.Session {
		key := p.req.Key()
		m.grants[key] = Grant{ID: id, Approver: a.Approver, Reason: a.Reason, At: res.At}
		for oid, o := range m.pending {
			if o.req.Key() == key {
				m.resolveLocked(oid, res)
			}
		}
	}
	return p.req, nil
}

// Pending lists the pending approvals, oldest first.
func (m *Manager) Pending() []Request {
	m.mu.Lock()
	out := make([]Request, 0, len(m.pending))
	for _, p := range m.pending {
		out = append(out, p.req)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns the pending approval id.
func (m *Manager) Get(id string) (Request, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pending[id]
	if p == nil {
		return Request{}, false
	}
	return p.req, true
}

// Deny ends every pending approval that match selects with res (the kill
// switch denies held approvals this way) and returns how many.
func (m *Manager) Deny(match func(Request) bool, res Result) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, p := range m.pending {
		if match(p.req) && m.resolveLocked(id, res) {
			n++
		}
	}
	return n
}

// Close cancels every pending approval with reason, refuses later holds
// the same way, and forgets the session grants. It returns how many were
// cancelled.
func (m *Manager) Close(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed != "" {
		return 0
	}
	m.closed = reason
	n := 0
	for id := range m.pending {
		if m.resolveLocked(id, Result{Outcome: Cancelled, Reason: reason}) {
			n++
		}
	}
	m.grants = map[string]Grant{}
	return n
}
