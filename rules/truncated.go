package rules

import (
	"fmt"
	"strings"
)

// TruncatedBodyRule names the refusal of a call whose body tf could not
// read to its end while a rule that applies reads its fields.
const TruncatedBodyRule = "tf:truncated-body"

// truncatedRule returns the first rule of p that applies to a and reads
// its params, when a is a model call whose body tf could not read to its
// end (params.body_truncated): such a call carries none of its body's
// fields, so a rule on params.model (or max_tokens, tools, ...) would be
// dodged by padding the conversation past the inspected prefix. Any use of
// params but the truncation flag itself counts: reading them by a name
// built at run time cannot be told apart. "" means no rule depends on the
// missing fields and the call may be decided as usual.
func truncatedRule(p *Policy, a *Action) string {
	for _, r := range p.Rules {
		if !strings.Contains(strings.ReplaceAll(r.When, "params.body_truncated", ""), "params") {
			continue
		}
		for _, pat := range r.Actions {
			if GlobMatch(pat, a.Type) {
				return r.Name
			}
		}
	}
	return ""
}

// bodyTruncated reports whether a's connector could not read the body to
// its end (params.body_truncated, set by the model connectors).
func bodyTruncated(a *Action) bool {
	t, _ := a.Params["body_truncated"].(bool)
	return t
}

// refuseTruncated turns the decision on a call whose missing body fields
// a rule reads into a refusal that says why, giving back what limits
// counted for it. An enforced refusal stays as it is.
func (d *Decider) refuseTruncated(a *Action, dec Decision) Decision {
	if dec.Effect == Deny && !dec.Monitor {
		return dec
	}
	rule := truncatedRule(d.Policy, a)
	if rule == "" {
		return dec
	}
	if len(dec.Counted) > 0 {
		d.Release(a, &dec)
	}
	inspected := "the part tf inspects"
	if d.InspectLimit > 0 {
		inspected = fmt.Sprintf("the %d bytes tf inspects", d.InspectLimit)
	}
	return Decision{Effect: Deny, Revision: d.Policy.Revision, Rule: TruncatedBodyRule,
		Reason: fmt.Sprintf("the request body is larger than %s, and rule %s reads the fields of it that tf could not see; tf refuses rather than guess (raise limits.max_inspected_body in $TF_HOME/config.yaml, or write the rule so that it does not depend on them)", inspected, rule)}
}
