// Package admin is each gateway's operator API: JSON over HTTP on a unix
// socket in $TF_HOME/gateways, and the client tf's commands use.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/killswitch"
)

// ErrNameTaken is returned when a running gateway already has the name.
var ErrNameTaken = errors.New("gateway name taken")

// Dir is where the gateways' sockets live in a state directory.
func Dir(home string) string { return filepath.Join(home, "gateways") }

// SocketPath is the admin socket of the gateway name.
func SocketPath(home, name string) string { return filepath.Join(Dir(home), name+".sock") }

// ValidName reports whether a gateway name can name a socket file.
func ValidName(name string) error {
	if name == "" || len(name) > 64 || name == "." || name == ".." {
		return fmt.Errorf("gateway name %q: want 1 to 64 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("gateway name %q: use letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// A Listener is the admin socket of one gateway, with the lock that makes
// the name its own.
type Listener struct {
	net.Listener
	path     string
	shortDir string // set when the socket lives elsewhere, behind a symlink
	lock     *flock.Flock
}

// Listen claims the name in home and listens on its socket (mode 0600 in a
// 0700 directory). It refuses when a live gateway holds the name and
// removes a stale socket left by one that died.
func Listen(home, name string) (*Listener, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	dir := Dir(home)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("securing %s: %w", dir, err)
	}
	path := SocketPath(home, name)
	lock := flock.New(strings.TrimSuffix(path, ".sock")+".lock", flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	// The lock lives as long as the process holds it: a gateway that died
	// leaves its socket behind but not its lock.
	switch ok, err := lock.TryLock(); {
	case err != nil:
		return nil, fmt.Errorf("locking gateway name: %w", err)
	case !ok:
		return nil, fmt.Errorf("%w: another running gateway is named %q (tf run --name picks another)", ErrNameTaken, name)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("removing stale socket: %w", err)
	}
	l := &Listener{path: path, lock: lock}
	bind := path
	if len(path) > maxSocketPath {
		// Too long for sun_path: bind in a private short directory and
		// leave a symlink where clients look; they resolve it (Dial).
		var err error
		if l.shortDir, err = os.MkdirTemp("", "tf-admin-"); err != nil {
			lock.Close()
			return nil, fmt.Errorf("creating a short socket directory: %w", err)
		}
		bind = filepath.Join(l.shortDir, "s")
	}
	ln, err := listenPrivate(bind)
	if err == nil && bind != path {
		err = os.Symlink(bind, path)
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		l.cleanup()
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	l.Listener = ln
	if err := os.Chmod(bind, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("securing %s: %w", path, err)
	}
	return l, nil
}

// maxSocketPath is the longest path a unix socket address holds on every
// supported system (sun_path is 104 bytes on the BSDs, 108 on Linux).
const maxSocketPath = 100

func (l *Listener) cleanup() {
	if l.shortDir != "" {
		os.Remove(l.path) // the symlink
		os.RemoveAll(l.shortDir)
	}
	l.lock.Close()
}

// Path is the socket's path.
func (l *Listener) Path() string { return l.path }

// Close stops listening, removes the socket and releases the name.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.cleanup()
	return err
}

// Sockets lists the admin sockets in home, by name.
func Sockets(home string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(Dir(home), "*.sock"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	return paths, nil
}

// Status describes a running gateway.
type Status struct {
	Name     string           `json:"name"`
	PID      int              `json:"pid"`
	Proxy    string           `json:"proxy"`
	Started  time.Time        `json:"started"`
	Revision string           `json:"revision,omitempty"`
	Mode     string           `json:"mode"`
	Pending  int              `json:"pending"`
	Kill     killswitch.State `json:"kill_switch"`
	// Isolated says whether the agent runs in tf's sandbox; without it,
	// governance is advisory: the agent could bypass tf.
	Isolated bool `json:"isolated"`
	// Shared says the gateway serves agents that run elsewhere (tf
	// serve): no sandbox of tf's applies to them, and governance holds
	// where their network sends all traffic through the gateway.
	Shared bool `json:"shared,omitempty"`
	// Slack is the address of the Slack interactivity endpoint this
	// gateway serves, if any.
	Slack string `json:"slack,omitempty"`
	// Notes are operator-facing remarks: a webhook failing, a Slack
	// listener not started.
	Notes []string `json:"notes,omitempty"`
	// Tokens sums the token usage of the session's model calls so far.
	Tokens Tokens `json:"tokens"`
}

// Tokens sums the usage of a gateway's model calls: Calls of them, Unknown
// of which reported no usage tf could read.
type Tokens struct {
	Calls      int64 `json:"calls"`
	Unknown    int64 `json:"unknown,omitempty"`
	Input      int64 `json:"input"`
	Output     int64 `json:"output"`
	CacheRead  int64 `json:"cache_read,omitempty"`
	CacheWrite int64 `json:"cache_write,omitempty"`
}

// A Backend is what the admin API operates: a gateway.
type Backend interface {
	Status() Status
	Approvals() []approval.Request
	Answer(id string, a approval.Answer) (approval.Request, error)
	ReloadKillSwitch() killswitch.State
}

// AnswerBody is the body of POST /v1/approvals/{id}.
type AnswerBody struct {
	Decision string `json:"decision"` // approve or deny
	Session  bool   `json:"session,omitempty"`
	Approver string `json:"approver"`
	Reason   string `json:"reason,omitempty"`
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// Handler serves b's admin API:
//
//	GET  /v1/status
//	GET  /v1/approvals
//	POST /v1/approvals/{id}     AnswerBody
//	POST /v1/killswitch/reload
//
// refuse, if set, is asked for each request (the governed process must
// not use this API) and answers 403 with its error.
func Handler(b Backend, refuse func(*http.Request) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, b.Status()) })
	mux.HandleFunc("GET /v1/approvals", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, b.Approvals()) })
	mux.HandleFunc("POST /v1/approvals/{id}", func(w http.ResponseWriter, r *http.Request) {
		var body AnswerBody
		dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			replyErr(w, http.StatusBadRequest, fmt.Errorf("decoding answer: %w", err))
			return
		}
		a := approval.Answer{Session: body.Session, Approver: body.Approver, Reason: body.Reason}
		switch body.Decision {
		case "approve":
			a.Approve = true
		case "deny":
		default:
			replyErr(w, http.StatusBadRequest, fmt.Errorf("decision %q: want approve or deny", body.Decision))
			return
		}
		req, err := b.Answer(r.PathValue("id"), a)
		switch {
		case errors.Is(err, approval.ErrNotFound):
			replyErr(w, http.StatusNotFound, err)
		case err != nil:
			replyErr(w, http.StatusBadRequest, err)
		default:
			reply(w, http.StatusOK, req)
		}
	})
	mux.HandleFunc("POST /v1/killswitch/reload", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, b.ReloadKillSwitch())
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse != nil {
			if err := refuse(r); err != nil {
				replyErr(w, http.StatusForbidden, err)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func replyErr(w http.ResponseWriter, status int, err error) {
	reply(w, status, map[string]string{"error": err.Error()})
}

// A Client talks to one gateway's admin socket.
type Client struct {
	Path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	d := net.Dialer{Timeout: 2 * time.Second}
	return &Client{Path: path, hc: &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", dialPath(path))
		},
	}}}
}

