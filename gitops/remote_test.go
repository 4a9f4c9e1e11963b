package gitops

import (
	"context"
	"errors"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// policyRemote is a bare policy repository served by a real git
// http-backend on loopback, as a team's git server would serve it.
type policyRemote struct {
	bare string
	url  string
	srv  *httptest.Server
}

func gitCmd(t testing.TB, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Mallory", "GIT_AUTHOR_EMAIL=m@example.com",
		"GIT_COMMITTER_NAME=Mallory", "GIT_COMMITTER_EMAIL=m@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newPolicyRemote serves a bare copy of the fixture's main branch.
func newPolicyRemote(t testing.TB, f *fixture) *policyRemote {
	t.Helper()
	root := t.TempDir()
	bare := filepath.Join(root, "policy.git")
	gitCmd(t, root, "init", "-q", "--bare", "-b", "main", bare)
	gitCmd(t, bare, "config", "http.receivepack", "true")
	gitCmd(t, f.dir, "push", "-q", bare, "main:main")
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &policyRemote{bare: bare, url: srv.URL + "/policy.git", srv: srv}
}

// pushMain pushes the fixture's main to the remote.
func (pr *policyRemote) pushMain(t testing.TB, f *fixture) {
	t.Helper()
	gitCmd(t, f.dir, "push", "-q", pr.bare, "main:main")
}

func TestRemoteApplyTwoGatewaysFollow(t *testing.T) {
	operator := testHome(t)
	gw1, gw2 := testHome(t), testHome(t)
	f, first, second := twoCommits(t)
	remote := newPolicyRemote(t, f)
	rp := RemotePin{Remote: remote.url}
	ctx := testCtx(t)

	// Nothing applied yet: a gateway says so and pins nothing.
	if _, err := SyncRemote(ctx, gw1, &rp); !errors.Is(err, ErrNoApplied) {
		t.Fatalf("sync before any apply: %v", err)
	}
	if _, err := ReadPin(gw1); !errors.Is(err, ErrNoPin) {
		t.Fatalf("a failed sync wrote a pin: %v", err)
	}

	res, err := RemoteApply(ctx, RemoteApplyOptions{Home: operator, Remote: rp, Rev: first, Who: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.New != first || res.Applied.Policy != first || res.Applied.Previous != "" || res.Applied.Who != "alice" {
		t.Fatalf("first apply: %+v %+v", res, res.Applied)
	}
	// The operator's home follows nothing: its pin is untouched.
	if _, err := ReadPin(operator); !errors.Is(err, ErrNoPin) {
		t.Fatalf("the operator's home got a pin: %v", err)
	}
	for _, gw := range []string{gw1, gw2} {
		s, err := SyncRemote(ctx, gw, &rp)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Changed || s.Pin.Commit != first || s.Pin.Applied != res.Applied.Commit || s.Pin.AppliedBy != "alice" || s.Pin.Repository != remote.url || s.Pin.Ref != "main" {
			t.Fatalf("sync: %+v pin %+v", s, s.Pin)
		}
		p, _, err := LoadPinned(gw)
		if err != nil || p.Revision != first {
			t.Fatalf("loading the synced pin: %v", err)
		}
	}
	// A second sync with nothing new changes nothing and records nothing.
	if s, err := SyncRemote(ctx, gw1, &rp); err != nil || s.Changed {
		t.Fatalf("idle sync: %+v %v", s, err)
	}

	// The default candidate is the tip of the branch: second.
	res2, err := RemoteApply(ctx, RemoteApplyOptions{Home: operator, Remote: rp, Who: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Old != first || res2.New != second || res2.Applied.Previous != res.Applied.Commit {
		t.Fatalf("second apply: %+v %+v", res2, res2.Applied)
	}
	// Applying what is applied is a no-op.
	if again, err := RemoteApply(ctx, RemoteApplyOptions{Home: operator, Remote: rp}); err != nil || again.Changed {
		t.Fatalf("re-apply: %+v %v", again, err)
	}
	for _, gw := range []string{gw1, gw2} {
		s, err := SyncRemote(ctx, gw, &rp)
		if err != nil || !s.Changed || s.Pin.Commit != second || s.Pin.AppliedBy != "bob" {
			t.Fatalf("sync after the second apply: %+v %v", s, err)
		}
		hist, err := History(gw)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 2 || hist[0].New != first || hist[1].Old != first || hist[1].New != second || hist[1].Who != "bob" {
			t.Fatalf("the gateway's audit log: %+v", hist)
		}
	}
	// The record names the remote apply.
	var details map[string]any
	audit.Scan(audit.Dir(gw1), audit.Filter{Kind: audit.KindEvent}, func(r *audit.Record) error {
		if r.Event == audit.EventPolicyApplied {
			details = r.Details
		}
		return nil
	})
	if details["apply_commit"] != res2.Applied.Commit || details["remote_ref"] != DefaultAppliedRef {
		t.Errorf("policy.applied details %v", details)
	}

	// tf policy log reads the ref's history, newest first; real git sees
	// the same chain.
	log, err := RemoteLog(ctx, gw2, &rp)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 || log[0].Policy != second || log[0].Who != "bob" || log[1].Policy != first || log[1].Who != "alice" ||
		log[0].Subject != "deny pushes to release branches" || log[1].Branch != "main" {
		t.Fatalf("remote log %+v", log)
	}
	// (Below the first apply, git's first parents go on into the policy
	// branch's history; tf policy log stops at the first apply.)
	subjects := gitCmd(t, remote.bare, "log", "--first-parent", "-n2", "--format=%an %s", DefaultAppliedRef)
	want := "bob tf policy apply: " + second[:12] + "\nalice tf policy apply: " + first[:12]
	if subjects != want {
		t.Errorf("git log of the ref:\n%s\nwant\n%s", subjects, want)
	}
	if tree := gitCmd(t, remote.bare, "rev-parse", DefaultAppliedRef+"^{tree}"); tree != gitCmd(t, remote.bare, "rev-parse", second+"^{tree}") {
		t.Errorf("the apply commit's tree is not the policy's")
	}

	// Someone with push access rewinds the ref to the first apply (an
	// older policy that passed every check once): the gateways refuse to
	// go back until a person accepts the rewrite.
	gitCmd(t, remote.bare, "update-ref", DefaultAppliedRef, res.Applied.Commit)
	_, err = SyncRemote(ctx, gw1, &rp)
	if !errors.Is(err, ErrNotFastForward) || !strings.Contains(err.Error(), "--accept-rewrite") {
		t.Fatalf("a rewound ref: %v", err)
	}
	if pin, _ := ReadPin(gw1); pin.Commit != second {
		t.Fatalf("the pin followed the rewind: %+v", pin)
	}
	s, err := SyncRemoteAcceptingRewrite(ctx, gw1, &rp)
	if err != nil || !s.Changed || s.Pin.Commit != first {
		t.Fatalf("accepting the rewrite: %+v %v", s, err)
	}
}

func TestRemoteApplyNotFastForward(t *testing.T) {
	alice, bob := testHome(t), testHome(t)
	f, first, second := twoCommits(t)
	remote := newPolicyRemote(t, f)
	rp := RemotePin{Remote: remote.url}
	ctx := testCtx(t)
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: alice, Remote: rp, Rev: first}); err != nil {
		t.Fatal(err)
	}
	// Both homes follow the ref and have seen the first apply.
	for _, h := range []string{alice, bob} {
		if _, err := SyncRemote(ctx, h, &rp); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: bob, Remote: rp, Rev: second, Who: "bob"}); err != nil {
		t.Fatal(err)
	}
	// Alice has not seen bob's apply: hers would drop it from view.
	third := f.commit(t, "third", map[string]string{"README": "x"}, nil)
	remote.pushMain(t, f)
	_, err := RemoteApply(ctx, RemoteApplyOptions{Home: alice, Remote: rp, Rev: third})
	if !errors.Is(err, ErrNotFastForward) || !strings.Contains(err.Error(), "applied by bob") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("stale apply: %v", err)
	}
	// A saved plan against the old base is stale too.
	pl := &Plan{Repository: remote.url}
	pl.Base.Commit, pl.Candidate.Commit = first, third
	other := *pl
	other.Repository, other.Base.Commit = "https://elsewhere.example/policy.git", log0(t, alice, &rp)
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: alice, Remote: rp, Plan: &other, Force: true}); !errors.Is(err, ErrStalePlan) || !strings.Contains(err.Error(), "planned for repository") {
		t.Fatalf("plan for another repository: %v", err)
	}
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: alice, Remote: rp, Plan: pl, Force: true}); !errors.Is(err, ErrStalePlan) {
		t.Fatalf("stale plan: %v", err)
	}
	// --force applies on top of bob's apply; the chain keeps it.
	res, err := RemoteApply(ctx, RemoteApplyOptions{Home: alice, Remote: rp, Rev: third, Force: true, Who: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	log, err := RemoteLog(ctx, alice, &rp)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 3 || log[0].Commit != res.Applied.Commit || log[1].Who != "bob" {
		t.Fatalf("log after --force: %+v", log)
	}

	// A concurrent apply between fetch and push: the server must still
	// hold what tf fetched, or the push fails.
	r, tip, err := openRemote(ctx, bob, &rp)
	if err != nil {
		t.Fatal(err)
	}
	gitCmd(t, remote.bare, "update-ref", DefaultAppliedRef, log[1].Commit)
	err = pushApplied(ctx, r, &rp, tip.Hash, plumbing.NewHash(log[0].Commit), false)
	if !errors.Is(err, ErrNotFastForward) {
		t.Fatalf("push over a moved ref: %v", err)
	}
}

const badTest = `  - name: reads are refused (they are not)
    action: {type: github.repo.get}
    expect: deny
`

// log0 is the policy commit at the tip of the remote's applied ref.
func log0(t testing.TB, home string, rp *RemotePin) string {
	t.Helper()
	log, err := RemoteLog(testCtx(t), home, rp)
	if err != nil {
		t.Fatal(err)
	}
	return log[0].Policy
}

// forge makes, in the bare remote, an apply commit for policy commit pol
// with real git, as an agent with push access could, and moves the ref.
func forge(t testing.TB, bare, pol, parent string) string {
	t.Helper()
	args := []string{"commit-tree", pol + "^{tree}"}
	if parent != "" {
		args = append(args, "-p", parent)
	}
	args = append(args, "-p", pol, "-m", "tf policy apply: forged\n\nTf-Policy-Commit: "+pol+"\nTf-Branch: main\nTf-Applied-By: alice")
	h := gitCmd(t, bare, args...)
	gitCmd(t, bare, "update-ref", DefaultAppliedRef, h)
	return h
}

func TestSyncRemoteRefusesAndKeepsTheLastGoodPolicy(t *testing.T) {
	operator, gw := testHome(t), testHome(t)
	f, first, _ := twoCommits(t)
	remote := newPolicyRemote(t, f)
	key, armored := newKey(t, "Pat Policy")
	trustKey(t, gw, "pat", armored)
	signed := f.commit(t, "signed policy", map[string]string{"tameflare.yaml": basePolicy + releaseRule + "# signed\n"}, key)
	remote.pushMain(t, f)
	rp := RemotePin{Remote: remote.url, RequireSigned: true}
	ctx := testCtx(t)

	// The operator applies the signed commit; the gateway takes it.
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: operator, Remote: RemotePin{Remote: remote.url}, Rev: signed}); err != nil {
		t.Fatal(err)
	}
	s, err := SyncRemote(ctx, gw, &rp)
	if err != nil || s.Pin.Commit != signed || !strings.Contains(s.Signer, "Pat Policy") {
		t.Fatalf("signed sync: %+v %v", s, err)
	}
	good, err := ReadPin(gw)
	if err != nil {
		t.Fatal(err)
	}

	// An agent that can push to the repository moves the ref itself.
	failing := f.commit(t, "policy whose tests fail", map[string]string{"tests/base.yaml": baseTests + releaseTest + badTest}, key)
	unsigned := f.commit(t, "unsigned policy", map[string]string{"tests/base.yaml": baseTests + releaseTest}, nil)
	remote.pushMain(t, f)
	cases := []struct {
		name, want string
		move       func() string
	}{
		{"unsigned", "not signed by a trusted key", func() string { return forge(t, remote.bare, unsigned, good.Applied) }},
		{"failing tests", "policy tests failed", func() string { return forge(t, remote.bare, failing, good.Applied) }},
		{"a plain commit", "not a tf apply commit", func() string {
			gitCmd(t, remote.bare, "update-ref", DefaultAppliedRef, unsigned)
			return unsigned
		}},
		{"a tree that is not the policy's", "its tree is not the tree", func() string {
			h := gitCmd(t, remote.bare, "commit-tree", first+"^{tree}", "-p", good.Applied, "-p", signed, "-m", "x\n\nTf-Policy-Commit: "+signed)
			gitCmd(t, remote.bare, "update-ref", DefaultAppliedRef, h)
			return h
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.move()
			_, err := SyncRemote(ctx, gw, &rp)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "refusing "+DefaultAppliedRef) {
				t.Fatalf("sync of a forged ref: %v (want %q)", err, tc.want)
			}
			pin, err := ReadPin(gw)
			if err != nil || *pin != *good {
				t.Fatalf("the pin moved: %+v %v", pin, err)
			}
		})
	}

	// The remote unreachable: a clear error, the pin stays.
	remote.srv.Close()
	_, err = SyncRemote(ctx, gw, &rp)
	if err == nil || !strings.Contains(err.Error(), "fetching "+DefaultAppliedRef+" from "+remote.url) {
		t.Fatalf("unreachable remote: %v", err)
	}
	if pin, err := ReadPin(gw); err != nil || *pin != *good {
		t.Fatalf("the pin moved: %+v %v", pin, err)
	}
	if p, _, err := LoadPinned(gw); err != nil || p.Revision != signed {
		t.Fatalf("the last good policy does not load: %v", err)
	}
}

