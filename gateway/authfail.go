package gateway

import (
	"sync"
	"time"

	"github.com/tameflare/tf/audit"
)

// EventAuthFailed records failed proxy authentication: a client (the agent,
// or something else on the machine) that does not hold the session token.
const EventAuthFailed = "proxy.auth_failed"

// authFailEvery spaces the records of failed proxy authentication: a
// guessing client makes thousands of attempts a second, and one record a
// second with their count keeps the trace without flooding the log.
const authFailEvery = time.Second

// authFailures counts failed proxy authentications not yet recorded.
type authFailures struct {
	mu     sync.Mutex
	last   time.Time // when the last record was queued
	n      int       // failures since
	client string    // the latest failing client
}

// authFailed is the proxy's AuthFailed hook: the first failure is recorded
// at once, later ones at most once per authFailEvery with their count. It
// never blocks: records are queued.
func (g *Gateway) authFailed(client string) {
	a := &g.authFails
	a.mu.Lock()
	a.n++
	a.client = client
	now := g.now()
	if !a.last.IsZero() && now.Sub(a.last) < authFailEvery {
		a.mu.Unlock()
		return
	}
	n := a.n
	a.n, a.last = 0, now
	a.mu.Unlock()
	g.recordAuthFailures(n, client)
}

// flushAuthFailures records failures still counted, at close.
func (g *Gateway) flushAuthFailures() {
	a := &g.authFails
	a.mu.Lock()
	n, client := a.n, a.client
	a.n = 0
	a.mu.Unlock()
	if n > 0 {
		g.recordAuthFailures(n, client)
	}
}

func (g *Gateway) recordAuthFailures(n int, client string) {
	_ = g.log.AppendAsync(&audit.Record{Kind: audit.KindEvent, Gateway: g.name, Event: EventAuthFailed,
		Details: map[string]any{"client": client, "failures": n}})
}
