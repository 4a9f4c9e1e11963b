package dashboard

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"slices"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/gitops"
	"github.com/tameflare/tf/rules"
)

// PlanPath is where the Policy page looks for the latest saved plan:
// $TF_HOME/plans/latest (tf policy plan --out can write there). tf keeps
// no other conventional place for plans.
func PlanPath(home string) string { return gitops.LatestPlanPath(home) }

type policyData struct {
	Pin      *gitops.Pin
	Shown    *gitops.Shown
	Source   string
	Revision string
	Mode     rules.Mode
	Default  rules.Effect
	Rules    []*rules.CompiledRule
	// Error is why the pinned policy could not be read.
	Error    string
	Plan     string
	PlanPath string
	PlanErr  string
	// History is the policy applies recorded in the audit log (tf policy
	// log), newest first, at most maxHistory.
	History    []gitops.Applied
	HistoryErr string
	// Chain is the audit log's hash-chain check (tf audit verify).
	Chain    *audit.Report
	ChainErr string
}

// maxHistory bounds the applies the Policy page lists.
const maxHistory = 20

func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request, sess *session) {
	d := policyData{PlanPath: PlanPath(s.cfg.Home)}
	var p *rules.Policy
	pin, err := gitops.ReadPin(s.cfg.Home)
	switch {
	case err == nil:
		d.Pin = pin
		ctx, cancel := s.timeout(r.Context())
		d.Shown, _ = gitops.Show(ctx, s.cfg.Home) // the commit's subject and author are extras
		cancel()
		if p, _, err = gitops.LoadPinned(s.cfg.Home); err != nil {
			d.Error = "loading the pinned policy: " + err.Error()
		}
	case errors.Is(err, gitops.ErrNoPin):
		if s.cfg.Policy != nil {
			p = s.cfg.Policy()
		}
	default:
		d.Error = "reading the pin: " + err.Error()
	}
	if p != nil {
		d.Source, d.Revision, d.Mode, d.Default, d.Rules = p.Source, p.Revision, p.Mode, p.Default, p.Rules
	}
	plan, err := gitops.ReadPlanFile(d.PlanPath)
	switch {
	case err == nil:
		var buf bytes.Buffer
		if err := plan.WriteText(&buf); err != nil {
			d.PlanErr = "rendering the saved plan: " + err.Error()
		}
		d.Plan = buf.String()
	case errors.Is(err, fs.ErrNotExist):
	default:
		d.PlanErr = "reading the saved plan: " + err.Error()
	}
	hist, err := gitops.History(s.cfg.Home)
	switch {
	case err == nil:
		slices.Reverse(hist)
		if len(hist) > maxHistory {
			hist = hist[:maxHistory]
		}
		d.History = hist
	case !errors.Is(err, fs.ErrNotExist):
		d.HistoryErr = "reading the policy history: " + err.Error()
	}
	rep, err := audit.Verify(audit.Dir(s.cfg.Home))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.ChainErr = "checking the audit log: " + err.Error()
		}
	} else {
		d.Chain = &rep
	}
	s.render(w, http.StatusOK, "policy", s.page(sess, "Policy", "policy", d))
}
