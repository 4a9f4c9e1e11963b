package dashboard

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/killswitch"
)

type killData struct {
	State       killswitch.State
	Gateways    []admin.Status
	Unreachable []admin.Unreachable
	// Connectors are suggestions for the connector scope.
	Connectors []string
	// Form holds what was typed, when a submission is shown again.
	Kind, Name, Reason string
}

func (s *Server) killData(r *http.Request) killData {
	d := killData{Connectors: []string{"github", "npm", "mcp", "http"}}
	st, err := killswitch.Read(s.cfg.Home)
	if err != nil {
		// The gateways refuse everything while the file is unreadable
		// (fail closed); say so rather than show it as off.
		st = killswitch.State{Broken: err.Error()}
	}
	d.State = st
	ctx, cancel := s.timeout(r.Context())
	defer cancel()
	if cs, err := admin.Clients(s.cfg.Home); err == nil {
		for _, c := range cs {
			st, err := c.Status(ctx)
			c.Close()
			if err != nil {
				d.Unreachable = append(d.Unreachable, admin.Unreachable{Socket: c.Path, Error: err.Error()})
				continue
			}
			d.Gateways = append(d.Gateways, st)
		}
	}
	return d
}

func (s *Server) handleKillSwitch(w http.ResponseWriter, r *http.Request, sess *session) {
	s.render(w, http.StatusOK, "killswitch", s.page(sess, "Kill switch", "killswitch", s.killData(r)))
}

// confirmed reports whether the form's confirmation box was ticked: a
// server-side step, so that no script is needed to confirm.
func confirmed(r *http.Request) bool { return r.PostFormValue("confirm") == "yes" }

func (s *Server) handleActivate(w http.ResponseWriter, r *http.Request, sess *session) {
	kind, name, reason := r.PostFormValue("scope"), r.PostFormValue("name"), strings.TrimSpace(r.PostFormValue("reason"))
	fail := func(msg string) {
		d := s.killData(r)
		d.Kind, d.Name, d.Reason = kind, name, reason
		v := s.page(sess, "Kill switch", "killswitch", d)
		v.Error = msg
		s.render(w, http.StatusBadRequest, "killswitch", v)
	}
	scope, err := parseScope(kind, name)
	if err != nil {
		fail(err.Error())
		return
	}
	if len(reason) > maxReason || strings.ContainsFunc(reason, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		fail(fmt.Sprintf("The reason must be one line of at most %d bytes.", maxReason))
		return
	}
	if !confirmed(r) {
		fail("Tick the confirmation box: this refuses traffic at once.")
		return
	}
	ctx, cancel := s.timeout(r.Context())
	defer cancel()
	_, err = killswitch.Activate(ctx, s.cfg.Home, killswitch.Switch{Scope: scope, Reason: reason, By: s.cfg.Approver, At: time.Now().UTC()})
	if err != nil {
		// The file is written before the record: report both outcomes.
		s.auth.setFlash(sess, "Activating the kill switch ("+scope.String()+"): "+err.Error(), true)
	} else {
		n, bad := admin.ReloadAll(ctx, s.cfg.Home)
		s.auth.setFlash(sess, fmt.Sprintf("Kill switch on for %s; %d running gateway(s) reloaded it%s.", scope, n, unreached(bad)), false)
	}
	http.Redirect(w, r, "/killswitch", http.StatusSeeOther)
}

func (s *Server) handleDeactivate(w http.ResponseWriter, r *http.Request, sess *session) {
	kind, name, reason := r.PostFormValue("scope"), r.PostFormValue("name"), strings.TrimSpace(r.PostFormValue("reason"))
	scope, err := parseScope(kind, name)
	if err == nil && (len(reason) > maxReason || strings.ContainsFunc(reason, func(r rune) bool { return r < 0x20 || r == 0x7f })) {
		err = fmt.Errorf("the reason must be one line of at most %d bytes", maxReason)
	}
	if err == nil && !confirmed(r) {
		err = fmt.Errorf("tick the confirmation box to deactivate %s", scope)
	}
	if err != nil {
		s.auth.setFlash(sess, "Not deactivated: "+err.Error()+".", true)
		http.Redirect(w, r, "/killswitch", http.StatusSeeOther)
		return
	}
	ctx, cancel := s.timeout(r.Context())
	defer cancel()
	off, _, err := killswitch.Deactivate(ctx, s.cfg.Home, scope, s.cfg.Approver, reason)
	switch {
	case err != nil:
		s.auth.setFlash(sess, "Deactivating the kill switch: "+err.Error(), true)
	case len(off) == 0:
		s.auth.setFlash(sess, "No kill switch was on for "+scope.String()+".", false)
	default:
		n, bad := admin.ReloadAll(ctx, s.cfg.Home)
		names := make([]string, len(off))
		for i, o := range off {
			names[i] = o.Scope.String()
		}
		s.auth.setFlash(sess, fmt.Sprintf("Kill switch off for %s; %d running gateway(s) reloaded it%s.", strings.Join(names, ", "), n, unreached(bad)), false)
	}
	http.Redirect(w, r, "/killswitch", http.StatusSeeOther)
}

func unreached(bad []admin.Unreachable) string {
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d did not answer and will read it within their poll interval)", len(bad))
}
