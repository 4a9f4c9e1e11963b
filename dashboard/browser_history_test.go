package dashboard

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// seedTraffic appends n decisions, spread over the last six hours and
// mixing the three effects, and two policy applies.
func seedTraffic(t *testing.T, home string, n int) {
	t.Helper()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now().Add(-6 * time.Hour)
	effects := []rules.Effect{rules.Allow, rules.Allow, rules.Allow, rules.Deny, rules.RequireApproval}
	recs := make([]*audit.Record, 0, n)
	for i := range n {
		recs = append(recs, &audit.Record{Kind: audit.KindDecision, Time: start.Add(time.Duration(i) * 6 * time.Hour / time.Duration(n)),
			RequestID: "seed-" + countStr(i), Gateway: "seed",
			Action:   &rules.Action{Type: "github.repo.get", Connector: "github", Resource: map[string]string{"owner": "acme", "repo": "r" + countStr(i)}},
			Decision: &rules.Decision{Effect: effects[i%len(effects)], Reason: "seeded"}})
	}
	if err := l.AppendAll(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for i, c := range [][2]string{{"", strings.Repeat("a", 40)}, {strings.Repeat("a", 40), strings.Repeat("b", 40)}} {
		if err := l.Event(ctx, "tf", audit.EventPolicyApplied, map[string]any{"old": c[0], "new": c[1], "ref": "main", "repository": "/srv/policy", "who": "pat", "init": i == 0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, ctx context.Context, js string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return n
}

// The Traffic page past 200 rows: the chart, an older page, a time range;
// the Policy page's history and chain status; the narrow layout's cards.
func TestBrowserPagingChartHistory(t *testing.T) {
	f := start(t)
	seedTraffic(t, f.home, 250)
	ctx := browser(t)
	shots := artifacts(t)
	origin := "http://" + f.d.Addr()
	do(t, ctx, "light mode", colorScheme("light"))
	do(t, ctx, "login", chromedp.Navigate(f.d.URL()), chromedp.WaitVisible("#traffic"), chromedp.WaitVisible("#chart svg"))

	if n := count(t, ctx, `document.querySelectorAll("#rows tr").length`); n != initialRows {
		t.Errorf("first page: %d rows, want %d", n, initialRows)
	}
	// Every seeded decision is in the chart's window (the last 24 hours),
	// in bars of each colour.
	cap, err := chromedp.Run(ctx, chromedp.Text("#chart figcaption"))
	if err != nil || !strings.HasPrefix(cap, "250 decisions") {
		t.Errorf("chart caption %q (%v)", cap, err)
	}
	for _, c := range []string{"c-allow", "c-deny", "c-require_approval"} {
		if n := count(t, ctx, `document.querySelectorAll("#chart rect.`+c+`").length`); n == 0 {
			t.Errorf("no %s bars", c)
		}
	}
	shootView(t, ctx, shots, "traffic-chart")

	// The older page holds the rest, is not live, and leads back.
	older, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("older").href`))
	if err != nil || !strings.Contains(older, "before=") {
		t.Fatalf("older link %q (%v)", older, err)
	}
	do(t, ctx, "older page", chromedp.Click("#older"), chromedp.WaitVisible("#newest"))
	if n := count(t, ctx, `document.querySelectorAll("#rows tr").length`); n != 50 {
		t.Errorf("older page: %d rows, want 50", n)
	}
	if state, err := chromedp.Run(ctx, chromedp.Text("#live-state")); err != nil || state != "not live" {
		t.Errorf("older page live state %q (%v)", state, err)
	}
	if n := count(t, ctx, `document.querySelectorAll("#older").length`); n != 0 {
		t.Error("the last page links to an older one")
	}

	// The last hour: about a sixth of the seeded rows.
	do(t, ctx, "last hour", chromedp.Navigate(origin+"/traffic?range=1h"), chromedp.WaitVisible("#chart svg"))
	if n := count(t, ctx, `document.querySelectorAll("#rows tr").length`); n < 35 || n > 45 {
		t.Errorf("last hour: %d rows, want about 42", n)
	}
	// An explicit window in the past is not live.
	from := time.Now().UTC().Add(-5 * time.Hour).Format(timeLayout)
	to := time.Now().UTC().Add(-4 * time.Hour).Format(timeLayout)
	do(t, ctx, "window", chromedp.Navigate(origin+"/traffic?since="+from+"&until="+to), chromedp.WaitVisible("#chart svg"))
	if n := count(t, ctx, `document.querySelectorAll("#rows tr").length`); n < 35 || n > 45 {
		t.Errorf("an hour's window: %d rows, want about 42", n)
	}
	if state, _ := chromedp.Run(ctx, chromedp.Text("#live-state")); state != "not live" {
		t.Errorf("a past window is live: %q", state)
	}

	// Policy: the two applies, newest first, and the chain's status.
	do(t, ctx, "policy page", chromedp.Navigate(origin+"/policy"), chromedp.WaitVisible("#history table"))
	hist, err := chromedp.Run(ctx, chromedp.Text("#history tbody tr:first-child"))
	if err != nil || !strings.Contains(hist, "aaaaaaaaaaaa") || !strings.Contains(hist, "bbbbbbbbbbbb") || !strings.Contains(hist, "pat") {
		t.Errorf("newest apply row %q (%v)", hist, err)
	}
	if n := count(t, ctx, `document.querySelectorAll("#history tbody tr").length`); n != 2 {
		t.Errorf("history: %d rows, want 2", n)
	}
	chain, err := chromedp.Run(ctx, chromedp.Text("#chain"))
	if err != nil || !strings.Contains(chain, "Chain intact") {
		t.Errorf("chain status %q (%v)", chain, err)
	}
	shoot(t, ctx, shots, "policy-history")

	// Narrow: the Traffic table is cards, nothing wider than the screen,
	// every value labelled.
	do(t, ctx, "narrow", chromedp.EmulateViewport(360, 740), chromedp.Navigate(origin+"/traffic"), chromedp.WaitVisible("#chart svg"))
	if wide := count(t, ctx, `(document.documentElement.scrollWidth > window.innerWidth + 1 || document.getElementById("traffic").scrollWidth > document.querySelector(".table-wrap").clientWidth + 1) ? 1 : 0`); wide != 0 {
		t.Error("the Traffic table is wider than a 360 px screen")
	}
	label, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("#rows td[data-label=Target]"), "::before").content`))
	if err != nil || label != `"Target"` {
		t.Errorf("narrow cells are not labelled: %q (%v)", label, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("rows").scrollIntoView(), true`)); err != nil {
		t.Fatal(err)
	}
	shootView(t, ctx, shots, "narrow-traffic-cards")
}

// shootView saves a PNG of what the window shows (not the whole page).
func shootView(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot %s: %d bytes, %v", name, len(png), err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}