// dialPath resolves a socket path too long to dial to the short one its
// symlink names.
func dialPath(path string) string {
	if len(path) <= maxSocketPath {
		return path
	}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return p
	}
	return path
}

// Close releases the client's connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Name is the gateway name the socket path carries.
func (c *Client) Name() string { return strings.TrimSuffix(filepath.Base(c.Path), ".sock") }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://gateway"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("gateway %s: %w", c.Name(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("gateway %s: reading reply: %w", c.Name(), err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			err = errors.New(e.Error)
		} else {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w (%v)", approval.ErrNotFound, err)
		}
		return fmt.Errorf("gateway %s: %w", c.Name(), err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("gateway %s: decoding reply: %w", c.Name(), err)
	}
	return nil
}

// Status asks for the gateway's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Approvals lists the gateway's pending approvals.
func (c *Client) Approvals(ctx context.Context) ([]approval.Request, error) {
	var rs []approval.Request
	return rs, c.do(ctx, http.MethodGet, "/v1/approvals", nil, &rs)
}

// Answer approves or denies one pending approval.
func (c *Client) Answer(ctx context.Context, id string, a approval.Answer) (approval.Request, error) {
	body := AnswerBody{Decision: "deny", Session: a.Session, Approver: a.Approver, Reason: a.Reason}
	if a.Approve {
		body.Decision = "approve"
	}
	var r approval.Request
	return r, c.do(ctx, http.MethodPost, "/v1/approvals/"+id, body, &r)
}

// ReloadKillSwitch makes the gateway read the kill switch file now.
func (c *Client) ReloadKillSwitch(ctx context.Context) (killswitch.State, error) {
	var s killswitch.State
	return s, c.do(ctx, http.MethodPost, "/v1/killswitch/reload", struct{}{}, &s)
}

// Clients returns a client for each socket in home.
func Clients(home string) ([]*Client, error) {
	paths, err := Sockets(home)
	if err != nil {
		return nil, err
	}
	cs := make([]*Client, len(paths))
	for i, p := range paths {
		cs[i] = NewClient(p)
	}
	return cs, nil
}

// AnswerAny answers id at whichever gateway of home holds it.
func AnswerAny(ctx context.Context, home, id string, a approval.Answer) (approval.Request, error) {
	cs, err := Clients(home)
	if err != nil {
		return approval.Request{}, err
	}
	var errs []error
	for _, c := range cs {
		r, err := c.Answer(ctx, id, a)
		c.Close()
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, approval.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return approval.Request{}, fmt.Errorf("approval %s: %w", id, errors.Join(errs...))
	}
	return approval.Request{}, fmt.Errorf("%w: %s (answered, expired, or no running gateway holds it)", approval.ErrNotFound, id)
}
