package gateway

import (
	"fmt"
	"strings"

	"github.com/tameflare/tf/rules"
)

// truncatedRule returns the first rule of p that applies to a and reads
// its params, when a is a model call whose body tf could not read to its
// end (params.body_truncated): such a call carries none of its body's
// fields, so a rule on params.model (or max_tokens, tools, ...) would be
// dodged by padding the conversation past the inspected prefix. Any use of
// params but the truncation flag itself counts: reading them by a name
// built at run time cannot be told apart. "" means no rule depends on the
// missing fields and the call may be decided as usual.
func truncatedRule(p *rules.Policy, a *rules.Action) string {
	if !bodyTruncated(a) {
		return ""
	}
	for _, r := range p.Rules {
		if !strings.Contains(strings.ReplaceAll(r.When, "params.body_truncated", ""), "params") {
			continue
		}
		for _, pat := range r.Actions {
			if rules.GlobMatch(pat, a.Type) {
				return r.Name
			}
		}
	}
	return ""
}

// bodyTruncated reports whether a's connector could not read the body to
// its end (params.body_truncated, set by the model connectors).
func bodyTruncated(a *rules.Action) bool {
	t, _ := a.Params["body_truncated"].(bool)
	return t
}

// refuseTruncated turns the decision on a model call whose missing body
// fields a rule reads into a refusal that says why (issue 16's rule for
// bodies that a decision depends on).
func (g *Gateway) refuseTruncated(p *rules.Policy, a *rules.Action, d rules.Decision) rules.Decision {
	if d.Effect == rules.Deny && !d.Monitor {
		return d
	}
	rule := truncatedRule(p, a)
	if rule == "" {
		return d
	}
	return rules.Decision{Effect: rules.Deny, Revision: p.Revision, Rule: "tf:truncated-body",
		Reason: fmt.Sprintf("the request body is larger than the %d bytes tf inspects, and rule %s reads the fields of it that tf could not see; tf refuses rather than guess (raise limits.max_inspected_body in $TF_HOME/config.yaml, or write the rule so that it does not depend on them)", g.peekLimit, rule)}
}
