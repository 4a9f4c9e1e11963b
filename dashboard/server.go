package dashboard

import (
	"bytes"
	"context"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/killswitch"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages are the templates that each render a whole page in the layout.
var pages = []string{"traffic", "record", "approvals", "killswitch", "policy", "login"}

// parseTemplates builds one template set per page, each with the layout
// and the shared fragments.
func parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/fragments.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{"": base}
	for _, p := range pages {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if out[p], err = t.ParseFS(templateFS, "templates/"+p+".html"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var funcs = template.FuncMap{
	"clock": clock,
	"stamp": stamp,
	// short is a commit hash's first 12 digits.
	"short": func(h string) string {
		if len(h) > 12 {
			return h[:12]
		}
		return h
	},
	"until": func(t time.Time) string {
		d := time.Until(t).Round(time.Second)
		if d <= 0 {
			return "now"
		}
		return "in " + d.String()
	},
}

func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("15:04:05")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

// view is what every page's layout sees.
type view struct {
	Title string
	Nav   string
	CSRF  string
	Flash string
	Error string
	// Kill is the kill switch state, for the banner on every page.
	Kill killswitch.State
	// Unisolated names the running gateways whose agent runs outside
	// tf's sandbox, for the banner on every page.
	Unisolated []string
	Data       any
}

// render writes page with data, or a plain 500 when the template fails
// (it is written to a buffer first, so a failure never leaves half a page).
func (s *Server) render(w http.ResponseWriter, status int, page string, v view) {
	var buf bytes.Buffer
	if err := s.tmpl[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fragment renders a named template alone (for live updates).
func (s *Server) fragment(name string, data any) (string, error) {
	var buf bytes.Buffer
	if err := s.tmpl[""].ExecuteTemplate(&buf, name, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// page builds the view of an authenticated page: the CSRF token, the
// flash message and the kill switch banner.
func (s *Server) page(sess *session, title, nav string, data any) view {
	v := view{Title: title, Nav: nav, CSRF: sess.csrf, Data: data}
	v.Flash, v.Error = s.auth.popFlash(sess)
	st, err := killswitch.Read(s.cfg.Home)
	if err != nil {
		st = killswitch.State{Broken: err.Error()}
	}
	v.Kill = st
	v.Unisolated = s.unisolated()
	return v
}

// unisolated names the running gateways that say their agent runs outside
// the sandbox: governance there is advisory, and every page says so. A
// shared gateway's agents run elsewhere by design; its status notes say
// what its governance rests on.
func (s *Server) unisolated() []string {
	cs, err := admin.Clients(s.cfg.Home)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	var out []string
	for _, c := range cs {
		if st, err := c.Status(ctx); err == nil && !st.Isolated && !st.Shared {
			out = append(out, st.Name)
		}
		c.Close()
	}
	return out
}

type authedFunc func(http.ResponseWriter, *http.Request, *session)

// handler routes every request through the Host and Origin checks, then
// the session check, then for POST the CSRF check.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.handleLogin)
	mux.HandleFunc("GET /{$}", s.authed(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/traffic", http.StatusSeeOther)
	}))
	mux.HandleFunc("GET /traffic", s.authed(s.handleTraffic))
	mux.HandleFunc("GET /traffic/events", s.authed(s.handleTrafficEvents))
	mux.HandleFunc("GET /traffic/{seq}", s.authed(s.handleRecord))
	mux.HandleFunc("GET /approvals", s.authed(s.handleApprovals))
	mux.HandleFunc("GET /approvals/events", s.authed(s.handleApprovalEvents))
	mux.HandleFunc("POST /approvals/{id}", s.authed(s.handleAnswer))
	mux.HandleFunc("GET /killswitch", s.authed(s.handleKillSwitch))
	mux.HandleFunc("POST /killswitch/activate", s.authed(s.handleActivate))
	mux.HandleFunc("POST /killswitch/deactivate", s.authed(s.handleDeactivate))
	mux.HandleFunc("GET /policy", s.authed(s.handlePolicy))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer Chrome sends
		// "Origin: null" on form posts, and the Origin check needs it.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		// A page of another site that resolves its own name to 127.0.0.1
		// (DNS rebinding) sends its own name as Host: refuse it.
		if r.Host != s.addr {
			http.Error(w, "this dashboard answers only at "+s.origin, http.StatusMisdirectedRequest)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.sameOrigin(r) {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether a state-changing request comes from the
// dashboard's own pages: a browser sends Origin (or at least
// Sec-Fetch-Site) with every POST; a client that sends neither still needs
// the CSRF token, which only the pages know.
func (s *Server) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == s.origin
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	return true
}

// authed wraps h with the session check, and for POST the CSRF check.
func (s *Server) authed(h authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.auth.session(r, time.Now())
		if !ok {
			s.unauthorized(w, r)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			tok := r.Header.Get(csrfHeader)
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if !sess.validCSRF(tok) {
				http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, sess)
	}
}

// maxForm bounds a form body.
const maxForm = 16 << 10

// unauthorized answers a request without a session: a page that says how
// to get one, or a plain 401 for scripts and streams.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || strings.HasSuffix(r.URL.Path, "/events") {
		http.Error(w, "no dashboard session: open the link tf printed", http.StatusUnauthorized)
		return
	}
	s.render(w, http.StatusUnauthorized, "login", view{Title: "Sign in"})
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		// A HEAD (a link checker, a preview) must not use up the token.
		http.Error(w, "open the link in a browser", http.StatusMethodNotAllowed)
		return
	}
	id, ok, err := s.auth.login(r.URL.Query().Get("token"), time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !ok {
		s.render(w, http.StatusUnauthorized, "login", view{Title: "Sign in", Error: "This link was used already or is not one tf printed."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.cfg.SessionTTL.Seconds())})
	// A clean URL: the used token does not stay in the address bar or the
	// history.
	http.Redirect(w, r, "/traffic", http.StatusSeeOther)
}

// timeout bounds one call to the gateways' admin sockets.
func (s *Server) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*time.Second)
}
