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
	user   string    // the user name it sent (an agent's name), never a token
}

// authFailed is the proxy's AuthFailed hook: the first failure is recorded
// at once, later ones at most once per authFailEvery with their count. It
// never blocks: records are queued.
func (g *Gateway) authFailed(client, user string) {
	a := &g.authFails
	a.mu.Lock()
	a.n++
	a.client, a.user = client, user
	now := g.now()
	if !a.last.IsZero() && now.Sub(a.last) < authFailEvery {
		a.mu.Unlock()
		return
	}
	n := a.n
	a.n, a.last = 0, now
	a.mu.Unlock()
	g.recordAuthFailures(n, client, user)
}

// flushAuthFailures records failures still counted, at close.
func (g *Gateway) flushAuthFailures() {
	a := &g.authFails
	a.mu.Lock()
	n, client, user := a.n, a.client, a.user
	a.n = 0
	a.mu.Unlock()
	if n > 0 {
		g.recordAuthFailures(n, client, user)
	}
}

func (g *Gateway) recordAuthFailures(n int, client, user string) {
	details := map[string]any{"client": client, "failures": n}
	if user != "" && user != "tf" {
		// The name a client of a shared gateway claimed: which agent's
		// credentials fail (or are being guessed). Never the token.
		details["agent"] = user
	}
	_ = g.log.AppendAsync(&audit.Record{Kind: audit.KindEvent, Gateway: g.name, Event: EventAuthFailed, Details: details})
}
