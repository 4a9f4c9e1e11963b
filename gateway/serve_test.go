package gateway

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tameflare/tf/agents"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/killswitch"
	"github.com/tameflare/tf/testdata"
)

// sharedFixture is a shared gateway (tf serve) with one agent, ci, in
// front of an upstream whose /slow?ms=N answers after N milliseconds.
type sharedFixture struct {
	g        *Gateway
	home     string
	ci       *http.Client
	inFlight atomic.Int64
}

func startShared(t *testing.T, src string) *sharedFixture {
	t.Helper()
	f := &sharedFixture{home: t.TempDir()}
	cert, caPEM, err := testdata.ServerCert("example.test")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "done")
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	tok, err := agents.Add(f.home, "ci", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.g, err = Start(Config{Name: "shared", Home: f.home, Policy: policy(t, src), Agents: true,
		Upstreams:   map[string]string{"example.test": strings.TrimPrefix(up.URL, "https://")},
		UpstreamCAs: [][]byte{caPEM}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.g.Close() })
	f.ci = f.client(t, f.g.AgentProxyURL(f.g.Addr(), "ci", tok))
	return f
}

func (f *sharedFixture) client(t *testing.T, proxy string) *http.Client {
	tr, err := testdata.ProxyTransport(proxy, f.g.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func (f *sharedFixture) stopped(t *testing.T) map[string]any {
	t.Helper()
	var d map[string]any
	audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindEvent}, func(r *audit.Record) error {
		if r.Event == audit.EventGatewayStopped {
			d = r.Details
		}
		return nil
	})
	return d
}

// Rules see the gateway and the agent of an action when they decide it,
// and the session token of tf run is no credential of a shared gateway.
func TestSharedGatewayDecidesByAgent(t *testing.T) {
	f := startShared(t, `version: 1
default: allow
rules:
  - name: not-ci-here
    actions: ["http.*"]
    when: action.gateway == "shared" && action.agent == "ci" && request.path == "/ci-not"
    decision: deny
    reason: ci may not.
`)
	res, err := f.ci.Get("https://example.test/ci-not")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("ci's refused path: %d", res.StatusCode)
	}
	res, err = f.ci.Get("https://example.test/fine")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("ci's allowed path: %d", res.StatusCode)
	}
	if _, err := f.client(t, f.g.ProxyURL()).Get("https://example.test/fine"); err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
		t.Errorf("the session token on a shared gateway: %v", err)
	}
	f.g.Close()
	var agentsSeen []string
	audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		agentsSeen = append(agentsSeen, r.Action.Gateway+"/"+r.Action.Agent+":"+string(r.Decision.Effect))
		return nil
	})
	if strings.Join(agentsSeen, ",") != "shared/ci:deny,shared/ci:allow" {
		t.Errorf("decisions %v", agentsSeen)
	}
}

// Shutdown lets an exchange in flight finish within the drain, and then
// accepts nothing more.
func TestShutdownDrains(t *testing.T) {
	f := startShared(t, "version: 1\ndefault: allow\n")
	got := make(chan string, 1)
	go func() {
		res, err := f.ci.Get("https://example.test/slow?ms=700")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- strconv.Itoa(res.StatusCode) + " " + string(b)
	}()
	for f.inFlight.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	addr := f.g.Addr()
	if err := f.g.Shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r != "200 done" {
		t.Errorf("the exchange in flight got %q, want 200 done", r)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the gateway still accepts connections after Shutdown")
	}
	if d := f.stopped(t); d["reason"] != "shutdown" || d["drained"] != true {
		t.Errorf("gateway.stopped details %v", d)
	}
}