func TestFollowerMovesThePinAndTheWatcherReloads(t *testing.T) {
	operator, gw := testHome(t), testHome(t)
	f, first, second := twoCommits(t)
	remote := newPolicyRemote(t, f)
	rp := RemotePin{Remote: remote.url}
	ctx, cancel := context.WithCancel(testCtx(t))
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: operator, Remote: rp, Rev: first}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	fl := &Follower{Home: gw, Remote: rp, Interval: 20 * time.Millisecond, OnError: func(err error) { errs <- err }}
	reloaded := make(chan string, 8)
	w := &Watcher{Home: gw, Interval: 10 * time.Millisecond, OnChange: func(p *rules.Policy, _ *Pin) { reloaded <- p.Revision }}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); fl.Run(ctx) }()
	go func() { defer wg.Done(); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	next := func() string {
		select {
		case rev := <-reloaded:
			return rev
		case err := <-errs:
			t.Fatalf("follower: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("the gateway did not reload")
		}
		return ""
	}
	if rev := next(); rev != first {
		t.Fatalf("loaded %s, want %s", rev, first)
	}
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: operator, Remote: rp}); err != nil {
		t.Fatal(err)
	}
	if rev := next(); rev != second {
		t.Fatalf("loaded %s, want %s", rev, second)
	}
}

