package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/approval"
)

// maxReason bounds a reason typed into a form.
const maxReason = 1000

// pendingItem is one pending approval as the page shows it.
type pendingItem struct {
	approval.Request
	Params   string
	Resource string
}

type approvalsData struct {
	CSRF        string
	Pending     []pendingItem
	Unreachable []admin.Unreachable
	Error       string
}

// approvals reads the pending approvals of every gateway.
func (s *Server) approvals(r *http.Request, csrf string) approvalsData {
	ctx, cancel := s.timeout(r.Context())
	defer cancel()
	d := approvalsData{CSRF: csrf}
	pending, bad, err := admin.Pending(ctx, s.cfg.Home)
	if err != nil {
		d.Error = "listing gateways: " + err.Error()
	}
	d.Unreachable = bad
	for _, p := range pending {
		it := pendingItem{Request: p.Request}
		if len(p.Params) > 0 {
			b, _ := json.MarshalIndent(p.Params, "", "  ")
			it.Params = string(b)
		}
		var parts []string
		for k, v := range p.Resource {
			parts = append(parts, k+"="+v)
		}
		slices.Sort(parts)
		it.Resource = strings.Join(parts, " ")
		d.Pending = append(d.Pending, it)
	}
	return d
}

// fingerprint changes when the list the page shows would.
func (d approvalsData) fingerprint() string {
	var b strings.Builder
	for _, p := range d.Pending {
		b.WriteString(p.ID + " ")
	}
	for _, u := range d.Unreachable {
		b.WriteString("!" + u.Socket + " ")
	}
	b.WriteString(d.Error)
	return b.String()
}

func (s *Server) handleApprovals(w http.ResponseWriter, r *http.Request, sess *session) {
	s.render(w, http.StatusOK, "approvals", s.page(sess, "Approvals", "approvals", s.approvals(r, sess.csrf)))
}

// handleApprovalEvents polls the gateways and pushes the list whenever it
// changes, rendered by the same template as the page.
func (s *Server) handleApprovalEvents(w http.ResponseWriter, r *http.Request, sess *session) {
	out, err := newSSE(w)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	last := "\x00" // differs from every fingerprint: the first poll is sent
	for {
		d := s.approvals(r, sess.csrf)
		if fp := d.fingerprint(); fp != last {
			html, err := s.fragment("approval-list", d)
			if err != nil {
				_ = out.send("failure", "", "rendering approvals: "+err.Error())
				return
			}
			if err := out.send("approvals", "", html); err != nil {
				return
			}
			last = fp
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// handleAnswer approves or denies one pending approval at whichever
// gateway holds it; the held request goes on or fails at once.
func (s *Server) handleAnswer(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	a := approval.Answer{Approver: s.cfg.Approver, Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	switch r.PostFormValue("decision") {
	case "approve":
		a.Approve = true
	case "session":
		a.Approve, a.Session = true, true
	case "deny":
	default:
		s.auth.setFlash(sess, "Choose approve, approve for this session or deny.", true)
		http.Redirect(w, r, "/approvals", http.StatusSeeOther)
		return
	}
	if len(a.Reason) > maxReason {
		s.auth.setFlash(sess, fmt.Sprintf("The reason is longer than %d bytes.", maxReason), true)
		http.Redirect(w, r, "/approvals", http.StatusSeeOther)
		return
	}
	if strings.ContainsFunc(a.Reason, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }) {
		s.auth.setFlash(sess, "The reason holds control characters.", true)
		http.Redirect(w, r, "/approvals", http.StatusSeeOther)
		return
	}
	ctx, cancel := s.timeout(r.Context())
	defer cancel()
	req, err := admin.AnswerAny(ctx, s.cfg.Home, id, a)
	switch {
	case errors.Is(err, approval.ErrNotFound):
		s.auth.setFlash(sess, fmt.Sprintf("%s is no longer pending (answered elsewhere, expired or cancelled).", id), true)
	case err != nil:
		s.auth.setFlash(sess, "Answering "+id+": "+err.Error(), true)
	case a.Session:
		s.auth.setFlash(sess, fmt.Sprintf("Approved %s (%s) and every same request of gateway %s for this session.", req.ID, req.Action, req.Gateway), false)
	case a.Approve:
		s.auth.setFlash(sess, fmt.Sprintf("Approved %s (%s).", req.ID, req.Action), false)
	default:
		s.auth.setFlash(sess, fmt.Sprintf("Denied %s (%s).", req.ID, req.Action), false)
	}
	http.Redirect(w, r, "/approvals", http.StatusSeeOther)
}
