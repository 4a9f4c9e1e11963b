package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browserNames are the executables tried for headless Chromium, Debian's
// first.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// browser starts headless Chromium with a fresh profile. A machine without
// it fails the test: CI installs Debian's chromium package.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, n := range browserNames {
		if p, err := exec.LookPath(n); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatalf("the dashboard's browser tests need headless Chromium, and none of %v is installed: apt-get install -y chromium", browserNames)
	}
	ctx, cancel := deadline(t, 90*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The test's own environment may name a proxy; the browser talks
		// to the loopback dashboard directly, like a person's.
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		bcancel()
		acancel()
	})
	// Start the browser now so that a broken install fails here, clearly.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return bctx
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// colorScheme makes the page render light or dark, whatever the machine
// prefers.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
}

// waitText waits until the element sel holds text: the page after a form
// post, not the one before it.
func waitText(sel, text string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, text)
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		// Evaluated afresh each time: a poll inside the page dies with the
		// navigation that the form post starts.
		end := time.Now().Add(20 * time.Second)
		for {
			ok, err := chromedp.Evaluate[bool](js)(ctx, t)
			if err == nil && ok {
				return nil
			}
			if time.Now().After(end) {
				return fmt.Errorf("waiting for %q in %s: last error %v", text, sel, err)
			}
			if _, err := chromedp.Sleep(50*time.Millisecond)(ctx, t); err != nil {
				return err
			}
		}
	})
}

