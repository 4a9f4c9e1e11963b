package dashboard

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/gitops"
)

func TestTrafficFilterAppliesToRowsAndStream(t *testing.T) {
	f := start(t)
	ctx, cancel := deadline(t, 30*time.Second)
	defer cancel()
	f.send(ctx, http.MethodGet, "/repos/acme/app")
	f.send(ctx, http.MethodDelete, "/repos/acme/app")
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())

	code, page := get(t, f.d, c, ck, "/traffic?decision=deny")
	if code != http.StatusOK || !strings.Contains(page, "github.repo.delete") || strings.Contains(page, `<td data-label="Action">github.repo.get</td>`) {
		t.Fatalf("deny filter: %d\n%s", code, page)
	}
	code, page = get(t, f.d, c, ck, "/traffic?action=github.repo.g*&gateway=agent-1")
	if code != http.StatusOK || !strings.Contains(page, `<td data-label="Action">github.repo.get</td>`) || strings.Contains(page, "github.repo.delete") {
		t.Fatalf("action filter: %d\n%s", code, page)
	}
	if code, page = get(t, f.d, c, ck, "/traffic?gateway=other"); code != http.StatusOK || !strings.Contains(page, `id="no-rows"`) {
		t.Fatalf("another gateway's filter shows rows: %d\n%s", code, page)
	}
	if code, _ = get(t, f.d, c, ck, "/traffic?decision=maybe"); code != http.StatusBadRequest {
		t.Fatalf("an unknown decision: %d, want 400", code)
	}

	// The stream applies the same filter: an allow then a deny gives the
	// deny only.
	end, err := audit.End(audit.Dir(f.home))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+f.d.Addr()+"/traffic/events?decision=deny&after="+itoa(end), nil)
	req.AddCookie(ck)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	f.send(ctx, http.MethodGet, "/repos/acme/app")
	f.send(ctx, http.MethodDelete, "/repos/acme/other")
	sc := bufio.NewScanner(res.Body)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok && event == "row" {
			if !strings.Contains(d, `"action":"github.repo.delete"`) || !strings.Contains(d, `"target":"acme/other"`) {
				t.Fatalf("first streamed row: %s", d)
			}
			return
		}
	}
	t.Fatalf("the stream ended without a row: %v", sc.Err())
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// waitOutcomes waits until the log in home holds at least n outcome
// records.
func waitOutcomes(t *testing.T, ctx context.Context, home string, n int) {
	t.Helper()
	for {
		got := 0
		if err := audit.Scan(audit.Dir(home), audit.Filter{Kind: audit.KindOutcome}, func(*audit.Record) error { got++; return nil }); err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d outcome records after waiting, want %d", got, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestRecordPage(t *testing.T) {
	f := start(t)
	ctx, cancel := deadline(t, 30*time.Second)
	defer cancel()
	f.send(ctx, http.MethodDelete, "/repos/acme/app")
	// Outcomes are queued, not waited for: the page shows one once it
	// is written.
	waitOutcomes(t, ctx, f.home, 1)
	var seq uint64
	if err := audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error { seq = r.Seq; return nil }); err != nil || seq == 0 {
		t.Fatalf("no decision recorded: %v", err)
	}
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())
	code, page := get(t, f.d, c, ck, "/traffic/"+itoa(seq))
	if code != http.StatusOK || !strings.Contains(page, "no-repo-deletes") || !strings.Contains(page, "Repositories are deleted by hand.") || !strings.Contains(page, "403") {
		t.Fatalf("record %d: %d\n%s", seq, code, page)
	}
	if strings.Contains(strings.ToLower(page), "user-agent") || strings.Contains(strings.ToLower(page), "proxy-authorization") {
		t.Fatalf("the record page shows request headers:\n%s", page)
	}
	if code, _ := get(t, f.d, c, ck, "/traffic/99999"); code != http.StatusNotFound {
		t.Errorf("an unknown record: %d, want 404", code)
	}
	if code, _ := get(t, f.d, c, ck, "/traffic/x"); code != http.StatusBadRequest {
		t.Errorf("a bad record number: %d, want 400", code)
	}
	// An event record is not a decision.
	if code, _ := get(t, f.d, c, ck, "/traffic/1"); code != http.StatusNotFound {
		t.Errorf("record 1 (gateway.started): %d, want 404", code)
	}
}

