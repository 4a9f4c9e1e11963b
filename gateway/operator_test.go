package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/killswitch"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

const opPolicySrc = `version: 1
default: allow
rules:
  - name: merges-need-a-human
    actions: [github.pr.merge]
    decision: require_approval
    reason: A person merges pull requests.
    approval: { timeout: %s }
`

// opFixture is a real gateway in front of a TLS stand-in for
// api.github.com whose /sse path streams events until the client goes.
type opFixture struct {
	g       *Gateway
	home    string
	client  *http.Client
	tr      *http.Transport
	hits    atomic.Int64
	sseGone chan struct{}
}

func startOp(t testing.TB, timeout string, mutate func(*Config)) *opFixture {
	t.Helper()
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: fmt.Appendf(nil, opPolicySrc, timeout)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	f := &opFixture{home: t.TempDir(), sseGone: make(chan struct{}, 16)}
	cert, caPEM, err := testdata.ServerCert("api.github.com")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
					break
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					f.sseGone <- struct{}{}
					return
				case <-tick.C:
				}
			}
			f.sseGone <- struct{}{}
			return
		}
		io.WriteString(w, `{"merged":true}`)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	cfg := Config{Name: "op", Home: f.home, Policy: p, Approvals: &approval.Config{},
		Upstreams:   map[string]string{"api.github.com": strings.TrimPrefix(up.URL, "https://")},
		UpstreamCAs: [][]byte{caPEM}}
	if mutate != nil {
		mutate(&cfg)
	}
	if f.g, err = Start(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.g.Close() })
	if f.tr, err = testdata.ProxyTransport(f.g.ProxyURL(), f.g.CA().CertPEM()); err != nil {
		t.Fatal(err)
	}
	f.tr.MaxIdleConnsPerHost = 1000
	t.Cleanup(f.tr.CloseIdleConnections)
	f.client = &http.Client{Transport: f.tr, Timeout: 20 * time.Second}
	return f
}

type reply struct {
	status int
	header http.Header
	body   string
	err    error
}

func (f *opFixture) send(ctx context.Context, method, path string) reply {
	req, _ := http.NewRequestWithContext(ctx, method, "https://api.github.com"+path, strings.NewReader(`{"merge_method":"squash"}`))
	res, err := f.client.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return reply{status: res.StatusCode, header: res.Header, body: string(b), err: err}
}

// sendAsync sends a request in the background; the channel yields its
// reply.
func (f *opFixture) sendAsync(ctx context.Context, method, path string) <-chan reply {
	ch := make(chan reply, 1)
	go func() { ch <- f.send(ctx, method, path) }()
	return ch
}

