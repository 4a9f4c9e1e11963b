package rules

import (
	"fmt"
	"sync"
	"time"

	"github.com/expr-lang/expr/vm"
)

// Decider decides actions against a policy, with the kill switch consulted
// first. The zero KillSwitch never refuses; a nil Now means time.Now.
type Decider struct {
	Policy     *Policy
	KillSwitch KillSwitch
	Now        func() time.Time
	// Mode, when set, replaces the policy's mode (tf run --mode).
	Mode Mode
	// EnforceAll ignores monitor mode (of the policy and of rules), giving
	// what the rules say when enforced. Policy tests use it.
	EnforceAll bool
	// Counters keep the use of rules' limits. Nil checks no limit: the
	// decision is what the rules say within their limits (tf policy
	// explain, MCP list filtering). A gateway always sets it.
	Counters Counters
	// Session identifies the run of the gateway, for limits per session.
	Session string
	// Baseline, when set, is applied to every decision but a kill
	// switch's: what tf decides beyond the policy's rules (mcp.Baseline
	// lets MCP protocol plumbing through). The gateway, tf policy plan,
	// tf policy test and tf policy suggest set the same, so that each
	// decides as the gateway does.
	Baseline Baseline
	// InspectLimit is how many bytes of a body the connectors read, for
	// the reason of a truncated-body refusal; 0 leaves the figure out.
	InspectLimit int
}

// Baseline is a decision tf makes beyond a policy's rules for some kind
// of action; it returns d unchanged for the others.
type Baseline func(a *Action, d Decision) Decision

// Decide decides a against p with no kill switch.
func (p *Policy) Decide(a *Action) Decision {
	return (&Decider{Policy: p}).Decide(a)
}

var vmPool = sync.Pool{New: func() any { return new(vm.VM) }}

