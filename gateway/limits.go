package gateway

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/usage"
)

// decider is how this gateway decides with policy p: the kill switch, the
// mode override, and the counters of rules' limits, kept for the
// gateway's life across policy reloads (a changed limit keeps its count).
func (g *Gateway) decider(p *rules.Policy) *rules.Decider {
	return &rules.Decider{Policy: p, Mode: g.mode, Now: g.now, KillSwitch: g.killSwitch, Counters: g.counters, Session: g.session,
		Baseline: mcp.Baseline, InspectLimit: g.peekLimit}
}

// releaseRefused gives back what the actions of a refused request counted
// under limits: a request goes through whole or not at all, so nothing of
// it was let through.
func (g *Gateway) releaseRefused(p *rules.Policy, actions []rules.Action, decisions []rules.Decision) {
	if len(p.Limited()) == 0 || decisions[strongest(decisions)].Effect != rules.Deny {
		return
	}
	d := g.decider(p)
	for i := range decisions {
		if len(decisions[i].Counted) > 0 {
			d.Release(&actions[i], &decisions[i])
		}
	}
}

// addTokens counts a model call's tokens under the token limits that
// counted it.
func (g *Gateway) addTokens(p *rules.Policy, a *rules.Action, dec *rules.Decision, u *audit.Usage) {
	if len(dec.Counted) == 0 || u.Unknown != "" {
		return
	}
	g.decider(p).AddTokens(a, dec, g.now(), usage.Tokens(a.Connector, u))
}

// restoreCounters rebuilds the counters of the policy's limits over a
// duration from this gateway's records in the audit log: the log is the
// one source of truth, on tf's side of the sandbox. Only the longest
// window is read back. Limits per session start empty: a new run is a new
// session. It returns how many recorded actions it counted again.
func (g *Gateway) restoreCounters(dir string, p *rules.Policy) (int, error) {
	w := p.LongestWindow()
	if w == 0 {
		return 0, nil
	}
	d := g.decider(p)
	type counted struct {
		a   *rules.Action
		dec *rules.Decision
	}
	// Model calls that counted under a token limit, waiting for their
	// outcome (which follows the decision in the log).
	pending := map[string]counted{}
	n := 0
	f := audit.Filter{Since: g.now().Add(-w), Gateway: g.name}
	err := audit.Scan(dir, f, func(r *audit.Record) error {
		switch r.Kind {
		case audit.KindDecision:
			if r.Decision == nil || len(r.Decision.Counted) == 0 || r.Action == nil {
				return nil
			}
			d.Restore(r.Action, r.Decision, r.Time)
			spans := false // counted under a limit that spans runs
			for _, name := range r.Decision.Counted {
				rule := limitedRule(p, name)
				if rule == nil || rule.Quota.Session() {
					continue
				}
				spans = true
				if rule.Quota.Tokens > 0 {
					pending[r.RequestID] = counted{r.Action, r.Decision}
				}
			}
			if spans {
				n++
			}
		case audit.KindOutcome:
			c, ok := pending[r.RequestID]
			if !ok {
				return nil
			}
			delete(pending, r.RequestID)
			if r.Usage != nil && r.Usage.Unknown == "" {
				d.RestoreTokens(c.a, c.dec, r.Time, usage.Tokens(c.a.Connector, r.Usage))
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("rebuilding the counters of limits from the audit log: %w", err)
	}
	return n, nil
}

func limitedRule(p *rules.Policy, name string) *rules.CompiledRule {
	for _, r := range p.Limited() {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// sessionID names one run of the gateway for limits per session.
func sessionID(start time.Time) string { return strconv.FormatInt(start.UnixNano(), 36) }
