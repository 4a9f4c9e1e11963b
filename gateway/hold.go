package gateway

import (
	"context"

	"github.com/tameflare/tf/rules"
)

// hold waits for a person to decide a require_approval action and returns
// the resulting decision. Until approvals exist, nobody can approve, so a
// held request is refused at once, saying why.
func (g *Gateway) hold(ctx context.Context, id string, actions []rules.Action, decisions []rules.Decision, k int) rules.Decision {
	d := decisions[k]
	d.Effect = rules.Deny
	d.Reason += " (this action needs a person's approval, and this gateway has no approval channel: refused)"
	return d
}

// cutOff returns a context that ends when the exchange must be cut (the
// kill switch); nil means never.
func (g *Gateway) cutOff(actions []rules.Action) context.Context { return nil }
