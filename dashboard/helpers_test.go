package dashboard

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

const fixturePolicy = `version: 1
default: allow
rules:
  - name: merges-need-a-human
    actions: [github.pr.merge]
    decision: require_approval
    reason: A person merges pull requests.
    approval: { timeout: 1m }
  - name: no-repo-deletes
    actions: [github.repo.delete]
    decision: deny
    reason: Repositories are deleted by hand.
`

// fixture is a real gateway in front of a TLS stand-in for api.github.com,
// and a dashboard on the same state directory.
type fixture struct {
	home   string
	g      *gateway.Gateway
	d      *Server
	agent  *http.Client // a governed client: every request goes through the gateway
	hits   atomic.Int64 // requests that reached the upstream
	policy *rules.Policy
}

func start(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{home: t.TempDir()}
	t.Setenv("TF_HOME", f.home)
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(fixturePolicy)}}, "fixture")
	if err != nil {
		t.Fatal(err)
	}
	f.policy = p
	cert, caPEM, err := testdata.ServerCert("api.github.com", "api.anthropic.com")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		if r.Host == "api.anthropic.com" {
			// A Messages API answer and the usage it reports.
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":7,"cache_read_input_tokens":3}}`)
			return
		}
		io.WriteString(w, `{"merged":true}`)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	f.g, err = gateway.Start(gateway.Config{Name: "agent-1", Home: f.home, Policy: p, Approvals: &approval.Config{},
		Upstreams:   map[string]string{"api.github.com": strings.TrimPrefix(up.URL, "https://"), "api.anthropic.com": strings.TrimPrefix(up.URL, "https://")},
		UpstreamCAs: [][]byte{caPEM}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.g.Close() })
	f.d, err = Start(Config{Home: f.home, Policy: f.g.Policy, Poll: 100 * time.Millisecond, Approver: "tester (dashboard)"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.d.Close(); err != nil {
			t.Errorf("closing the dashboard: %v", err)
		}
	})
	tr, err := testdata.ProxyTransport(f.g.ProxyURL(), f.g.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	f.agent = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return f
}

type reply struct {
	status int
	header http.Header
	body   string
	err    error
}

// send makes a request to api.github.com as the governed agent.
func (f *fixture) send(ctx context.Context, method, path string) reply {
	req, err := http.NewRequestWithContext(ctx, method, "https://api.github.com"+path, strings.NewReader(`{"merge_method":"squash"}`))
	if err != nil {
		return reply{err: err}
	}
	res, err := f.agent.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return reply{status: res.StatusCode, header: res.Header, body: string(b), err: err}
}

// modelCall makes a Messages API call as the governed agent (the fixture
// policy's default allows it); the upstream reports 12 in, 7 out, 3
// read from the cache.
func (f *fixture) modelCall(ctx context.Context) reply {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.anthropic.com/v1/messages",
		strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		return reply{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := f.agent.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return reply{status: res.StatusCode, header: res.Header, body: string(b), err: err}
}

func (f *fixture) sendAsync(ctx context.Context, method, path string) <-chan reply {
	ch := make(chan reply, 1)
	go func() { ch <- f.send(ctx, method, path) }()
	return ch
}

func waitReply(t testing.TB, ch <-chan reply) reply {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for the agent's request")
		panic("unreachable")
	}
}

const mergePath = "/repos/acme/app/pulls/1/merge"

// browserless is a plain HTTP client of the dashboard that never follows
// redirects, so that tests see them.
func browserless() *http.Client {
	return &http.Client{
		Transport:     &http.Transport{Proxy: nil},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// login exchanges the dashboard's login URL for a session cookie, as a
// browser does.
func login(t testing.TB, d *Server, c *http.Client, loginURL string) *http.Cookie {
	t.Helper()
	res, err := c.Get(loginURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/traffic" {
		t.Fatalf("login: status %d, location %q; want 303 to /traffic", res.StatusCode, res.Header.Get("Location"))
	}
	for _, ck := range res.Cookies() {
		if ck.Name == cookieName {
			return ck
		}
	}
	t.Fatal("login set no session cookie")
	return nil
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// get fetches a dashboard page with a session cookie.
func get(t testing.TB, d *Server, c *http.Client, ck *http.Cookie, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+d.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ck != nil {
		req.AddCookie(ck)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// csrfOf reads the CSRF token a page carries.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil || m[1] == "" {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// post submits a form as the dashboard's pages do, with headers set by
// mutate.
func post(t testing.TB, d *Server, c *http.Client, ck *http.Cookie, path string, form url.Values, mutate func(*http.Request)) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+d.Addr()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+d.Addr())
	if ck != nil {
		req.AddCookie(ck)
	}
	if mutate != nil {
		mutate(req)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

func deadline(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := t.(*testing.T); ok {
		if end, ok := dl.Deadline(); ok && time.Until(end) < d {
			d = time.Until(end) - time.Second
		}
	}
	return context.WithTimeout(context.Background(), d)
}