// Shutdown cuts what outlasts the drain, and says so.
func TestShutdownCutsAfterDrain(t *testing.T) {
	f := startShared(t, "version: 1\ndefault: allow\n")
	got := make(chan error, 1)
	go func() {
		res, err := f.ci.Get("https://example.test/slow?ms=15000")
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		got <- err
	}()
	for f.inFlight.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Now()
	if err := f.g.Shutdown(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a 300ms drain", d)
	}
	select {
	case err := <-got:
		if err == nil {
			t.Error("the long exchange was not cut")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long exchange is still running")
	}
	if d := f.stopped(t); d["drained"] != false {
		t.Errorf("gateway.stopped details %v", d)
	}
}

func TestCheckServeListen(t *testing.T) {
	for _, c := range []struct {
		addr string
		tls  bool
		ok   bool
	}{
		{"127.0.0.1:3128", false, true}, {"[::1]:3128", false, true}, {"localhost:3128", false, true},
		{"0.0.0.0:3128", false, false}, {":3128", false, false}, {"10.0.0.5:3128", false, false}, {"tf.example:3128", false, false},
		{"0.0.0.0:3128", true, true}, {"", true, false}, {"nohostport", true, false},
	} {
		if err := CheckServeListen(c.addr, c.tls); (err == nil) != c.ok {
			t.Errorf("CheckServeListen(%q, %v) = %v", c.addr, c.tls, err)
		}
	}
}

// A kill switch for one agent cuts that agent's exchange in flight; one
// for another agent leaves it alone.
func TestAgentKillSwitchCutsInFlight(t *testing.T) {
	f := startShared(t, "version: 1\ndefault: allow\n")
	got := make(chan error, 1)
	go func() {
		// Long enough that a busy machine's slow watch of the switch
		// cannot let it finish first.
		res, err := f.ci.Get("https://example.test/slow?ms=20000")
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
			if err == nil && res.StatusCode != http.StatusOK {
				err = errors.New(res.Status)
			}
		}
		got <- err
	}()
	for f.inFlight.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	activate(t, f.home, killswitch.Scope{Agent: "someone-else"})
	select {
	case err := <-got:
		t.Fatalf("another agent's switch ended ci's exchange: %v", err)
	case <-time.After(time.Second):
	}
	activate(t, f.home, killswitch.Scope{Agent: "ci"})
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("ci's exchange finished normally under its kill switch")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ci's kill switch did not cut its exchange")
	}
}

func TestServeConfigSection(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) error {
		if err := os.WriteFile(ConfigPath(dir), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfigFile(ConfigPath(dir))
		return err
	}
	if err := write("serve:\n  listen: 0.0.0.0:3128\n  tls_names: [tf.example]\n  drain: 5s\n"); err != nil {
		t.Fatal(err)
	}
	c, _ := LoadConfigFile(ConfigPath(dir))
	if c.Serve.Listen != "0.0.0.0:3128" || c.Serve.TLSNames[0] != "tf.example" || c.Serve.Drain != 5*time.Second {
		t.Fatalf("serve section %+v", c.Serve)
	}
	for _, bad := range []string{"serve:\n  listn: x\n", "serve:\n  drain: -1s\n", "serve:\n  tls_cert: a.pem\n"} {
		if err := write(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A shared gateway's status says what its governance rests on, not that
// an agent of its own runs outside the sandbox; a tf run gateway without
// the sandbox says that.
func TestSharedGatewayStatusNote(t *testing.T) {
	f := startShared(t, "version: 1\ndefault: allow\n")
	st := f.g.Status()
	notes := strings.Join(st.Notes, "\n")
	if !st.Shared || !strings.Contains(notes, SharedGateway) || strings.Contains(notes, NotIsolated) {
		t.Errorf("shared gateway: shared %v, notes %q", st.Shared, notes)
	}
	one := start(t, policy(t, "version: 1\ndefault: allow\n"), nil)
	st = one.g.Status()
	if notes := strings.Join(st.Notes, "\n"); st.Shared || !strings.Contains(notes, NotIsolated) {
		t.Errorf("tf run gateway without the sandbox: shared %v, notes %q", st.Shared, notes)
	}
}
