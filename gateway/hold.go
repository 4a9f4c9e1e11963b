package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/rules"
)

// hold waits for a person to decide the require_approval actions of a
// request and returns the resulting decision: allow when approved, deny
// otherwise, with who decided and why in the reason. One approval covers
// every held action of the request, bound to their digest.
//
// The decision records written before holding say require_approval; the
// human decision is recorded as a second decision record per held action,
// with the same request id and an audit.Approval, besides the
// approval.* events.
func (g *Gateway) hold(ctx context.Context, id string, actions []rules.Action, decisions []rules.Decision, k int) rules.Decision {
	d := decisions[k]
	deny := func(reason string) rules.Decision {
		d.Effect, d.Reason = rules.Deny, reason
		return d
	}
	op := &g.op
	op.holdMu.Lock()
	if op.holdClosed || op.approval == nil {
		op.holdMu.Unlock()
		return deny(d.Reason + " (this action needs a person's approval, and the gateway is stopping: refused)")
	}
	op.holds.Add(1)
	op.holdMu.Unlock()
	defer op.holds.Done()

	var held []int
	var bound []*rules.Action
	for i := range decisions {
		if decisions[i].Effect == rules.RequireApproval {
			held = append(held, i)
			bound = append(bound, &actions[i])
		}
	}
	digest, err := approval.Digest(bound...)
	if err != nil {
		return deny("tf could not bind an approval to this request, so it is refused: " + err.Error())
	}
	timeout := d.ApprovalTimeout
	if timeout <= 0 {
		timeout = op.timeout
	}
	a := &actions[k]
	now := g.now()
	req := approval.Request{
		ID: approval.NewID(), RequestID: id, Gateway: g.name,
		Action: a.Type, Connector: a.Connector, Resource: a.Resource, Params: keyring.RedactParams(a.Params),
		Method: a.Request.Method, Host: a.Request.Host, Path: a.Request.Path,
		Rule: d.Rule, Reason: d.Reason, Revision: d.Revision, Digest: digest,
		Created: now, Expires: now.Add(timeout), Agent: a.Agent,
	}
	if len(held) > 1 {
		req.Reason += fmt.Sprintf(" (one approval for the %d held actions of this request)", len(held))
	}
	base := map[string]any{
		"id": req.ID, "request_id": id, "action": req.Action, "rule": req.Rule,
		"digest": digest, "revision": req.Revision,
	}
	if a.Agent != "" {
		base["agent"] = a.Agent
	}

	var res approval.Result
	if gr, ok := op.approval.Granted(req.Key()); ok {
		// Approved for the session already: nobody is asked again.
		res = approval.Result{Outcome: approval.Approved, Approver: gr.Approver, Reason: gr.Reason, Session: true, At: now}
		req.ID = gr.ID
		base["id"], base["grant"] = gr.ID, true
	} else {
		// The request is on record as held before anyone can answer it.
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := g.log.Event(rctx, g.name, audit.EventApprovalRequested, with(base, "expires", req.Expires.UTC().Format(time.RFC3339Nano), "timeout", timeout.String()))
		cancel()
		if err != nil {
			return deny("tf could not write the audit log, so the approval request is refused: " + err.Error())
		}
		res = op.approval.Hold(ctx, req, timeout)
	}

	event, outcome := audit.EventApprovalDenied, string(res.Outcome)
	var reason string
	switch res.Outcome {
	case approval.Approved:
		event = audit.EventApprovalApproved
		reason = "approved by " + res.Approver
		if res.Session {
			reason += " for this session"
		}
	case approval.Denied:
		reason = "denied by " + res.Approver
	case approval.Expired:
		event = audit.EventApprovalExpired
		reason = "no one approved it in time: " + res.Reason
	case approval.Cancelled:
		event = audit.EventApprovalCancelled
		reason = "cancelled: " + res.Reason
	case approval.Abandoned:
		// audit has no event of its own for this: a cancellation whose
		// outcome says abandoned.
		event, outcome = audit.EventApprovalCancelled, string(approval.Abandoned)
		reason = "abandoned: " + res.Reason
	default:
		reason = "unknown approval outcome " + outcome
	}
	if res.Reason != "" && (res.Outcome == approval.Approved || res.Outcome == approval.Denied) {
		reason += ": " + res.Reason
	}
	effect := rules.Deny
	if res.Outcome == approval.Approved {
		effect = rules.Allow
	}
	at := res.At
	if at.IsZero() {
		at = g.now()
	}
	ap := &audit.Approval{ID: req.ID, Approver: res.Approver, Reason: reason, Outcome: outcome, At: at}
	if ap.Outcome == string(approval.Abandoned) {
		ap.Outcome = string(approval.Cancelled) // audit's outcomes; the reason says abandoned
	}

	// The answer is recorded before an approved request goes on: if it
	// cannot be, the request is refused.
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = g.log.Event(rctx, g.name, event, with(base, "outcome", outcome, "approver", res.Approver, "reason", res.Reason, "session", res.Session, "kill_switch", res.KillSwitch))
	if err == nil {
		err = g.recordHuman(rctx, id, actions, decisions, held, effect, reason, res.KillSwitch, ap)
	}
	if err != nil && effect == rules.Allow {
		return deny("tf could not write the audit log, so the approved request is refused: " + err.Error())
	}

	d.Effect, d.KillSwitch = effect, res.KillSwitch
	if d.Reason != "" {
		reason = d.Reason + " (" + reason + ")"
	}
	d.Reason = reason
	return d
}

// recordHuman writes the second decision record of each held action: the
// person's (or the expiry's) decision with the approval.
func (g *Gateway) recordHuman(ctx context.Context, id string, actions []rules.Action, decisions []rules.Decision, held []int, effect rules.Effect, reason string, killed bool, ap *audit.Approval) error {
	for _, i := range held {
		a := actions[i]
		a.Params = keyring.RedactParams(a.Params)
		dec := decisions[i]
		dec.Effect, dec.KillSwitch = effect, killed
		dec.Reason = reason
		r := &audit.Record{Time: ap.At, Kind: audit.KindDecision, RequestID: id, Gateway: g.name, Action: &a, Decision: &dec, Approval: ap}
		if err := g.log.Append(ctx, r); err != nil {
			return err
		}
		g.metrics.Decided(string(dec.Effect), a.Connector, dec.Rule, dec.KillSwitch)
	}
	return nil
}

// with returns a copy of m with the key/value pairs added; empty strings
// and false are left out.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case string:
			if v == "" {
				continue
			}
		case bool:
			if !v {
				continue
			}
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}
