package rules

import "time"

// Effect is what happens to an action.
type Effect string

const (
	Allow           Effect = "allow"
	Deny            Effect = "deny"
	RequireApproval Effect = "require_approval"
)

// strength orders effects so that deny beats require_approval beats allow.
func (e Effect) strength() int {
	switch e {
	case Deny:
		return 3
	case RequireApproval:
		return 2
	case Allow:
		return 1
	}
	return 0
}

// Beats reports whether e wins over o where decisions meet: deny beats
// require_approval beats allow.
func (e Effect) Beats(o Effect) bool { return e.strength() > o.strength() }

// Valid reports whether e is one of the three effects.
func (e Effect) Valid() bool { return e.strength() > 0 }

// A Match is one rule that applied to an action.
type Match struct {
	Rule     string `json:"rule"`
	Decision Effect `json:"decision"`
	Reason   string `json:"reason,omitempty"`
	// Monitor is set for a rule in monitor mode: it is recorded but does
	// not refuse anything.
	Monitor bool `json:"monitor,omitempty"`
	// Error is set when the rule's condition failed at run time; such a
	// rule counts as a deny (fail closed).
	Error string `json:"error,omitempty"`
}

// A Decision is the outcome of deciding one action, with what made it.
type Decision struct {
	// Effect is what the gateway does: allow, deny or require_approval.
	Effect Effect `json:"decision"`
	// Rule is the deciding rule; empty when the default or the kill switch
	// decided.
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Matched lists every rule that applied, in policy order.
	Matched []Match `json:"matched,omitempty"`
	// Default is set when no enforcing rule matched and the policy's
	// default decided.
	Default bool `json:"default,omitempty"`
	// KillSwitch is set when an active kill switch refused the action.
	KillSwitch bool `json:"kill_switch,omitempty"`
	// Monitor is set when monitor mode, of the policy or of a shadow rule,
	// let through what enforcing would have refused or held: Would is that
	// stronger decision ("would deny"), WouldRule and WouldReason the rule
	// behind it. Effect, Rule and Reason always describe what happens.
	Monitor     bool   `json:"monitor,omitempty"`
	Would       Effect `json:"would,omitempty"`
	WouldRule   string `json:"would_rule,omitempty"`
	WouldReason string `json:"would_reason,omitempty"`
	// ApprovalTimeout is how long a require_approval decision may wait for
	// a person; zero means the gateway's default.
	ApprovalTimeout time.Duration `json:"approval_timeout,omitempty"`
	// Revision identifies the policy that decided: a commit or content hash.
	Revision string `json:"revision,omitempty"`
	// Counted names the rules whose limits counted this action: what a
	// gateway rebuilds its counters from after a restart.
	Counted []string `json:"counted,omitempty"`
}

// KillSwitch is consulted before any rule. The gateway fills it in; a nil
// KillSwitch never refuses.
type KillSwitch interface {
	// Killed reports whether the action must be refused, and why.
	Killed(a *Action) (reason string, killed bool)
}
