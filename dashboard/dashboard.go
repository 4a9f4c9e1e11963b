// Package dashboard serves tf's operator pages on loopback: live traffic, approvals, the kill switch and the policy.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"html"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/rules"
)

// Config describes a dashboard to start.
type Config struct {
	// Home is tf's state directory ($TF_HOME): the audit log, the kill
	// switch, the pin and the gateways' admin sockets live there.
	Home string
	// Listen is the address to serve on; empty means 127.0.0.1 on a
	// random port. It must be a loopback address.
	Listen string
	// Approver names the person answering approvals and switching the kill
	// switch; empty means the OS user followed by " (dashboard)".
	Approver string
	// Policy, if set, returns the policy of the gateway the dashboard runs
	// beside (tf run --dashboard); the Policy page shows it when no policy
	// is pinned.
	Policy func() *rules.Policy
	// Poll is how often the approvals of every gateway are read for the
	// live Approvals page; zero means one second.
	Poll time.Duration
	// SessionTTL bounds a browser session; zero means 12 hours.
	SessionTTL time.Duration
}

// A Server is a running dashboard.
type Server struct {
	cfg      Config
	ln       net.Listener
	srv      *http.Server
	addr     string // host:port as browsers must send it in Host
	origin   string // http://host:port
	tmpl     map[string]*template.Template
	auth     *authenticator
	ctx      context.Context // ends when the server closes, ending live streams
	cancel   context.CancelFunc
	served   chan error
	closing  sync.Once
	closeErr error
	loginURL string
	// requests counts the requests that reached the handler: the proxy
	// test proves that a governed client's request never does.
	requests atomic.Int64
}

// Start listens on loopback and serves the dashboard until Close. The
// first login URL is ready in URL.
func Start(cfg Config) (*Server, error) {
	if cfg.Home == "" {
		return nil, errors.New("dashboard: no state directory")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Approver == "" {
		cfg.Approver = admin.Operator() + " (dashboard)"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("dashboard address %q: %w", cfg.Listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		// The dashboard answers approvals and stops traffic: it never
		// listens where another machine could reach it.
		return nil, fmt.Errorf("dashboard address %q: want a loopback IP address", cfg.Listen)
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, fmt.Errorf("dashboard: parsing templates: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listening: %w", err)
	}
	s := &Server{cfg: cfg, ln: ln, tmpl: tmpl, served: make(chan error, 1)}
	s.addr = ln.Addr().String()
	s.origin = "http://" + s.addr
	s.auth = newAuthenticator(cfg.SessionTTL)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	if s.loginURL, err = s.NewLoginURL(); err != nil {
		ln.Close()
		return nil, err
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the dashboard listens on.
func (s *Server) Addr() string { return s.addr }

// URL is the first login URL: it carries a one-time token that a browser
// exchanges for a session.
func (s *Server) URL() string { return s.loginURL }

// NewLoginURL mints another one-time login URL.
func (s *Server) NewLoginURL() (string, error) {
	tok, err := s.auth.newLoginToken()
	if err != nil {
		return "", err
	}
	return s.origin + "/login?token=" + tok, nil
}

// Close stops the dashboard: live streams end, connections close.
func (s *Server) Close() error {
	s.closing.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// Open asks the desktop to open the first login link in a browser
// (xdg-open, or open on macOS) without putting its token on a command
// line, where any process can read it (/proc/PID/cmdline): the browser is
// given a page in $TF_HOME (0600, in a 0700 directory) that forwards to
// the link, removed once the browser has had time to read it. It returns
// an error when there is no way to open a browser; callers print the link
// anyway, so a machine without one is not a failure.
func (s *Server) Open(ctx context.Context) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("opening a browser: %w", err)
	}
	page, err := s.writeLaunchPage()
	if err != nil {
		return fmt.Errorf("opening a browser: %w", err)
	}
	cmd := exec.CommandContext(ctx, path, (&url.URL{Scheme: "file", Path: page}).String())
	if err := cmd.Start(); err != nil {
		os.Remove(page)
		return fmt.Errorf("opening a browser: %w", err)
	}
	// The opener returns once it has handed the page over; reap it, and
	// remove the page when the browser has had time to load it.
	go func() {
		_ = cmd.Wait()
		select {
		case <-time.After(launchPageTTL):
		case <-s.ctx.Done():
		}
		os.Remove(page)
	}()
	return nil
}

// launchPageTTL is how long the page that carries the login link stays.
var launchPageTTL = 30 * time.Second

// writeLaunchPage writes the page that forwards a browser to the login
// link, and returns its path.
func (s *Server) writeLaunchPage() (string, error) {
	dir := filepath.Join(s.cfg.Home, "dashboard")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "open-*.html") // 0600
	if err != nil {
		return "", err
	}
	link := html.EscapeString(s.loginURL)
	_, err = fmt.Fprintf(f, "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=%s\"><title>tf dashboard</title><a href=\"%s\">Open the tf dashboard</a>\n", link, link)
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
