package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/httpproxy"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/rules"
)

var _ httpproxy.Governor = (*Gateway)(nil)

// Govern classifies one request into actions, decides each, records the
// decisions durably, and then lets the request through or refuses it. A
// request is allowed only when every action it carries is allowed.
func (g *Gateway) Govern(ctx context.Context, req *connectors.Request) httpproxy.Verdict {
	began := time.Now()
	conn := g.conns.For(req)
	actions, err := g.conns.Classify(req)
	var refs []*audit.MCP
	var legacy *legacyOutcome
	if conn.Name() == "mcp" {
		refs = mcpRefs(req, len(actions), err)
		if err == nil {
			// A post of the legacy SSE transport: its answers come on
			// the session's stream, awaited from before it is decided.
			legacy = &legacyOutcome{g: g}
			w, werr := g.awaitLegacy(req, actions, refs, legacy.answered)
			legacy.w = w
			if werr != nil {
				err = fmt.Errorf("MCP over the legacy SSE transport: %w", werr)
				refs = mcpRefs(req, 1, err)
			}
			if w == nil {
				legacy = nil
			}
		}
	}
	r := g.decideAll(ctx, actions, err, refs, func(err error) rules.Action {
		// What cannot be classified is recorded as what little is known
		// of it.
		return rules.Action{
			Type:      "tf.unclassified",
			Connector: conn.Name(),
			Resource:  map[string]string{"host": req.Host()},
			Params:    map[string]any{"error": g.redact(err.Error())},
			Request:   rules.Request{Method: req.HTTP.Method, Scheme: req.Scheme, Host: req.Host(), Path: req.HTTP.URL.Path},
		}
	})
	id, actions, decisions := r.id, r.actions, r.decisions
	g.metrics.DecisionTime(conn.Name(), time.Since(began))
	if r.recordErr != nil {
		if legacy != nil {
			legacy.w.Cancel()
		}
		return refusal(http.StatusServiceUnavailable, id, "", actions[0].Type, rules.Deny,
			"tf could not write the audit log, so nothing is forwarded: "+r.recordErr.Error())
	}

	k := strongest(decisions)
	dec, act := decisions[k], actions[k]
	out := outcomeRef(refs)
	done := func(o httpproxy.Outcome) { g.recordOutcome(id, o, out.get()) }
	if dec.Effect == rules.RequireApproval {
		// Held for a person: hold returns the decision they made (or the
		// expiry's), recorded; an approved request goes on as allowed.
		dec = g.hold(ctx, id, actions, decisions, k)
		decisions = settle(decisions, dec)
	}
	if legacy != nil {
		if dec.Effect == rules.Allow {
			// The outcome waits for the answers on the stream too.
			legacy.id, legacy.out = id, out
			done = legacy.posted
		} else {
			legacy.w.Cancel()
		}
	}
	if dec.Effect == rules.Allow {
		v := httpproxy.Verdict{Allow: true, Done: done, Prepare: g.prepare(req, actions), Ctx: g.cutOff(actions),
			// Classify refuses an upgrade no connector governs.
			Upgrade: req.HTTP.Header.Get("Upgrade") != ""}
		g.mcpVerdict(&v, req, actions, r.policy, out)
		g.guardResponse(&v, id, req, actions)
		g.meterUsage(&v, id, actions, decisions, r.policy)
		g.timeForward(&v, conn.Name())
		return v
	}
	if er, ok := conn.(connectors.EachRefuser); ok {
		if status, h, body, ok := er.RefuseEach(req, actions, decisions, id); ok {
			if conn.Name() == "mcp" && g.legacyRefusal(req, body) {
				// Delivered on the legacy SSE stream, where the client
				// reads its answers.
				status, h, body = http.StatusAccepted, http.Header{"Content-Type": {"text/plain"}}, []byte("Accepted")
			}
			return connectorRefusal(status, h, body, id, dec, done)
		}
	}
	if rf, ok := conn.(connectors.Refuser); ok {
		// Only the refused actions carry the reason; the protocol's own
		// answer tells the client the rest were not done either.
		var refused []rules.Action
		for i := range actions {
			if decisions[i].Effect != rules.Allow {
				refused = append(refused, actions[i])
			}
		}
		if status, h, body, ok := rf.Refuse(req, refused, dec.Rule, dec.Reason, id); ok {
			return connectorRefusal(status, h, body, id, dec, done)
		}
	}
	v := refusal(refusalStatus(req.HTTP), id, dec.Rule, act.Type, dec.Effect, dec.Reason)
	markKillSwitch(v.Refusal, dec)
	v.Done = done
	return v
}

// refusalStatus is 403, except for a refused WebSocket handshake: 426
// Upgrade Required tells the client this endpoint is not served over a
// WebSocket, and clients that prefer one fall back to plain HTTPS at once
// (Codex CLI does; on a 403 it retried five times, 7 s, before falling
// back). tf refuses every upgrade it cannot read past.
func refusalStatus(r *http.Request) int {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return http.StatusUpgradeRequired
	}
	return http.StatusForbidden
}

