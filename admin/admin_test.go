package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/killswitch"
)

// fake is a Backend with an approval manager and fixed status.
type fake struct {
	name    string
	m       *approval.Manager
	mu      sync.Mutex
	reloads int
}

func (f *fake) Status() Status {
	return Status{Name: f.name, Mode: "enforce", Pending: len(f.m.Pending())}
}
func (f *fake) Approvals() []approval.Request { return f.m.Pending() }
func (f *fake) Answer(id string, a approval.Answer) (approval.Request, error) {
	return f.m.Answer(id, a)
}
func (f *fake) ReloadKillSwitch() killswitch.State {
	f.mu.Lock()
	f.reloads++
	f.mu.Unlock()
	return killswitch.State{Version: 1}
}

// serve runs a fake gateway name on its socket in home.
func serve(t *testing.T, home, name string) *fake {
	t.Helper()
	ln, err := Listen(home, name)
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{name: name, m: approval.NewManager(approval.Options{})}
	srv := &http.Server{Handler: Handler(f, RefuseDescendants), ConnContext: PeerContext}
	go srv.Serve(ln)
	t.Cleanup(func() {
		f.m.Close("test over")
		srv.Close()
		ln.Close()
	})
	return f
}

func hold(f *fake, id, action string) <-chan approval.Result {
	ch := make(chan approval.Result, 1)
	go func() {
		ch <- f.m.Hold(context.Background(), approval.Request{ID: id, Gateway: f.name, Action: action, Rule: "r", Digest: "d"}, time.Minute)
	}()
	return ch
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
	}
}

func TestListenClaimsName(t *testing.T) {
	home := t.TempDir()
	ln, err := Listen(home, "a")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ln.Path()); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v %v", fi.Mode(), err)
	}
	if _, err := Listen(home, "a"); err == nil || !strings.Contains(err.Error(), "another running gateway") {
		t.Fatalf("second claim: %v", err)
	}
	for _, bad := range []string{"", "../x", "a/b", strings.Repeat("x", 65)} {
		if _, err := Listen(home, bad); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	ln.Close()
	if _, err := os.Stat(ln.Path()); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	// A socket left by a dead gateway is replaced.
	if err := os.WriteFile(SocketPath(home, "a"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err = Listen(home, "a")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

func TestAnswerAnyAndPending(t *testing.T) {
	home := t.TempDir()
	a, b := serve(t, home, "a"), serve(t, home, "b")
	ra, rb := hold(a, "ap_1", "x.one"), hold(b, "ap_2", "x.two")
	ctx := context.Background()
	waitFor(t, func() bool { p, _, _ := Pending(ctx, home); return len(p) == 2 })
	if _, err := AnswerAny(ctx, home, "ap_2", approval.Answer{Approve: true, Approver: "alice"}); err != nil {
		t.Fatal(err)
	}
	if r := <-rb; r.Outcome != approval.Approved || r.Approver != "alice" {
		t.Fatalf("b: %+v", r)
	}
	if _, err := AnswerAny(ctx, home, "ap_2", approval.Answer{Approve: true, Approver: "alice"}); !errors.Is(err, approval.ErrNotFound) {
		t.Fatalf("answered twice: %v", err)
	}
	if _, err := AnswerAny(ctx, home, "ap_1", approval.Answer{Approver: ""}); err == nil {
		t.Fatal("answer without approver accepted")
	}
	if _, err := AnswerAny(ctx, home, "ap_1", approval.Answer{Approver: "bob"}); err != nil {
		t.Fatal(err)
	}
	if r := <-ra; r.Outcome != approval.Denied {
		t.Fatalf("a: %+v", r)
	}
	n, bad := ReloadAll(ctx, home)
	if n != 2 || len(bad) != 0 || a.reloads != 1 {
		t.Fatalf("reload: %d %v", n, bad)
	}
	o, err := Collect(ctx, home, 5)
	if err != nil || len(o.Gateways) != 2 || o.KillSwitch.Active() || o.AuditError != "" {
		t.Fatalf("overview %+v %v", o, err)
	}
}

func TestHandlerRejects(t *testing.T) {
	f := &fake{name: "g", m: approval.NewManager(approval.Options{})}
	srv := httptest.NewServer(Handler(f, func(r *http.Request) error {
		if r.Header.Get("X-Agent") != "" {
			return errors.New("no agents")
		}
		return nil
	}))
	defer srv.Close()
	post := func(body string, h string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/approvals/ap_1", strings.NewReader(body))
		if h != "" {
			req.Header.Set("X-Agent", h)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for _, c := range []struct {
		body, agent string
		want        int
	}{
		{`{"decision":"approve","approver":"a"}`, "yes", http.StatusForbidden},
		{`{"decision":"maybe","approver":"a"}`, "", http.StatusBadRequest},
		{`{"decision":"approve","approver":"a","extra":1}`, "", http.StatusBadRequest},
		{`not json`, "", http.StatusBadRequest},
		{`{"decision":"approve","approver":"a"}`, "", http.StatusNotFound},
	} {
		if got := post(c.body, c.agent); got != c.want {
			t.Errorf("%s (agent %q): %d, want %d", c.body, c.agent, got, c.want)
		}
	}
}

func TestWatchPrompts(t *testing.T) {
	home := t.TempDir()
	f := serve(t, home, "w")
	r1 := hold(f, "ap_w1", "github.pr.merge")
	waitFor(t, func() bool { return len(f.m.Pending()) == 1 })
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, home, inR, outW, "alice", 10*time.Millisecond) }()
	out := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := outR.Read(buf)
			if n > 0 {
				out <- string(buf[:n])
			}
			if err != nil {
				close(out)
				return
			}
		}
	}()
	expect := func(want string) {
		t.Helper()
		var seen strings.Builder
		deadline := time.After(5 * time.Second)
		for !strings.Contains(seen.String(), want) {
			select {
			case s := <-out:
				seen.WriteString(s)
			case <-deadline:
				t.Fatalf("output %q lacks %q", seen.String(), want)
			}
		}
	}
	expect("github.pr.merge")
	expect("approve? ")
	io.WriteString(inW, "what\n") // not an answer: asked again
	expect("approve? ")
	io.WriteString(inW, "s\n")
	expect("ap_w1 approved for this session")
	if r := <-r1; r.Outcome != approval.Approved || !r.Session || r.Approver != "alice" {
		t.Fatalf("watch answer: %+v", r)
	}
	r2 := hold(f, "ap_w2", "npm.package.publish")
	expect("npm.package.publish")
	io.WriteString(inW, "n\n")
	expect("ap_w2 denied")
	if r := <-r2; r.Outcome != approval.Denied {
		t.Fatalf("watch denial: %+v", r)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	outW.Close()
}

// A home too deep for a unix socket address still works, through a
// symlink to a short path.
func TestLongHome(t *testing.T) {
	home := t.TempDir() + "/" + strings.Repeat("d", 100)
	f := serve(t, home, "long")
	if len(SocketPath(home, "long")) <= maxSocketPath {
		t.Fatal("home not long enough for the test")
	}
	c := NewClient(SocketPath(home, "long"))
	defer c.Close()
	if st, err := c.Status(context.Background()); err != nil || st.Name != "long" || f.name != "long" {
		t.Fatalf("status %+v %v", st, err)
	}
}