// artifacts is where screenshots go: $TF_ARTIFACTS, else a temporary
// directory of the test.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TF_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shoot saves a full-page PNG of the current page, and keeps a copy under
// testdata/screenshots when TF_SCREENSHOTS_KEEP is set, for one shot of
// each page (plus the narrow dark one) under 100 KB.
func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot %s: only %d bytes", name, len(png))
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
	if os.Getenv("TF_SCREENSHOTS_KEEP") != "" && len(png) < 100<<10 && (!strings.HasPrefix(name, "narrow-") || name == "narrow-dark-traffic") {
		if err := os.WriteFile(filepath.Join("testdata", "screenshots", name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBrowser drives headless Chromium through every page against a
// running gateway: a held request is approved and then denied from the
// Approvals page, the Traffic table receives a row live, the kill switch
// refuses the agent's next request and lets it through once off.
func TestBrowser(t *testing.T) {
	f := start(t)
	ctx := browser(t)
	shots := artifacts(t)
	origin := "http://" + f.d.Addr()
	do(t, ctx, "light mode", colorScheme("light"))

	// The one-time link becomes a session and a clean URL.
	do(t, ctx, "login", chromedp.Navigate(f.d.URL()), chromedp.WaitVisible("#traffic"))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || loc != origin+"/traffic" {
		t.Fatalf("after login the browser is at %q (%v), want %s/traffic", loc, err, origin)
	}
	cookies, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
		return res.Cookies, err
	})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies {
		if c.Name == cookieName {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("the browser holds session cookie %+v; want HttpOnly and SameSite=Strict", session)
	}
	if js, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.cookie")); err != nil || strings.Contains(js, cookieName) {
		t.Fatalf("scripts see the session cookie: %q %v", js, err)
	}

	// Traffic: a request of the agent appears live, then its outcome.
	do(t, ctx, "traffic stream", chromedp.WaitVisible(`#live-state[data-state="live"]`))
	if rep := f.send(ctx, http.MethodGet, "/repos/acme/app"); rep.err != nil || rep.status != http.StatusOK {
		t.Fatalf("the agent's read: %+v", rep)
	}
	do(t, ctx, "live row", chromedp.WaitVisible(`#rows tr[data-live]`))
	row, err := chromedp.Run(ctx, chromedp.Text(`#rows tr[data-live]`))
	if err != nil || !strings.Contains(row, "acme/app") || !strings.Contains(row, "allow") || !strings.Contains(row, "agent-1") {
		t.Fatalf("live row %q (%v): want the target, the decision and the gateway", row, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#rows tr[data-live] td.status").textContent === "200"`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the live row never showed status 200: %v", err)
	}
	// A denied action with its rule, for the screenshot and the record page.
	if rep := f.send(ctx, http.MethodDelete, "/repos/acme/app"); rep.status != http.StatusForbidden {
		t.Fatalf("the agent's delete: %+v", rep)
	}
	do(t, ctx, "second live row", chromedp.WaitVisible(`#rows tr[data-live].d-deny`))
	// The row is redrawn when its outcome arrives: click it after that.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#rows tr[data-live].d-deny td.status").textContent === "403"`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the denied row never showed status 403: %v", err)
	}
	// A model call: its row shows the tokens once its outcome arrives.
	if rep := f.modelCall(ctx); rep.err != nil || rep.status != http.StatusOK {
		t.Fatalf("the agent's model call: %+v", rep)
	}
	do(t, ctx, "model call row", chromedp.WaitVisible(`#rows tr[data-live].d-allow`))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`[...document.querySelectorAll("#rows tr[data-live] td.tokens")].some(td => td.textContent === "in 12 out 7 cache r3 w0")`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the model call's row never showed its tokens: %v", err)
	}
	shoot(t, ctx, shots, "traffic")

	// The row opens the full record: matched rules and reasons, no headers.
	do(t, ctx, "record page", chromedp.Click(`#rows tr.d-deny td:nth-child(3)`), chromedp.WaitVisible(`h2`))
	rec, err := chromedp.Run(ctx, chromedp.Text(`main`))
	if err != nil || !strings.Contains(rec, "no-repo-deletes") || !strings.Contains(rec, "Repositories are deleted by hand.") || strings.Contains(strings.ToLower(rec), "user-agent") {
		t.Fatalf("record page: %v\n%s", err, rec)
	}
	shoot(t, ctx, shots, "record")

	// Approvals: a held merge appears; Approve lets it through.
	do(t, ctx, "approvals page", chromedp.Navigate(origin+"/approvals"), chromedp.WaitVisible(`#live-state[data-state="live"]`), chromedp.WaitVisible("#no-approvals"))
	hits := f.hits.Load()
	held := f.sendAsync(ctx, http.MethodPut, mergePath)
	do(t, ctx, "held request shown", chromedp.WaitVisible(`article.approval button.approve`))
	card, err := chromedp.Run(ctx, chromedp.Text(`article.approval`))
	if err != nil || !strings.Contains(card, "github.pr.merge") || !strings.Contains(card, "merges-need-a-human") {
		t.Fatalf("approval card %q (%v)", card, err)
	}
	shoot(t, ctx, shots, "approvals")
	if f.hits.Load() != hits {
		t.Fatal("the held request reached the upstream before anyone approved it")
	}
	do(t, ctx, "approve", chromedp.Click(`article.approval button.approve`), waitText("#flash", "Approved"))
	if rep := waitReply(t, held); rep.status != http.StatusOK || f.hits.Load() != hits+1 {
		t.Fatalf("after Approve the agent got %+v and the upstream saw %d new requests", rep, f.hits.Load()-hits)
	}
	do(t, ctx, "list empties", chromedp.WaitVisible("#no-approvals"))

	// Deny, with a reason: the agent is refused and the upstream untouched.
	held = f.sendAsync(ctx, http.MethodPut, mergePath)
	do(t, ctx, "second held request", chromedp.WaitVisible(`article.approval button.deny`),
		chromedp.SendKeys(`article.approval input[name="reason"]`, "not during the freeze"),
		chromedp.Click(`article.approval button.deny`), waitText("#flash", "Denied"))
	rep := waitReply(t, held)
	if rep.status != http.StatusForbidden || f.hits.Load() != hits+1 {
		t.Fatalf("after Deny the agent got %+v and the upstream saw %d new requests", rep, f.hits.Load()-hits-1)
	}

	// Kill switch: on for everything, the next request is refused; off,
	// it goes through again.
	do(t, ctx, "kill switch page", chromedp.Navigate(origin+"/killswitch"), chromedp.WaitVisible("#kill-off"),
		chromedp.SetValue(`form.activate select[name="scope"]`, "all"),
		chromedp.SendKeys(`form.activate input[name="reason"]`, "incident 7"),
		chromedp.Click(`form.activate input[name="confirm"]`),
		chromedp.Click(`form.activate button`),
		waitText("#flash", "Kill switch on"), chromedp.WaitVisible(`li.switch`))
	shoot(t, ctx, shots, "killswitch")
	rep = f.send(ctx, http.MethodGet, "/repos/acme/app")
	if rep.status != http.StatusForbidden || rep.header.Get("X-TF-Kill-Switch") != "active" || !strings.Contains(rep.body, "incident 7") {
		t.Fatalf("with the kill switch on the agent got %+v", rep)
	}
	do(t, ctx, "deactivate", chromedp.Click(`li.switch input[name="confirm"]`), chromedp.Click(`li.switch button`), waitText("#flash", "Kill switch off"), chromedp.WaitVisible("#kill-off"))
	if rep := f.send(ctx, http.MethodGet, "/repos/acme/app"); rep.status != http.StatusOK {
		t.Fatalf("after deactivation the agent got %+v", rep)
	}

	// Policy: the gateway's rules (nothing is pinned here).
	do(t, ctx, "policy page", chromedp.Navigate(origin+"/policy"), chromedp.WaitVisible("table.rules"))
	pol, err := chromedp.Run(ctx, chromedp.Text("main"))
	if err != nil || !strings.Contains(pol, "merges-need-a-human") || !strings.Contains(pol, "require_approval") || !strings.Contains(pol, "No saved plan") {
		t.Fatalf("policy page: %v\n%s", err, pol)
	}
	shoot(t, ctx, shots, "policy")

	// Narrow and dark: every page still renders without a horizontal
	// scroll of the whole page.
	do(t, ctx, "narrow", chromedp.EmulateViewport(360, 740))
	for _, p := range []string{"traffic", "approvals", "killswitch", "policy"} {
		do(t, ctx, "narrow "+p, chromedp.Navigate(origin+"/"+p), chromedp.WaitVisible("main"))
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("document.documentElement.scrollWidth > window.innerWidth + 1"))
		if err != nil || wide {
			t.Errorf("%s at 360 px scrolls sideways (%v)", p, err)
		}
		shoot(t, ctx, shots, "narrow-"+p)
	}
	do(t, ctx, "dark mode", colorScheme("dark"), chromedp.Navigate(origin+"/traffic"), chromedp.WaitVisible("main"))
	shoot(t, ctx, shots, "narrow-dark-traffic")
}
