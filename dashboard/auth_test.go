package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tameflare/tf/killswitch"
)

func TestLoginTokenIsOneTimeAndCookieIsStrict(t *testing.T) {
	f := start(t)
	c := browserless()
	// A HEAD of the link (a preview, a link checker) does not use it up.
	res, err := c.Head(f.d.URL())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HEAD of the login link: %d, want 405", res.StatusCode)
	}
	if res, err = c.Get(f.d.URL()); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var ck *http.Cookie
	for _, k := range res.Cookies() {
		if k.Name == cookieName {
			ck = k
		}
	}
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/traffic" || ck == nil {
		t.Fatalf("login: status %d location %q cookie %v", res.StatusCode, res.Header.Get("Location"), ck)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", ck)
	}
	if strings.Contains(ck.Value, strings.TrimPrefix(f.d.URL(), "http://"+f.d.Addr()+"/login?token=")) {
		t.Fatal("the session cookie repeats the login token")
	}
	if code, body := get(t, f.d, c, ck, "/traffic"); code != http.StatusOK || !strings.Contains(body, `id="traffic"`) {
		t.Fatalf("traffic with a session: %d\n%s", code, body)
	}
	// The same link a second time: refused, and no cookie.
	res, err = c.Get(f.d.URL())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 {
		t.Fatalf("a used login token: status %d cookies %v; want 401 and none", res.StatusCode, res.Cookies())
	}
	// A made-up token is refused too.
	if res, err = c.Get("http://" + f.d.Addr() + "/login?token=AAAA"); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an unknown token: status %d", res.StatusCode)
	}
}

func TestNoSessionIsRefused(t *testing.T) {
	f := start(t)
	c := browserless()
	for _, path := range []string{"/", "/traffic", "/approvals", "/killswitch", "/policy", "/traffic/1", "/traffic/events?after=0", "/approvals/events"} {
		code, body := get(t, f.d, c, nil, path)
		if code != http.StatusUnauthorized || !strings.Contains(body, "link tf printed") {
			t.Errorf("GET %s without a session: %d %q", path, code, body)
		}
	}
	// A forged cookie is no session either.
	code, _ := get(t, f.d, c, &http.Cookie{Name: cookieName, Value: "forged"}, "/traffic")
	if code != http.StatusUnauthorized {
		t.Errorf("a forged cookie: %d", code)
	}
	res := post(t, f.d, c, nil, "/killswitch/activate", url.Values{"scope": {"all"}, "confirm": {"yes"}}, nil)
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without a session: %d", res.StatusCode)
	}
	assertKillOff(t, f.home)
}

func assertKillOff(t *testing.T, home string) {
	t.Helper()
	st, err := killswitch.Read(home)
	if err != nil || st.Active() {
		t.Fatalf("kill switch: %+v %v; want off", st, err)
	}
}

func TestStateChangesNeedCSRFAndSameOrigin(t *testing.T) {
	f := start(t)
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())
	_, page := get(t, f.d, c, ck, "/killswitch")
	csrf := csrfOf(t, page)
	form := url.Values{"scope": {"all"}, "confirm": {"yes"}, "reason": {"test"}}

	if res := post(t, f.d, c, ck, "/killswitch/activate", form, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("without a CSRF token: %d, want 403", res.StatusCode)
	}
	bad := url.Values{"csrf": {csrf[:len(csrf)-1] + "x"}}
	for k, v := range form {
		bad[k] = v
	}
	if res := post(t, f.d, c, ck, "/killswitch/activate", bad, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("with a wrong CSRF token: %d, want 403", res.StatusCode)
	}
	good := url.Values{"csrf": {csrf}}
	for k, v := range form {
		good[k] = v
	}
	if res := post(t, f.d, c, ck, "/killswitch/activate", good, func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }); res.StatusCode != http.StatusForbidden {
		t.Errorf("from another origin: %d, want 403", res.StatusCode)
	}
	if res := post(t, f.d, c, ck, "/killswitch/activate", good, func(r *http.Request) {
		r.Header.Del("Origin")
		r.Header.Set("Sec-Fetch-Site", "cross-site")
	}); res.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site fetch: %d, want 403", res.StatusCode)
	}
	// Another session's token is not this session's.
	ck2 := login(t, f.d, c, mustLoginURL(t, f.d))
	if res := post(t, f.d, c, ck2, "/killswitch/activate", good, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d, want 403", res.StatusCode)
	}
	assertKillOff(t, f.home)

	// Without the confirmation box the switch stays off.
	noConfirm := url.Values{"csrf": {csrf}, "scope": {"all"}}
	if res := post(t, f.d, c, ck, "/killswitch/activate", noConfirm, nil); res.StatusCode != http.StatusBadRequest {
		t.Errorf("without confirmation: %d, want 400", res.StatusCode)
	}
	assertKillOff(t, f.home)

	// The token in a header (as a script sends it) works too.
	res := post(t, f.d, c, ck, "/killswitch/activate", form, func(r *http.Request) { r.Header.Set(csrfHeader, csrf) })
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("a valid activation: %d, want 303", res.StatusCode)
	}
	st, err := killswitch.Read(f.home)
	if err != nil || len(st.Switches) != 1 || !st.Switches[0].Scope.All || st.Switches[0].By != "tester (dashboard)" {
		t.Fatalf("after activation: %+v %v", st, err)
	}
	if rep := f.send(context.Background(), "GET", "/repos/acme/app"); rep.status != http.StatusForbidden {
		t.Fatalf("with the kill switch on, the agent got %d", rep.status)
	}
}

func mustLoginURL(t testing.TB, d *Server) string {
	t.Helper()
	u, err := d.NewLoginURL()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestForeignHostIsRefused(t *testing.T) {
	f := start(t)
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())
	_, port, _ := strings.Cut(f.d.Addr(), ":")
	for _, host := range []string{"evil.example:" + port, "localhost:" + port, "127.0.0.1", "evil.example"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+f.d.Addr()+"/traffic", nil)
		req.Host = host
		req.AddCookie(ck)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("Host %q: %d, want 421", host, res.StatusCode)
		}
	}
	// A login link through a rebound name does not log in either.
	req, _ := http.NewRequest(http.MethodGet, mustLoginURL(t, f.d), nil)
	req.Host = "evil.example:" + port
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMisdirectedRequest || len(res.Cookies()) != 0 {
		t.Errorf("login through another Host: %d %v", res.StatusCode, res.Cookies())
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "192.0.2.1:0"} {
		if d, err := Start(Config{Home: t.TempDir(), Listen: addr}); err == nil {
			d.Close()
			t.Errorf("Start on %q succeeded; want an error", addr)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := start(t)
	res, err := browserless().Get("http://" + f.d.Addr() + "/traffic")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || res.Header.Get("Referrer-Policy") != "same-origin" {
		t.Fatalf("headers: %v", res.Header)
	}
}