// connectorRefusal is a refusal in the connector's protocol, with the
// X-TF-* headers for auditors.
func connectorRefusal(status int, h http.Header, body []byte, id string, dec rules.Decision, done func(httpproxy.Outcome)) httpproxy.Verdict {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	setTFHeaders(h, id, dec.Rule, dec.Effect)
	resp := &httpproxy.Response{Status: status, Header: h, Body: body}
	markKillSwitch(resp, dec)
	return httpproxy.Verdict{Refusal: resp, Done: done}
}

// settle returns decisions with each held one replaced by the final
// decision on the hold.
func settle(decisions []rules.Decision, final rules.Decision) []rules.Decision {
	out := append([]rules.Decision(nil), decisions...)
	for i := range out {
		if out[i].Effect == rules.RequireApproval {
			d := out[i]
			d.Effect, d.Reason, d.KillSwitch = final.Effect, final.Reason, final.KillSwitch
			out[i] = d
		}
	}
	return out
}

// ruling is what deciding the actions of one request (or one stdio line)
// came to, recorded.
type ruling struct {
	id        string
	actions   []rules.Action
	decisions []rules.Decision
	// policy is the revision that decided.
	policy *rules.Policy
	// recordErr is set when the decisions could not be recorded; nothing
	// may then be forwarded.
	recordErr error
}

// decideAll is the one path from actions to recorded decisions, for the
// proxy and for tf mcp wrap alike: it decides every action with one policy
// revision (the kill switch first, then the rules, then the MCP baseline),
// stamps the actions with the request id, and records the decisions
// durably. When classErr is set the request could not be classified: it is
// recorded as the one action unclassified returns, refused.
func (g *Gateway) decideAll(ctx context.Context, actions []rules.Action, classErr error, refs []*audit.MCP, unclassified func(error) rules.Action) ruling {
	r := g.decideOnly(actions, classErr, unclassified, httpproxy.Agent(ctx))
	// The decision records are durable before anything is forwarded.
	var wrote time.Time
	if g.metrics != nil {
		wrote = time.Now()
	}
	r.recordErr = g.log.AppendAll(ctx, g.decisionRecords(nil, r.id, r.actions, r.decisions, refs))
	if g.metrics != nil {
		g.metrics.AuditWritten(time.Since(wrote))
		if r.recordErr == nil {
			g.countDecisions(r.actions, r.decisions)
		}
	}
	return r
}

// decideOnly is decideAll without the records; agent is who sent the
// request to a shared gateway.
func (g *Gateway) decideOnly(actions []rules.Action, classErr error, unclassified func(error) rules.Action, agent string) ruling {
	start := g.now()
	r := ruling{id: newRequestID(start), policy: g.policy.Load()} // one revision decides the whole request
	p := r.policy
	if classErr != nil {
		actions = []rules.Action{unclassified(classErr)}
	}
	// Who sent it is known before deciding: rules, the kill switch and
	// limits (counted per gateway and agent) judge action.gateway and
	// action.agent.
	for i := range actions {
		actions[i].Gateway, actions[i].Agent = g.name, agent
	}
	if classErr != nil {
		r.decisions = []rules.Decision{{
			Effect: rules.Deny, Revision: p.Revision,
			Reason: "tf could not classify this request, so it is refused: " + g.redact(classErr.Error()),
		}}
	} else {
		d := g.decider(p)
		r.decisions = make([]rules.Decision, len(actions))
		for i := range actions {
			r.decisions[i] = d.Decide(&actions[i])
			if actions[i].Connector == "mcp" && p.MCPPinTools != "" && !r.decisions[i].KillSwitch {
				r.decisions[i] = g.pinDecision(p, &actions[i], r.decisions[i])
			}
		}
		g.releaseRefused(p, actions, r.decisions)
	}
	for i := range actions {
		actions[i].ID = r.id
		if len(actions) > 1 {
			actions[i].ID = r.id + "." + strconv.Itoa(i)
		}
		actions[i].Time = start
	}
	r.actions = actions
	return r
}

// GovernTunnel decides a passthrough CONNECT: the action net.connect on
// host and port alone.
func (g *Gateway) GovernTunnel(ctx context.Context, host string, port int) httpproxy.Verdict {
	began := time.Now()
	start := g.now()
	id := newRequestID(start)
	p := g.policy.Load()
	a := rules.Action{
		ID: id, Time: start, Gateway: g.name, Agent: httpproxy.Agent(ctx), Connector: "net", Type: "net.connect",
		Resource: map[string]string{"host": host},
		Params:   map[string]any{"port": port},
		Request:  rules.Request{Method: http.MethodConnect, Host: host, Port: port},
	}
	dec := g.decider(p).Decide(&a)
	err := g.log.AppendAll(ctx, g.decisionRecords(nil, id, []rules.Action{a}, []rules.Decision{dec}, nil))
	g.metrics.DecisionTime(a.Connector, time.Since(began))
	if err != nil {
		return refusal(http.StatusServiceUnavailable, id, "", a.Type, rules.Deny, "tf could not write the audit log: "+err.Error())
	}
	g.countDecisions([]rules.Action{a}, []rules.Decision{dec})
	done := func(o httpproxy.Outcome) { g.recordOutcome(id, o, nil) }
	if dec.Effect == rules.Allow {
		v := httpproxy.Verdict{Allow: true, Done: done, Ctx: g.cutOff([]rules.Action{a})}
		g.timeForward(&v, a.Connector)
		return v
	}
	v := refusal(http.StatusForbidden, id, dec.Rule, a.Type, dec.Effect, dec.Reason)
	v.Done = done
	return v
}