func runProgram(p *vm.Program, env *exprEnv) (out any, err error) {
	v := vmPool.Get().(*vm.VM)
	defer vmPool.Put(v)
	defer func() {
		// expr reports run-time errors as errors, but a panic in a
		// function it calls must not take the gateway down either.
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return v.Run(p, env)
}

// holds reports whether r's condition holds for a: natively when it can,
// else by running the program in an environment built once per decision.
func (r *CompiledRule) holds(c *evalCtx, env **exprEnv) (bool, error) {
	if r.native != nil {
		if out, ok := r.native(c); ok {
			return out, nil
		}
	}
	if r.program == nil {
		return true, nil
	}
	if *env == nil {
		*env = newEnv(c.a, c.time())
	}
	out, err := runProgram(r.program, *env)
	return out == true, err
}

// Decide returns the decision for a. It never fails: a condition that errors
// counts as a matching deny, so that a broken rule refuses rather than
// waves through.
func (d *Decider) Decide(a *Action) Decision {
	p := d.Policy
	dec := Decision{Revision: p.Revision}
	if d.KillSwitch != nil {
		if reason, killed := d.KillSwitch.Killed(a); killed {
			dec.Effect, dec.KillSwitch, dec.Reason = Deny, true, reason
			return dec
		}
	}

	var env *exprEnv
	ctx := evalCtx{a: a, nowFn: d.Now}
	// First find the matching rules, noting them on the stack, then build
	// the match list at its exact size: a decision allocates once.
	type hit struct {
		rule int32
		err  error
	}
	var buf [32]hit
	hits := buf[:0]
	for _, i := range p.index.candidates(a.Type) {
		ok, err := p.Rules[i].holds(&ctx, &env)
		if ok || err != nil {
			hits = append(hits, hit{int32(i), err})
		}
	}
	if len(hits) > 0 {
		dec.Matched = make([]Match, len(hits))
	}
	for k, h := range hits {
		r := p.Rules[h.rule]
		m := &dec.Matched[k]
		*m = Match{Rule: r.Name, Decision: r.Decision, Reason: r.Reason, Monitor: r.Monitor() && !d.EnforceAll}
		if h.err != nil {
			m.Decision = Deny
			m.Error = "condition failed: " + exprMessage(h.err)
		}
	}
	if len(p.limits) > 0 && d.Counters != nil && len(hits) > 0 {
		d.limit(p, a, &ctx, &dec, func(k int) *CompiledRule { return p.Rules[hits[k].rule] })
	}
	enforced, shadow := -1, -1 // indexes into dec.Matched of the strongest matches
	var timeout time.Duration  // of the strongest enforcing rule
	for k, h := range hits {
		r := p.Rules[h.rule]
		m := &dec.Matched[k]
		best := &enforced
		if m.Monitor {
			best = &shadow
		}
		// Strictly stronger only: among equals the first in policy order decides.
		if *best < 0 || m.Decision.Beats(dec.Matched[*best].Decision) {
			*best = k
			if !m.Monitor {
				timeout = r.Timeout
			}
		}
	}

	if enforced >= 0 {
		m := &dec.Matched[enforced]
		dec.Effect, dec.Rule, dec.Reason = m.Decision, m.Rule, p.Rules[hits[enforced].rule].reasonFor(m)
		if m.Decision == RequireApproval {
			dec.ApprovalTimeout = timeout
		}
	} else {
		dec.Effect, dec.Default = p.Default, true
		dec.Reason = "no rule matched " + a.Type + "; the policy default is " + string(p.Default)
	}
	if shadow >= 0 && dec.Matched[shadow].Decision.Beats(dec.Effect) {
		m := &dec.Matched[shadow]
		dec.Monitor, dec.Would, dec.WouldRule, dec.WouldReason = true, m.Decision, m.Rule, p.Rules[hits[shadow].rule].reasonFor(m)
	}
	mode := p.Mode
	if d.Mode != "" {
		mode = d.Mode
	}
	if mode == Monitor && !d.EnforceAll && dec.Effect != Allow {
		if !dec.Monitor {
			dec.Would, dec.WouldRule, dec.WouldReason = dec.Effect, dec.Rule, dec.Reason
		}
		dec.Effect, dec.Monitor, dec.Rule, dec.Default = Allow, true, "", false
		dec.Reason = fmt.Sprintf("monitor mode: would %s: %s", dec.Would, dec.WouldReason)
		dec.ApprovalTimeout = 0
	}
	if bodyTruncated(a) {
		dec = d.refuseTruncated(a, dec)
	}
	if d.Baseline != nil {
		dec = d.Baseline(a, dec)
	}
	return dec
}

func ruleReason(m *Match) string {
	switch {
	case m.Error != "":
		return fmt.Sprintf("rule %s could not be evaluated (%s); refused to fail closed", m.Rule, m.Error)
	case m.Reason != "":
		return m.Reason
	}
	switch m.Decision {
	case Deny:
		return "denied by rule " + m.Rule
	case RequireApproval:
		return "rule " + m.Rule + " requires approval"
	}
	return "allowed by rule " + m.Rule
}

// limit applies the limits of the matched rules. Nothing is counted when
// the rules refuse the action anyway (an enforcing deny, or the default
// deny with no enforcing match). Otherwise each limited rule that matched
// takes one from its counter; a rule past its limit turns into a deny
// naming the limit, and when an enforcing one does, the action is refused
// and what the others took is given back. What was taken is listed in
// dec.Counted.
func (d *Decider) limit(p *Policy, a *Action, c *evalCtx, dec *Decision, rule func(k int) *CompiledRule) {
	anyLimit := false
	effect := Effect("")
	for k := range dec.Matched {
		m := &dec.Matched[k]
		anyLimit = anyLimit || rule(k).Quota != nil
		if !m.Monitor && (effect == "" || m.Decision.Beats(effect)) {
			effect = m.Decision
		}
	}
	if !anyLimit || effect == Deny || (effect == "" && p.Default == Deny) {
		return
	}
	t := c.time()
	var taken [8]int
	took := taken[:0]
	refused := false
	for k := range dec.Matched {
		r, m := rule(k), &dec.Matched[k]
		if r.Quota == nil || m.Decision == Deny {
			continue
		}
		ok, reset := d.Counters.Take(counterKey(r, a, d.Session), r.Quota, t)
		if ok {
			took = append(took, k)
			continue
		}
		m.Decision, m.Reason = Deny, limitReason(r, reset)
		refused = refused || !m.Monitor
	}
	if refused {
		for _, k := range took {
			r := rule(k)
			d.Counters.Release(counterKey(r, a, d.Session), r.Quota)
		}
		return
	}
	if len(took) > 0 {
		dec.Counted = make([]string, len(took))
		for i, k := range took {
			dec.Counted[i] = rule(k).Name
		}
	}
}