// waitPending polls the admin API, as tf approvals list does, until n
// approvals are pending.
func (f *opFixture) waitPending(t testing.TB, n int) []approval.Request {
	t.Helper()
	c := admin.NewClient(admin.SocketPath(f.home, f.g.Name()))
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs, err := c.Approvals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == n {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d approvals pending, want %d", len(rs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *opFixture) events(t testing.TB, name string) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	err := audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindEvent}, func(r *audit.Record) error {
		if r.Event == name {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *opFixture) approvalRecords(t testing.TB) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	err := audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		if r.Approval != nil {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wait[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

const mergePR1 = "/repos/acme/app/pulls/1/merge"

func TestHeldRequestApprovedReachesUpstream(t *testing.T) {
	f := startOp(t, "1m", nil)
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	rs := f.waitPending(t, 1)
	r := rs[0]
	if r.ID == "" || r.Action != "github.pr.merge" || r.Gateway != "op" || r.Rule != "merges-need-a-human" || r.Expires.IsZero() || len(r.Digest) != 64 {
		t.Fatalf("pending approval %+v", r)
	}
	if n := f.hits.Load(); n != 0 {
		t.Fatalf("upstream reached %d times while held", n)
	}
	// The path tf approvals approve takes: every socket of the home.
	if _, err := admin.AnswerAny(context.Background(), f.home, r.ID, approval.Answer{Approve: true, Approver: "alice", Reason: "looks good"}); err != nil {
		t.Fatal(err)
	}
	rep := wait(t, got)
	if rep.err != nil || rep.status != http.StatusOK || rep.body != `{"merged":true}` {
		t.Fatalf("approved request: %+v", rep)
	}
	if n := f.hits.Load(); n != 1 {
		t.Fatalf("upstream reached %d times, want 1", n)
	}
	if _, err := admin.AnswerAny(context.Background(), f.home, r.ID, approval.Answer{Approve: true, Approver: "alice"}); err == nil {
		t.Fatal("answering twice succeeded")
	}
	if len(f.events(t, audit.EventApprovalRequested)) != 1 || len(f.events(t, audit.EventApprovalApproved)) != 1 {
		t.Fatal("approval events missing")
	}
	recs := f.approvalRecords(t)
	if len(recs) != 1 || recs[0].Approval.Approver != "alice" || recs[0].Approval.Outcome != "approved" ||
		recs[0].Decision.Effect != rules.Allow || recs[0].Approval.ID != r.ID || !strings.Contains(recs[0].Approval.Reason, "looks good") {
		t.Fatalf("approval decision records: %+v", recs)
	}
}

func TestHeldRequestDeniedNeverReachesUpstream(t *testing.T) {
	f := startOp(t, "1m", nil)
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	r := f.waitPending(t, 1)[0]
	if _, err := admin.AnswerAny(context.Background(), f.home, r.ID, approval.Answer{Approver: "bob", Reason: "not on a Friday"}); err != nil {
		t.Fatal(err)
	}
	rep := wait(t, got)
	if rep.status != http.StatusForbidden || !strings.Contains(rep.body, "denied by bob: not on a Friday") || rep.header.Get("X-TF-Decision") != "deny" {
		t.Fatalf("denied request: %+v", rep)
	}
	if n := f.hits.Load(); n != 0 {
		t.Fatalf("upstream reached %d times", n)
	}
	if len(f.events(t, audit.EventApprovalDenied)) != 1 {
		t.Fatal("no approval.denied event")
	}
}

func TestHeldRequestExpires(t *testing.T) {
	f := startOp(t, "150ms", nil)
	rep := f.send(context.Background(), "PUT", mergePR1)
	if rep.status != http.StatusForbidden || !strings.Contains(rep.body, "no one approved it in time") {
		t.Fatalf("expired request: %+v", rep)
	}
	if n := f.hits.Load(); n != 0 {
		t.Fatalf("upstream reached %d times", n)
	}
	if evs := f.events(t, audit.EventApprovalExpired); len(evs) != 1 {
		t.Fatal("no approval.expired event")
	}
	if recs := f.approvalRecords(t); len(recs) != 1 || recs[0].Approval.Outcome != "expired" || recs[0].Decision.Effect != rules.Deny {
		t.Fatalf("approval decision records: %+v", recs)
	}
}

func TestApproveForSession(t *testing.T) {
	f := startOp(t, "1m", nil)
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	r := f.waitPending(t, 1)[0]
	if _, err := admin.AnswerAny(context.Background(), f.home, r.ID, approval.Answer{Approve: true, Session: true, Approver: "alice"}); err != nil {
		t.Fatal(err)
	}
	if rep := wait(t, got); rep.status != http.StatusOK {
		t.Fatalf("first request: %+v", rep)
	}
	// The identical request goes through without anyone being asked: a
	// hold would outlast the client's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rep := f.send(ctx, "PUT", mergePR1); rep.status != http.StatusOK {
		t.Fatalf("identical request after a session approval: %+v", rep)
	}
	if n := len(f.events(t, audit.EventApprovalRequested)); n != 1 {
		t.Fatalf("%d approval requests, want 1", n)
	}
	// Another pull request is another request: held.
	other := f.sendAsync(context.Background(), "PUT", "/repos/acme/app/pulls/2/merge")
	r2 := f.waitPending(t, 1)[0]
	if r2.Digest == r.Digest {
		t.Fatal("different params, same digest")
	}
	if _, err := admin.AnswerAny(context.Background(), f.home, r2.ID, approval.Answer{Approver: "alice"}); err != nil {
		t.Fatal(err)
	}
	if rep := wait(t, other); rep.status != http.StatusForbidden {
		t.Fatalf("different request: %+v", rep)
	}
	if n := f.hits.Load(); n != 2 {
		t.Fatalf("upstream reached %d times, want 2", n)
	}
	var session int
	for _, rec := range f.approvalRecords(t) {
		if strings.Contains(rec.Approval.Reason, "for this session") {
			session++
		}
	}
	if session != 2 {
		t.Fatalf("%d records say approved for this session, want 2", session)
	}
}

// activate turns a kill switch on as tf kill does: the file, and the
// event; no admin call, so the gateway's own watcher must notice.
func activate(t testing.TB, home string, scope killswitch.Scope) {
	t.Helper()
	if _, err := killswitch.Activate(context.Background(), home, killswitch.Switch{Scope: scope, Reason: "incident 42", By: "alice", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func TestKillSwitchRefusesAndDeactivates(t *testing.T) {
	f := startOp(t, "1m", nil)
	if rep := f.send(context.Background(), "GET", "/repos/acme/app"); rep.status != http.StatusOK {
		t.Fatalf("before the kill switch: %+v", rep)
	}
	activate(t, f.home, killswitch.Scope{Connector: "github"})
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	var rep reply
	for {
		rep = f.send(context.Background(), "GET", "/repos/acme/app")
		if rep.status == http.StatusForbidden || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("kill switch refused a request %s after the file was written", time.Since(start))
	if rep.status != http.StatusForbidden || rep.header.Get("X-TF-Kill-Switch") != "active" || !strings.Contains(rep.body, "incident 42") {
		t.Fatalf("with the kill switch on: %+v", rep)
	}
	hits := f.hits.Load()
	if _, _, err := killswitch.Deactivate(context.Background(), f.home, killswitch.Scope{All: true}, "alice", "resolved"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		rep = f.send(context.Background(), "GET", "/repos/acme/app")
		if rep.status == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if rep.status != http.StatusOK || f.hits.Load() != hits+1 {
		t.Fatalf("after deactivation: %+v", rep)
	}
	on, off := f.events(t, audit.EventKillSwitchActivated), f.events(t, audit.EventKillSwitchDeactivated)
	if len(on) != 1 || len(off) != 1 || on[0].Details["by"] != "alice" || on[0].Details["scope"] != "connector github" || off[0].Details["reason"] != "resolved" {
		t.Fatalf("kill switch events: %+v %+v", on, off)
	}
}

func TestKillSwitchScopeOtherGatewayLetsThrough(t *testing.T) {
	f := startOp(t, "1m", nil)
	activate(t, f.home, killswitch.Scope{Gateway: "someone-else"})
	f.g.ReloadKillSwitch()
	if rep := f.send(context.Background(), "GET", "/repos/acme/app"); rep.status != http.StatusOK {
		t.Fatalf("a switch for another gateway refused: %+v", rep)
	}
	activate(t, f.home, killswitch.Scope{Gateway: "op"})
	f.g.ReloadKillSwitch()
	if rep := f.send(context.Background(), "GET", "/repos/acme/app"); rep.status != http.StatusForbidden {
		t.Fatalf("a switch for this gateway let through: %+v", rep)
	}
}

func TestKillSwitchCutsStream(t *testing.T) {
	f := startOp(t, "1m", nil)
	req, _ := http.NewRequest("GET", "https://api.github.com/sse", nil)
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: 0\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	activate(t, f.home, killswitch.Scope{All: true})
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		ended <- err
	}()
	wait(t, ended) // the stream ends (cut) instead of running forever
	wait(t, f.sseGone)
	var outcome *audit.Record
	for deadline := time.Now().Add(5 * time.Second); outcome == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		_ = audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindOutcome}, func(r *audit.Record) error {
			// httpproxy names the cause when it sees the context first,
			// else that the response was cut while streaming.
			if strings.Contains(r.Error, "kill switch") || strings.Contains(r.Error, "cut off") {
				outcome = r
			}
			return nil
		})
	}
	if outcome == nil {
		_ = audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindOutcome}, func(r *audit.Record) error {
			t.Logf("outcome: %d %q", r.Status, r.Error)
			return nil
		})
		t.Fatal("no outcome record says the exchange was cut")
	}
}

func TestKillSwitchDeniesHeldApproval(t *testing.T) {
	f := startOp(t, "1m", nil)
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	f.waitPending(t, 1)
	activate(t, f.home, killswitch.Scope{Connector: "github"})
	rep := wait(t, got)
	if rep.status != http.StatusForbidden || rep.header.Get("X-TF-Kill-Switch") != "active" || !strings.Contains(rep.body, "denied by kill switch") {
		t.Fatalf("held request under the kill switch: %+v", rep)
	}
	if f.hits.Load() != 0 || len(f.g.Approvals()) != 0 {
		t.Fatal("the held request went on or stayed pending")
	}
	// While the switch is on, nothing is held: refused at once.
	if rep := f.send(context.Background(), "PUT", "/repos/acme/app/pulls/3/merge"); rep.status != http.StatusForbidden {
		t.Fatalf("new request under the kill switch: %+v", rep)
	}
}

func TestCloseCancelsPendingApprovals(t *testing.T) {
	f := startOp(t, "1m", nil)
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	f.waitPending(t, 1)
	if err := f.g.Close(); err != nil {
		t.Fatal(err)
	}
	rep := wait(t, got)
	if rep.status != http.StatusForbidden || !strings.Contains(rep.body, "the gateway stopped before anyone answered") {
		t.Fatalf("held request at Close: %+v", rep)
	}
	if f.hits.Load() != 0 {
		t.Fatal("the held request went on")
	}
	evs := f.events(t, audit.EventApprovalCancelled)
	if len(evs) != 1 || evs[0].Details["outcome"] != "cancelled" {
		t.Fatalf("approval.cancelled events: %+v", evs)
	}
	if _, err := os.Stat(admin.SocketPath(f.home, "op")); !os.IsNotExist(err) {
		t.Fatalf("admin socket left behind: %v", err)
	}
}

func TestAbandonedApprovalIsRecorded(t *testing.T) {
	f := startOp(t, "1m", nil)
	ctx, cancel := context.WithCancel(context.Background())
	got := f.sendAsync(ctx, "PUT", mergePR1)
	f.waitPending(t, 1)
	cancel()
	if rep := wait(t, got); rep.err == nil {
		t.Fatalf("cancelled client got %+v", rep)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		evs := f.events(t, audit.EventApprovalCancelled)
		if len(evs) == 1 && evs[0].Details["outcome"] == "abandoned" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("approval.cancelled events: %+v", evs)
		}
	}
	if len(f.g.Approvals()) != 0 || f.hits.Load() != 0 {
		t.Fatal("abandoned request still pending or forwarded")
	}
}

func TestAdminSocket(t *testing.T) {
	f := startOp(t, "1m", nil)
	sock := admin.SocketPath(f.home, "op")
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory mode %v, %v", di.Mode(), err)
	}
	// A second gateway of the same name in the same home is refused.
	_, err = Start(Config{Name: "op", Home: f.home, Policy: f.g.Policy(), Approvals: &approval.Config{}})
	if err == nil || !strings.Contains(err.Error(), "another running gateway") {
		t.Fatalf("second gateway named op: %v", err)
	}
	c := admin.NewClient(sock)
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil || st.Name != "op" || st.Proxy != f.g.Addr() || st.Mode != "enforce" || st.Started.IsZero() {
		t.Fatalf("status %+v, %v", st, err)
	}
	// The proxy does not reach the admin API: it is no TCP address.
	if rep := f.send(context.Background(), "GET", "/v1/status"); strings.Contains(rep.body, `"pid"`) {
		t.Fatal("admin API reached through the proxy")
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	home := t.TempDir()
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte("version: 1\ndefault: deny\n")}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(admin.Dir(home), 0o700); err != nil {
		t.Fatal(err)
	}
	// A gateway that died leaves its socket file but not its lock.
	if err := os.WriteFile(admin.SocketPath(home, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := Start(Config{Name: "x", Home: home, Policy: p, Approvals: &approval.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := admin.NewClient(g.AdminSocket()).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookAnnouncesApproval(t *testing.T) {
	posted := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posted <- string(b)
	}))
	defer hook.Close()
	f := startOp(t, "1m", func(c *Config) { c.Approvals = &approval.Config{WebhookURL: hook.URL} })
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	r := f.waitPending(t, 1)[0]
	body := wait(t, posted)
	for _, want := range []string{`"text"`, `"blocks"`, r.ID, "github.pr.merge", "tf approvals approve " + r.ID} {
		if !strings.Contains(body, want) {
			t.Fatalf("webhook body lacks %q: %s", want, body)
		}
	}
	if _, err := f.g.Answer(r.ID, approval.Answer{Approver: "alice"}); err != nil {
		t.Fatal(err)
	}
	wait(t, got)
}

// A Slack button press answers a held request only when Slack's signature
// verifies; the signing secret comes from the keyring (here its
// environment form).
func TestSlackCallbackApproves(t *testing.T) {
	const secret = "slack-signing-secret-for-tests-0123"
	t.Setenv("TF_SECRET_SLACK_SIGNING", secret)
	f := startOp(t, "1m", func(c *Config) {
		c.Approvals = &approval.Config{SlackSigningSecretName: "slack-signing", SlackListen: "127.0.0.1:0"}
	})
	addr := f.g.Status().Slack
	if addr == "" {
		t.Fatal("no slack endpoint")
	}
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	r := f.waitPending(t, 1)[0]
	payload := fmt.Sprintf(`{"type":"block_actions","user":{"id":"U1","username":"carol"},"actions":[{"action_id":%q,"value":%q}]}`, approval.ActionApprove, r.ID)
	body := url.Values{"payload": {payload}}.Encode()
	post := func(key string) int {
		ts := fmt.Sprint(time.Now().Unix())
		req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader(body))
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", approval.SlackSign(key, ts, []byte(body)))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post("wrong-secret"); code != http.StatusUnauthorized || len(f.g.Approvals()) != 1 {
		t.Fatalf("wrong secret: %d", code)
	}
	if code := post(secret); code != http.StatusOK {
		t.Fatalf("signed callback: %d", code)
	}
	if rep := wait(t, got); rep.status != http.StatusOK {
		t.Fatalf("approved in Slack: %+v", rep)
	}
	if recs := f.approvalRecords(t); len(recs) != 1 || recs[0].Approval.Approver != "slack:carol" {
		t.Fatalf("records %+v", recs)
	}
}

// slack_listen without a signing secret is a configuration error, not an
// endpoint that accepts anything.
func TestSlackNeedsSecret(t *testing.T) {
	p, _ := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte("version: 1\ndefault: deny\n")}}, "p")
	_, err := Start(Config{Name: "s", Home: t.TempDir(), Policy: p, Approvals: &approval.Config{SlackListen: "127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), "slack_signing_secret_name") {
		t.Fatalf("start: %v", err)
	}
	_, err = Start(Config{Name: "s", Home: t.TempDir(), Policy: p, Approvals: &approval.Config{SlackListen: "127.0.0.1:0", SlackSigningSecretName: "absent-secret"}})
	if err == nil {
		t.Fatal("started with a missing signing secret")
	}
}

// The approvals: section of config.yaml is read when Config leaves it nil.
func TestApprovalsFromConfigFile(t *testing.T) {
	posted := make(chan struct{}, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posted <- struct{}{} }))
	defer hook.Close()
	f := startOp(t, "1m", func(c *Config) {
		c.Approvals = nil
		if err := os.WriteFile(ConfigPath(c.Home), []byte("approvals:\n  webhook_url: "+hook.URL+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	got := f.sendAsync(context.Background(), "PUT", mergePR1)
	r := f.waitPending(t, 1)[0]
	wait(t, posted)
	if _, err := f.g.Answer(r.ID, approval.Answer{Approver: "alice"}); err != nil {
		t.Fatal(err)
	}
	wait(t, got)
}
