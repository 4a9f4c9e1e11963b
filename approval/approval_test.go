package approval

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

func req(id, action, digest string) Request {
	return Request{ID: id, Gateway: "g", Action: action, Digest: digest, Rule: "r", Connector: "github"}
}

// holdAsync holds r in the background and returns where its result goes.
func holdAsync(ctx context.Context, m *Manager, r Request, timeout time.Duration) <-chan Result {
	ch := make(chan Result, 1)
	go func() { ch <- m.Hold(ctx, r, timeout) }()
	return ch
}

func waitPending(t *testing.T, m *Manager, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(m.Pending()) != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d pending, want %d", len(m.Pending()), n)
		}
	}
}

func result(t *testing.T, ch <-chan Result) Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("hold did not end")
		return Result{}
	}
}

func TestAnswerApproveDeny(t *testing.T) {
	m := NewManager(Options{})
	a := holdAsync(context.Background(), m, req("ap_a", "x.y", "d1"), time.Minute)
	b := holdAsync(context.Background(), m, req("ap_b", "x.y", "d1"), time.Minute)
	waitPending(t, m, 2)
	if _, err := m.Answer("ap_a", Answer{Approve: true, Approver: "alice", Reason: "ok"}); err != nil {
		t.Fatal(err)
	}
	if r := result(t, a); r.Outcome != Approved || r.Approver != "alice" || r.Reason != "ok" || r.Session {
		t.Fatalf("approved: %+v", r)
	}
	// Approving one request approved nothing else, though identical.
	if got := m.Pending(); len(got) != 1 || got[0].ID != "ap_b" {
		t.Fatalf("pending after one approval: %+v", got)
	}
	if _, err := m.Answer("ap_b", Answer{Approver: "bob"}); err != nil {
		t.Fatal(err)
	}
	if r := result(t, b); r.Outcome != Denied || r.Approver != "bob" {
		t.Fatalf("denied: %+v", r)
	}
	if _, err := m.Answer("ap_b", Answer{Approver: "bob"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("answering twice: %v", err)
	}
	if _, err := m.Answer("ap_c", Answer{}); err == nil {
		t.Fatal("an answer without approver was accepted")
	}
}

func TestSessionGrant(t *testing.T) {
	m := NewManager(Options{})
	a := holdAsync(context.Background(), m, req("ap_a", "x.y", "d1"), time.Minute)
	same := holdAsync(context.Background(), m, req("ap_b", "x.y", "d1"), time.Minute)
	other := holdAsync(context.Background(), m, req("ap_c", "x.y", "d2"), time.Minute)
	waitPending(t, m, 3)
	if _, err := m.Answer("ap_a", Answer{Approve: false, Session: true, Approver: "alice"}); err == nil {
		t.Fatal("a session denial was accepted")
	}
	if _, err := m.Answer("ap_a", Answer{Approve: true, Session: true, Approver: "alice"}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan Result{a, same} {
		if r := result(t, ch); r.Outcome != Approved || !r.Session {
			t.Fatalf("session approval: %+v", r)
		}
	}
	if g, ok := m.Granted(req("", "x.y", "d1").Key()); !ok || g.ID != "ap_a" || g.Approver != "alice" {
		t.Fatalf("grant %+v %v", g, ok)
	}
	if r := m.Hold(context.Background(), req("ap_d", "x.y", "d1"), time.Minute); r.Outcome != Approved || !r.Session {
		t.Fatalf("a later identical request: %+v", r)
	}
	if got := m.Pending(); len(got) != 1 || got[0].ID != "ap_c" {
		t.Fatalf("different params were approved too: %+v", got)
	}
	m.Close("stop")
	if r := result(t, other); r.Outcome != Cancelled || r.Reason != "stop" {
		t.Fatalf("closed: %+v", r)
	}
	if _, ok := m.Granted(req("", "x.y", "d1").Key()); ok {
		t.Fatal("grant outlived the manager")
	}
}

func TestExpiryAbandonDenyClose(t *testing.T) {
	m := NewManager(Options{Refuse: func(r Request) (string, bool) { return "killed", r.Connector == "npm" }})
	if r := m.Hold(context.Background(), req("ap_e", "x.y", "d"), 20*time.Millisecond); r.Outcome != Expired {
		t.Fatalf("expiry: %+v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ab := holdAsync(ctx, m, req("ap_f", "x.y", "d"), time.Minute)
	waitPending(t, m, 1)
	cancel()
	if r := result(t, ab); r.Outcome != Abandoned {
		t.Fatalf("abandoned: %+v", r)
	}
	npm := req("ap_g", "npm.package.publish", "d")
	npm.Connector = "npm"
	if r := m.Hold(context.Background(), npm, time.Minute); r.Outcome != Denied || !r.KillSwitch {
		t.Fatalf("refused at hold: %+v", r)
	}
	k := holdAsync(context.Background(), m, req("ap_h", "x.y", "d"), time.Minute)
	waitPending(t, m, 1)
	if n := m.Deny(func(Request) bool { return true }, Result{Outcome: Denied, Approver: "kill switch", KillSwitch: true}); n != 1 {
		t.Fatalf("denied %d", n)
	}
	if r := result(t, k); r.Outcome != Denied || !r.KillSwitch || r.At.IsZero() {
		t.Fatalf("kill switch denial: %+v", r)
	}
	m.Close("bye")
	if r := m.Hold(context.Background(), req("ap_i", "x.y", "d"), time.Minute); r.Outcome != Cancelled || r.Reason != "bye" {
		t.Fatalf("hold after close: %+v", r)
	}
}

// Racing answers, expiries and cancellations end each hold exactly once.
func TestRaces(t *testing.T) {
	m := NewManager(Options{})
	var wg sync.WaitGroup
	for i := range 200 {
		id := "ap_" + strconv.Itoa(i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := m.Hold(context.Background(), req(id, "x.y", strconv.Itoa(i%3)), time.Duration(i%5)*time.Millisecond+time.Millisecond)
			if r.Outcome == "" {
				t.Errorf("%s: empty outcome", id)
			}
		}()
		go func() {
			defer wg.Done()
			_, _ = m.Answer(id, Answer{Approve: i%2 == 0, Session: i%7 == 0, Approver: "a"})
		}()
	}
	wg.Wait()
	if n := len(m.Pending()); n != 0 {
		t.Fatalf("%d left pending", n)
	}
}

func TestDigest(t *testing.T) {
	a := &rules.Action{Type: "github.pr.merge", Resource: map[string]string{"owner": "o", "repo": "r"}, Params: map[string]any{"number": 1, "merge_method": "squash"}}
	b := &rules.Action{Type: "github.pr.merge", Resource: map[string]string{"repo": "r", "owner": "o"}, Params: map[string]any{"merge_method": "squash", "number": 1}}
	c := &rules.Action{Type: "github.pr.merge", Resource: map[string]string{"owner": "o", "repo": "r"}, Params: map[string]any{"number": 2, "merge_method": "squash"}}
	da, _ := Digest(a)
	db, _ := Digest(b)
	dc, _ := Digest(c)
	if da != db || da == dc || len(da) != 64 {
		t.Fatalf("digests %s %s %s", da, db, dc)
	}
	if _, err := Digest(&rules.Action{Type: "x", Params: map[string]any{"f": func() {}}}); err == nil {
		t.Fatal("unencodable params digested")
	}
}

func TestWebhookPostsSlackMessage(t *testing.T) {
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", r.Header.Get("Content-Type"))
		}
		got <- b
	}))
	defer srv.Close()
	w := NewWebhook(srv.URL+"/secret-token", nil)
	defer w.Close()
	r := req("ap_1", "github.pr.merge", "d")
	r.Params = map[string]any{"number": 7}
	r.Expires = time.Now().Add(time.Minute)
	w.Notify(r)
	var body []byte
	select {
	case body = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing posted")
	}
	var msg struct {
		Text   string           `json:"text"`
		Blocks []map[string]any `json:"blocks"`
		TF     Request          `json:"tf_approval"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "github.pr.merge") || !strings.Contains(msg.Text, "tf approvals approve ap_1") || len(msg.Blocks) != 2 || msg.TF.ID != "ap_1" {
		t.Fatalf("message %s", body)
	}
	if !strings.Contains(string(body), ActionApprove) || !strings.Contains(string(body), ActionDeny) {
		t.Fatalf("message has no buttons: %s", body)
	}

	// A failing receiver is counted, and its URL (a token) never shown.
	bad := NewWebhook("http://127.0.0.1:1/secret-token", nil)
	bad.Notify(r)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if failed, _, last := bad.Stats(); failed == 1 {
			if strings.Contains(last.Error(), "secret-token") {
				t.Fatalf("error shows the URL: %v", last)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("failed post not counted")
		}
	}
	bad.Close()
}

const secret = "8f742231b10e8888abcd99yyyzzz85a5"

func signed(ts time.Time, body string, key string) http.Header {
	s := strconv.FormatInt(ts.Unix(), 10)
	return http.Header{"X-Slack-Request-Timestamp": {s}, "X-Slack-Signature": {SlackSign(key, s, []byte(body))}}
}

func TestSlackSignatures(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	v := NewSlackVerifier(secret, func() time.Time { return now })
	body := "payload=%7B%7D"
	if err := v.Verify(signed(now.Add(-time.Minute), body, secret), []byte(body)); err != nil {
		t.Fatalf("valid: %v", err)
	}
	cases := []struct {
		name string
		h    http.Header
		body string
		want string
	}{
		{"replayed", signed(now.Add(-time.Minute), body, secret), body, "replayed"},
		{"wrong secret", signed(now, body, "another-secret"), body, "does not verify"},
		{"stale timestamp", signed(now.Add(-6*time.Minute), body, secret), body, "window"},
		{"future timestamp", signed(now.Add(6*time.Minute), body, secret), body, "window"},
		{"tampered body", signed(now, body, secret), body + "x", "does not verify"},
		{"no signature", http.Header{"X-Slack-Request-Timestamp": {strconv.FormatInt(now.Unix(), 10)}}, body, "malformed"},
		{"no timestamp", http.Header{}, body, "Timestamp"},
	}
	for _, c := range cases {
		err := v.Verify(c.h, []byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := NewSlackVerifier("", nil).Verify(signed(time.Now(), body, ""), []byte(body)); err == nil {
		t.Error("an empty secret verified")
	}
}

func callback(action, id, user string) string {
	p, _ := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]any{"id": "U1", "username": user},
		"actions": []any{map[string]any{"action_id": action, "value": id}},
	})
	return url.Values{"payload": {string(p)}}.Encode()
}

func TestSlackHandlerAnswers(t *testing.T) {
	m := NewManager(Options{})
	held := holdAsync(context.Background(), m, req("ap_s1", "x.y", "d"), time.Minute)
	waitPending(t, m, 1)
	srv := httptest.NewServer(SlackHandler(NewSlackVerifier(secret, nil), func(id string, a Answer) error {
		_, err := m.Answer(id, a)
		return err
	}))
	defer srv.Close()
	post := func(body string, h http.Header) int {
		rq, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		for k, v := range h {
			rq.Header[k] = v
		}
		res, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	body := callback(ActionApprove, "ap_s1", "carol")
	if code := post(body, signed(time.Now(), body, "wrong")); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", code)
	}
	if len(m.Pending()) != 1 {
		t.Fatal("an unverified callback answered")
	}
	h := signed(time.Now(), body, secret)
	if code := post(body, h); code != http.StatusOK {
		t.Fatalf("valid callback: %d", code)
	}
	if r := result(t, held); r.Outcome != Approved || r.Approver != "slack:carol" {
		t.Fatalf("slack approval: %+v", r)
	}
	if code := post(body, h); code != http.StatusUnauthorized {
		t.Fatalf("replay: %d", code)
	}
}

func TestParseSlackCallback(t *testing.T) {
	for _, c := range []struct {
		body    string
		ok      bool
		approve bool
		session bool
	}{
		{callback(ActionApprove, "ap_1", "u"), true, true, false},
		{callback(ActionApproveSession, "ap_1", "u"), true, true, true},
		{callback(ActionDeny, "ap_1", "u"), true, false, false},
		{callback("other", "ap_1", "u"), false, false, false},
		{callback(ActionApprove, "../x", "u"), false, false, false},
		{"payload=notjson", false, false, false},
		{"%zz", false, false, false},
	} {
		cb, err := ParseSlackCallback([]byte(c.body))
		if (err == nil) != c.ok || (c.ok && (cb.Answer.Approve != c.approve || cb.Answer.Session != c.session || cb.ID != "ap_1")) {
			t.Errorf("%s: %+v, %v", c.body, cb, err)
		}
	}
}

func FuzzParseSlackCallback(f *testing.F) {
	f.Add([]byte(callback(ActionApprove, "ap_1", "u")))
	f.Add([]byte("payload=%7B%22type%22%3A%22block_actions%22%7D"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cb, err := ParseSlackCallback(b)
		if err == nil && (!validID(cb.ID) || !strings.HasPrefix(cb.Answer.Approver, "slack:")) {
			t.Fatalf("accepted %+v", cb)
		}
	})
}

func FuzzSlackVerify(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	f.Add("1700000000", "v0=00", []byte("body"))
	f.Add("1700000000", SlackSign(secret, "1700000000", []byte("body")), []byte("body"))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		v := NewSlackVerifier(secret, func() time.Time { return now })
		err := v.Verify(http.Header{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {sig}}, body)
		if err == nil && sig != SlackSign(secret, ts, body) {
			t.Fatalf("accepted a signature that is not Slack's: %q", sig)
		}
	})
}

// BenchmarkHeld holds 1,000 approvals at once in the manager alone and
// releases them.
func BenchmarkHeld(b *testing.B) {
	for b.Loop() {
		m := NewManager(Options{})
		var wg sync.WaitGroup
		for i := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.Hold(context.Background(), req("ap_"+strconv.Itoa(i), "x.y", "d"), time.Minute)
			}()
		}
		for len(m.Pending()) < 1000 {
			runtime.Gosched()
		}
		m.Close("done")
		wg.Wait()
	}
}

// On a shared gateway a grant is bound to the agent that asked, and the
// notification names it.
func TestAgentInKeyAndMessage(t *testing.T) {
	a, b := req("", "github.pr.merge", "d1"), req("", "github.pr.merge", "d1")
	a.Agent, b.Agent = "ci", "dev"
	if a.Key() == b.Key() {
		t.Fatal("two agents' identical requests share a session grant")
	}
	if msg := NewMessage(a); !strings.Contains(msg.Text, "agent ci") || msg.Approval.Agent != "ci" {
		t.Fatalf("the message does not name the agent: %q", msg.Text)
	}
	if msg := NewMessage(req("", "github.pr.merge", "d1")); strings.Contains(msg.Text, "agent") {
		t.Fatalf("a session of no agent is named one: %q", msg.Text)
	}
}