// strongest returns the index of the decision that decides a request of
// several actions: the first deny, else the first hold, else the first.
func strongest(ds []rules.Decision) int {
	best := 0
	for i, d := range ds {
		if d.Effect.Beats(ds[best].Effect) {
			best = i
		}
	}
	return best
}

// decisionRecords appends the decision records of one request to recs;
// refs, when not nil, holds each action's MCP message reference.
func (g *Gateway) decisionRecords(recs []*audit.Record, id string, actions []rules.Action, decisions []rules.Decision, refs []*audit.MCP) []*audit.Record {
	for i := range actions {
		a := actions[i]
		a.Params = g.redactParams(a.Params)
		dec := decisions[i]
		rec := &audit.Record{Time: a.Time, Kind: audit.KindDecision, RequestID: id, Gateway: g.name, Action: &a, Decision: &dec}
		if i < len(refs) {
			rec.MCP = refs[i]
		}
		recs = append(recs, rec)
	}
	return recs
}

func (g *Gateway) recordOutcome(id string, o httpproxy.Outcome, ref *audit.MCP) {
	r := g.outcomeRecord(id, o)
	r.MCP = ref
	g.appendOutcome(r)
}

// recordOutcomeUsage records the outcome of a model call with its token
// usage.
func (g *Gateway) recordOutcomeUsage(id string, o httpproxy.Outcome, u *audit.Usage) {
	r := g.outcomeRecord(id, o)
	r.Usage = u
	g.appendOutcome(r)
}

func (g *Gateway) outcomeRecord(id string, o httpproxy.Outcome) *audit.Record {
	r := &audit.Record{
		Time: g.now(), Kind: audit.KindOutcome, RequestID: id, Gateway: g.name,
		Status: o.Status, BytesIn: o.RequestBytes, BytesOut: o.ResponseBytes, DurationMS: o.Duration.Milliseconds(),
	}
	if o.Err != nil {
		r.Error = g.redact(o.Err.Error())
	}
	return r
}

// appendOutcome queues r, not waited for: nothing depends on an outcome
// being durable (the decision is on record already), and the exchange's
// goroutine goes on at once. A write failure is sticky, so the next
// decision record fails and refuses; an outcome lost to a closing log is
// not a refusal.
func (g *Gateway) appendOutcome(r *audit.Record) { _ = g.log.AppendAsync(r) }

// redactParams masks secret-looking params and any known secret value.
func (g *Gateway) redactParams(p map[string]any) map[string]any {
	p = keyring.RedactParams(p)
	if g.secrets != nil {
		p = g.secrets.Redactor().Params(p)
	}
	return p
}

// redact removes known secret values from a message.
func (g *Gateway) redact(s string) string {
	if g.secrets != nil {
		return g.secrets.Redactor().Redact(s)
	}
	return s
}

// refusal is the answer to a refused request: JSON the agent (and its
// model) can read, and headers for auditors.
func refusal(status int, id, rule, actionType string, effect rules.Effect, reason string) httpproxy.Verdict {
	msg := fmt.Sprintf("tf refused %s: %s", actionType, reason)
	body, _ := json.Marshal(map[string]string{
		"error": msg,
		// message is where GitHub's clients (gh, octokit) look for the
		// reason of an error, and print it.
		"message":    msg,
		"decision":   string(effect),
		"action":     actionType,
		"rule":       rule,
		"reason":     reason,
		"request_id": id,
	})
	h := http.Header{"Content-Type": {"application/json"}}
	setTFHeaders(h, id, rule, effect)
	return httpproxy.Verdict{Refusal: &httpproxy.Response{Status: status, Header: h, Body: append(body, '\n')}}
}

func setTFHeaders(h http.Header, id, rule string, effect rules.Effect) {
	h.Set("X-TF-Decision", string(effect))
	h.Set("X-TF-Request-Id", id)
	if rule != "" {
		h.Set("X-TF-Rule", rule)
	}
}

// newRequestID returns an identifier that sorts by time: milliseconds
// since the epoch, then random bits.
func newRequestID(t time.Time) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	// 12 hex digits of milliseconds (zero-padded), then 10 random ones.
	var id [22]byte
	ms := uint64(t.UnixMilli())
	for i := 11; i >= 0; i-- {
		id[i] = hexDigits[ms&0xf]
		ms >>= 4
	}
	hex.Encode(id[12:], b[:])
	return string(id[:])
}

const hexDigits = "0123456789abcdef"