func TestApproveForSessionFromPlainForm(t *testing.T) {
	f := start(t)
	ctx, cancel := deadline(t, 30*time.Second)
	defer cancel()
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())
	held := f.sendAsync(ctx, http.MethodPut, mergePath)
	var page string
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, page = get(t, f.d, c, ck, "/approvals")
		if strings.Contains(page, `class="card approval"`) || time.Now().After(end) {
			break
		}
	}
	i := strings.Index(page, `action="/approvals/`)
	if i < 0 {
		t.Fatalf("no pending approval on the page:\n%s", page)
	}
	id := page[i+len(`action="/approvals/`):]
	id = id[:strings.IndexByte(id, '"')]
	csrf := csrfOf(t, page)
	res := post(t, f.d, c, ck, "/approvals/"+id, url.Values{"csrf": {csrf}, "decision": {"session"}, "reason": {"release day"}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("answering: %d", res.StatusCode)
	}
	if rep := waitReply(t, held); rep.status != http.StatusOK {
		t.Fatalf("the approved request: %+v", rep)
	}
	// The same merge again passes on the session grant, without a hold.
	if rep := f.send(ctx, http.MethodPut, mergePath); rep.status != http.StatusOK {
		t.Fatalf("the same request after a session approval: %+v", rep)
	}
	var approver string
	audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		if r.Approval != nil && r.Approval.Approver != "" {
			approver = r.Approval.Approver
		}
		return nil
	})
	if approver != "tester (dashboard)" {
		t.Fatalf("recorded approver %q", approver)
	}
	// Answering again: it is gone, which the page says.
	if res := post(t, f.d, c, ck, "/approvals/"+id, url.Values{"csrf": {csrf}, "decision": {"deny"}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("answering twice: %d", res.StatusCode)
	}
	if _, page = get(t, f.d, c, ck, "/approvals"); !strings.Contains(page, "no longer pending") {
		t.Fatalf("after answering twice:\n%s", page)
	}
	if res := post(t, f.d, c, ck, "/approvals/"+id, url.Values{"csrf": {csrf}, "decision": {"maybe"}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("a bad decision: %d", res.StatusCode)
	}
	if _, page = get(t, f.d, c, ck, "/approvals"); !strings.Contains(page, "Choose approve") {
		t.Fatalf("after a bad decision:\n%s", page)
	}
}

func TestPolicyPageShowsPinAndSavedPlan(t *testing.T) {
	f := start(t)
	ctx, cancel := deadline(t, 60*time.Second)
	defer cancel()
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())
	if _, page := get(t, f.d, c, ck, "/policy"); !strings.Contains(page, "No policy is pinned") || !strings.Contains(page, "merges-need-a-human") || !strings.Contains(page, `id="no-plan"`) {
		t.Fatalf("policy page without a pin:\n%s", page)
	}
	if _, err := gitops.Init(ctx, gitops.InitOptions{Dir: filepath.Join(t.TempDir(), "policy"), Home: f.home}); err != nil {
		t.Fatal(err)
	}
	pin, err := gitops.ReadPin(f.home)
	if err != nil {
		t.Fatal(err)
	}
	plan := &gitops.Plan{FormatVersion: gitops.PlanFormatVersion, Created: time.Now(), Repository: pin.Repository, Ref: pin.Ref,
		Base: gitops.Side{Commit: pin.Commit, Source: "pinned"}, Candidate: gitops.Side{Commit: pin.Commit, Source: "candidate"}}
	if err := os.MkdirAll(filepath.Dir(PlanPath(f.home)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := gitops.WritePlanFile(PlanPath(f.home), plan); err != nil {
		t.Fatal(err)
	}
	_, page := get(t, f.d, c, ck, "/policy")
	if !strings.Contains(page, pin.Short()) || !strings.Contains(page, pin.Repository) || strings.Contains(page, `id="no-plan"`) || !strings.Contains(page, `class="plan"`) {
		t.Fatalf("policy page with a pin and a plan:\n%s", page)
	}
	// A broken plan file is reported, not shown as absent.
	if err := os.WriteFile(PlanPath(f.home), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, page = get(t, f.d, c, ck, "/policy"); !strings.Contains(page, "reading the saved plan") {
		t.Fatalf("policy page with a broken plan:\n%s", page)
	}
}

func TestKillSwitchScopesFromForms(t *testing.T) {
	f := start(t)
	ctx, cancel := deadline(t, 30*time.Second)
	defer cancel()
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())
	_, page := get(t, f.d, c, ck, "/killswitch")
	csrf := csrfOf(t, page)
	// The fixture's gateway runs no sandbox: every page says so.
	if !strings.Contains(page, `id="unisolated"`) || !strings.Contains(page, "Not isolated: agent-1 runs its agent outside") || !strings.Contains(page, "no: advisory") {
		t.Errorf("the kill switch page does not say the gateway is not isolated:\n%s", page)
	}
	activate := func(scope, name string) int {
		return post(t, f.d, c, ck, "/killswitch/activate", url.Values{"csrf": {csrf}, "scope": {scope}, "name": {name}, "confirm": {"yes"}}, nil).StatusCode
	}
	if code := activate("connector", "Git Hub"); code != http.StatusBadRequest {
		t.Fatalf("a bad connector name: %d", code)
	}
	if code := activate("gateway", "other"); code != http.StatusSeeOther {
		t.Fatalf("gateway scope: %d", code)
	}
	if rep := f.send(ctx, http.MethodGet, "/repos/acme/app"); rep.status != http.StatusOK {
		t.Fatalf("another gateway's switch stopped this one: %+v", rep)
	}
	// An agent's switch (tf serve) stops that agent only: this gateway's
	// session names none. Its form deactivates it.
	if code := activate("agent", "ci runner"); code != http.StatusBadRequest {
		t.Fatalf("a bad agent name: %d", code)
	}
	if code := activate("agent", "ci"); code != http.StatusSeeOther {
		t.Fatalf("agent scope: %d", code)
	}
	if rep := f.send(ctx, http.MethodGet, "/repos/acme/app"); rep.status != http.StatusOK {
		t.Fatalf("an agent's switch stopped a session of no agent: %+v", rep)
	}
	_, page = get(t, f.d, c, ck, "/killswitch")
	if !strings.Contains(page, "agent ci") || !strings.Contains(page, `name="scope" value="agent"><input type="hidden" name="name" value="ci">`) {
		t.Fatalf("the agent switch is not shown with its own form:\n%s", page)
	}
	post(t, f.d, c, ck, "/killswitch/deactivate", url.Values{"csrf": {csrf}, "scope": {"agent"}, "name": {"ci"}, "confirm": {"yes"}}, nil)
	if _, page = get(t, f.d, c, ck, "/killswitch"); strings.Contains(page, `data-scope="agent ci"`) {
		t.Fatal("the agent switch stayed on after its form deactivated it")
	}
	if code := activate("connector", "github"); code != http.StatusSeeOther {
		t.Fatalf("connector scope: %d", code)
	}
	if rep := f.send(ctx, http.MethodGet, "/repos/acme/app"); rep.status != http.StatusForbidden {
		t.Fatalf("the github switch let a github request through: %+v", rep)
	}
	_, page = get(t, f.d, c, ck, "/killswitch")
	if !strings.Contains(page, "connector github") || !strings.Contains(page, "gateway other") || !strings.Contains(page, "Kill switch on:") {
		t.Fatalf("kill switch page:\n%s", page)
	}
	// Deactivation needs its confirmation too.
	post(t, f.d, c, ck, "/killswitch/deactivate", url.Values{"csrf": {csrf}, "scope": {"connector"}, "name": {"github"}}, nil)
	if rep := f.send(ctx, http.MethodGet, "/repos/acme/app"); rep.status != http.StatusForbidden {
		t.Fatalf("an unconfirmed deactivation turned the switch off: %+v", rep)
	}
	post(t, f.d, c, ck, "/killswitch/deactivate", url.Values{"csrf": {csrf}, "scope": {"connector"}, "name": {"github"}, "confirm": {"yes"}}, nil)
	if rep := f.send(ctx, http.MethodGet, "/repos/acme/app"); rep.status != http.StatusOK {
		t.Fatalf("after deactivation: %+v", rep)
	}
}

// The Traffic page and the record page show a model call's token usage,
// read from its outcome record.
func TestTrafficShowsTokens(t *testing.T) {
	f := start(t)
	ctx, cancel := deadline(t, 30*time.Second)
	defer cancel()
	if rep := f.modelCall(ctx); rep.status != http.StatusOK {
		t.Fatalf("model call: %+v", rep)
	}
	f.send(ctx, http.MethodGet, "/repos/acme/app")
	waitOutcomes(t, ctx, f.home, 2)
	c := browserless()
	ck := login(t, f.d, c, f.d.URL())
	code, page := get(t, f.d, c, ck, "/traffic")
	if code != http.StatusOK || !strings.Contains(page, "<th>Tokens</th>") ||
		!strings.Contains(page, `<td class="tokens" data-label="Tokens">in 12 out 7 cache r3 w0</td>`) ||
		!strings.Contains(page, `<td class="tokens" data-label="Tokens"></td>`) {
		t.Fatalf("traffic page: %d\n%s", code, page)
	}
	var seq uint64
	for _, r := range decisionsOf(t, f.home) {
		if r.Action.Type == "anthropic.messages.create" {
			seq = r.Seq
		}
	}
	code, page = get(t, f.d, c, ck, "/traffic/"+itoa(seq))
	if code != http.StatusOK || !strings.Contains(page, "<dt>Tokens</dt><dd>12 in, 7 out, cache 3 read, 0 written (claude-sonnet-4-5)</dd>") {
		t.Fatalf("record page: %d\n%s", code, page)
	}
}

func decisionsOf(t *testing.T, home string) []*audit.Record {
	t.Helper()
	var recs []*audit.Record
	err := audit.Scan(audit.Dir(home), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