func TestRemotePinValidate(t *testing.T) {
	for _, tc := range []struct {
		rp   RemotePin
		want string
	}{
		{RemotePin{}, "remote is empty"},
		{RemotePin{Remote: "/srv/policy.git"}, "not a URL"},
		{RemotePin{Remote: "https://u:secret@example.com/p.git"}, "carries credentials"},
		{RemotePin{Remote: "https://ghp_token@example.com/p.git"}, "carries credentials"},
		{RemotePin{Remote: "ssh://git:pw@example.com/p.git"}, "carries credentials"},
		{RemotePin{Remote: "https://example.com/p.git\n"}, "control characters"},
		{RemotePin{Remote: "https://example.com/p.git", Ref: "applied"}, "not a full ref name"},
		{RemotePin{Remote: "https://example.com/p.git", Ref: "refs/heads/main"}, "branch or tag"},
		{RemotePin{Remote: "https://example.com/p.git", Ref: "refs/tf/a..b"}, "not a full ref name"},
	} {
		err := tc.rp.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.rp, err, tc.want)
		}
	}
	for _, remote := range []string{"git@github.com:acme/policy.git", "ssh://git@github.com/acme/policy.git", "https://github.com/acme/policy.git"} {
		ok := RemotePin{Remote: remote}
		if err := ok.Validate(); err != nil || ok.RefName() != DefaultAppliedRef {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// FuzzParseAppliedCommit feeds arbitrary commit objects to the parser of
// apply commits, which reads what anyone with push access can write.
func FuzzParseAppliedCommit(f *testing.F) {
	pol := strings.Repeat("ab", 20)
	f.Add("tree "+strings.Repeat("0", 40)+"\nparent "+pol+"\nauthor a <a> 1 +0000\ncommitter a <a> 1 +0000\n\nx\n\nTf-Policy-Commit: "+pol+"\nTf-Applied-By: a\x1b[31m\n", pol)
	f.Add("tree x\n\n\n\nTf-Policy-Commit: ", "")
	f.Fuzz(func(t *testing.T, raw, body string) {
		st := memory.NewStorage()
		if body != "" {
			o := st.NewEncodedObject()
			o.SetType(plumbing.BlobObject)
			w, _ := o.Writer()
			w.Write([]byte(body))
			w.Close()
			st.SetEncodedObject(o)
		}
		o := st.NewEncodedObject()
		o.SetType(plumbing.CommitObject)
		w, _ := o.Writer()
		w.Write([]byte(raw))
		w.Close()
		c, err := object.DecodeCommit(st, o)
		if err != nil {
			return
		}
		a, err := ParseAppliedCommit(c)
		if err != nil {
			return
		}
		if !isHexHash(a.Policy) || strings.ContainsFunc(a.Who, func(r rune) bool { return r < ' ' || r == 0x7f }) || len(a.Who) > maxWhoLen {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// The README's rule against an agent's push to the applied ref: it loads,
// refuses a push to refs/tf/applied, and lets a branch push through.
func TestReadmeRuleRefusesPushesToTheAppliedRef(t *testing.T) {
	const rule = `  - name: the-pin-moves-by-tf-policy-apply
    actions: [github.repo.push]
    when: params.ref startsWith "refs/tf/"
    decision: deny
    reason: The applied policy moves only by tf policy apply.
`
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), rule) {
		t.Fatal("the README's rule differs from this test's")
	}
	p, err := rules.LoadFS(mapFS(map[string]string{"tameflare.yaml": basePolicy + rule}), "t")
	if err != nil {
		t.Fatal(err)
	}
	d := (&rules.Decider{Policy: p}).Decide(&rules.Action{Type: "github.repo.push", Params: map[string]any{"ref": DefaultAppliedRef}})
	if d.Effect != rules.Deny || d.Rule != "the-pin-moves-by-tf-policy-apply" {
		t.Errorf("push to the applied ref: %+v", d)
	}
	d = (&rules.Decider{Policy: p}).Decide(&rules.Action{Type: "github.repo.push", Params: map[string]any{"ref": "refs/heads/x", "branch": "x"}})
	if d.Effect != rules.Allow {
		t.Errorf("push to a branch: %+v", d)
	}
}

// BenchmarkSyncRemoteUnchanged is what a following gateway pays each
// interval when nothing was applied: one fetch from a local git
// http-backend and a comparison.
func BenchmarkSyncRemoteUnchanged(b *testing.B) {
	operator, gw := testHome(b), testHome(b)
	f, first, _ := twoCommits(b)
	remote := newPolicyRemote(b, f)
	rp := RemotePin{Remote: remote.url}
	ctx := testCtx(b)
	if _, err := RemoteApply(ctx, RemoteApplyOptions{Home: operator, Remote: rp, Rev: first}); err != nil {
		b.Fatal(err)
	}
	if _, err := SyncRemote(ctx, gw, &rp); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := SyncRemote(ctx, gw, &rp)
		if err != nil || s.Changed {
			b.Fatal(s, err)
		}
	}
}
