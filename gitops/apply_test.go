package gitops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

func TestApplyMovesThePinAndTheWatcherReloads(t *testing.T) {
	home := testHome(t)
	f, first, second := twoCommits(t)
	pinTo(t, home, f.dir, first)
	writeLog(t, home, releaseLog)

	p0, _, err := LoadPinned(home)
	if err != nil {
		t.Fatal(err)
	}
	push := &rules.Action{Type: "github.repo.push", Params: branch("release/2")}
	if d := (&rules.Decider{Policy: p0}).Decide(push); d.Effect != rules.Allow {
		t.Fatalf("before apply a release push is %s, want allow", d.Effect)
	}

	// A gateway's watcher, started on the policy it has.
	ctx, cancel := context.WithCancel(testCtx(t))
	reloaded := make(chan *rules.Policy, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	w := &Watcher{Home: home, Commit: first, Interval: 10 * time.Millisecond,
		OnChange: func(p *rules.Policy, _ *Pin) { reloaded <- p },
		OnError:  func(err error) { t.Errorf("watcher: %v", err) },
	}
	go func() { defer wg.Done(); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Apply(testCtx(t), ApplyOptions{Home: home, Plan: pl, Who: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Old != first || res.New != second {
		t.Fatalf("apply %+v", res)
	}
	pin, err := ReadPin(home)
	if err != nil || pin.Commit != second {
		t.Fatalf("pin after apply: %+v, %v", pin, err)
	}

	var p1 *rules.Policy
	select {
	case p1 = <-reloaded:
	case <-ctx.Done():
		t.Fatal("the watcher did not see the new pin")
	}
	if p1.Revision != second || !strings.HasPrefix(p1.Source, "policy@") {
		t.Errorf("reloaded policy revision %s source %s", p1.Revision, p1.Source)
	}
	if d := (&rules.Decider{Policy: p1}).Decide(push); d.Effect != rules.Deny || d.Rule != "no-release-pushes" || d.Revision != second {
		t.Errorf("after apply a release push gives %+v, want deny by no-release-pushes at %s", d, second)
	}

	hist, err := History(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Old != first || hist[0].New != second || hist[0].Who != "alice" || hist[0].Rollback {
		t.Fatalf("history %+v", hist)
	}

	// The saved plan is now stale: it was computed against first.
	_, err = Apply(testCtx(t), ApplyOptions{Home: home, Plan: pl})
	if !errors.Is(err, ErrStalePlan) || !strings.Contains(err.Error(), "planned against "+first[:12]+", pinned is "+second[:12]) {
		t.Errorf("stale plan: err = %v", err)
	}

	// Roll back: the pin returns to first, recorded as a rollback, and
	// the watcher follows.
	rb, err := Rollback(testCtx(t), RollbackOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if rb.New != first || rb.Old != second {
		t.Errorf("rollback %+v", rb)
	}
	select {
	case p := <-reloaded:
		if p.Revision != first {
			t.Errorf("after rollback the watcher loaded %s", p.Revision)
		}
	case <-ctx.Done():
		t.Fatal("the watcher did not see the rollback")
	}
	hist, err = History(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || !hist[1].Rollback || hist[1].New != first {
		t.Errorf("history after rollback %+v", hist)
	}
}

func TestApplyRefusesFailingTests(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	bad := f.commit(t, "weaken", map[string]string{"tameflare.yaml": strings.Replace(basePolicy+releaseRule, `startsWith "release/"`, `== "release"`, 1)}, nil)
	_, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: bad})
	if !errors.Is(err, ErrTestsFailed) {
		t.Fatalf("err = %v, want ErrTestsFailed", err)
	}
	// A candidate that does not load is refused too.
	broken := f.commit(t, "typo", map[string]string{"tameflare.yaml": basePolicy + "  - name: x\n    actions: [github.repo.push]\n    when: params.branch startWith \"x\"\n    decision: deny\n"}, nil)
	if _, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: broken}); err == nil || !strings.Contains(err.Error(), "tameflare.yaml:") {
		t.Errorf("broken policy: err = %v, want a positioned load error", err)
	}
	if pin, _ := ReadPin(home); pin.Commit != first {
		t.Errorf("a refused apply moved the pin to %s", pin.Commit)
	}
}

func TestApplyRequireSigned(t *testing.T) {
	home := testHome(t)
	f := newFixture(t)
	first := f.commit(t, "base", map[string]string{"tameflare.yaml": basePolicy, "tests/base.yaml": baseTests}, nil)
	pinTo(t, home, f.dir, first)
	unsigned := f.commit(t, "unsigned", map[string]string{"tameflare.yaml": basePolicy + releaseRule, "tests/base.yaml": baseTests + releaseTest}, nil)

	alice, alicePub := newKey(t, "alice")
	mallory, _ := newKey(t, "mallory")
	trustKey(t, home, "alice", alicePub)

	_, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: unsigned, RequireSigned: true})
	if !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned commit: err = %v, want ErrUnsigned", err)
	}
	// Signed, but by a key that is not trusted.
	byMallory := f.commit(t, "mallory's", map[string]string{"README.md": "hi\n"}, mallory)
	if _, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: byMallory, RequireSigned: true}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("commit signed by an untrusted key: err = %v", err)
	}
	signed := f.commit(t, "alice's", map[string]string{"README.md": "hello\n"}, alice)
	res, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: signed, RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.New != signed || !strings.Contains(res.Signer, "alice") {
		t.Errorf("signed apply %+v", res)
	}

	// require_signed in the pin applies without the flag.
	pin, _ := ReadPin(home)
	pin.RequireSigned = true
	if err := WritePin(home, pin); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: unsigned}); !errors.Is(err, ErrUnsigned) {
		t.Errorf("pin require_signed ignored: err = %v", err)
	}
	// No trusted keys at all: refused with a reason that says so.
	os.RemoveAll(filepath.Join(home, TrustedKeysDir))
	if _, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: signed}); !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), "no trusted keys") {
		t.Errorf("no trusted keys: err = %v", err)
	}
}

func TestApplyWorktreePlanRefused(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Worktree: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(testCtx(t), ApplyOptions{Home: home, Plan: pl}); err == nil || !strings.Contains(err.Error(), "working tree") {
		t.Errorf("err = %v, want a refusal of a working-tree plan", err)
	}
}

func TestApplyRecordFailureRestoresThePin(t *testing.T) {
	home := testHome(t)
	f, first, second := twoCommits(t)
	pinTo(t, home, f.dir, first)
	// An audit directory that cannot be opened: a file in its place.
	if err := os.WriteFile(audit.Dir(home), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(testCtx(t), ApplyOptions{Home: home, Rev: second})
	if err == nil || !strings.Contains(err.Error(), "recording policy.applied") {
		t.Fatalf("err = %v", err)
	}
	if pin, _ := ReadPin(home); pin.Commit != first {
		t.Errorf("pin left at %s after the record failed", pin.Commit)
	}
}

func TestRollbackWithoutHistory(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	if _, err := Rollback(testCtx(t), RollbackOptions{Home: home}); err == nil || !strings.Contains(err.Error(), "no earlier commit") {
		t.Errorf("err = %v", err)
	}
}

func TestShow(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	s, err := Show(testCtx(t), home)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pin.Commit != first || s.Rules != 3 || s.Mode != "enforce" || s.Author != "Pat Policy <pat@example.com>" || s.Subject != "base policy" {
		t.Errorf("show %+v", s)
	}
	if !s.OnRef || len(s.Branches) != 0 {
		t.Errorf("the first commit is on main: on_ref %v, branches %v", s.OnRef, s.Branches)
	}

	// A commit of another branch applied: show does not claim main.
	if err := f.wt.Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName("experiment"), Create: true}); err != nil {
		t.Fatal(err)
	}
	other := f.commit(t, "an experiment", map[string]string{"tameflare.yaml": basePolicy + "# an experiment\n"}, nil)
	pinTo(t, home, f.dir, other)
	if s, err = Show(testCtx(t), home); err != nil {
		t.Fatal(err)
	}
	if s.OnRef || len(s.Branches) != 1 || s.Branches[0] != "experiment" || s.Pin.Ref != "main" {
		t.Errorf("a commit of branch experiment: on_ref %v, branches %v", s.OnRef, s.Branches)
	}
}

func TestWatcherKeepsThePolicyWhenTheNewOneFails(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	broken := f.commit(t, "broken", map[string]string{"tameflare.yaml": "version: 2\n"}, nil)

	ctx, cancel := context.WithCancel(testCtx(t))
	errs := make(chan error, 8)
	changes := make(chan string, 8)
	var wg sync.WaitGroup
	wg.Add(1)
	w := &Watcher{Home: home, Commit: first, Interval: 5 * time.Millisecond,
		OnChange: func(p *rules.Policy, _ *Pin) { changes <- p.Revision },
		OnError:  func(err error) { errs <- err },
	}
	go func() { defer wg.Done(); w.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	pinTo(t, home, f.dir, broken)
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "unknown policy version 2") {
			t.Errorf("watcher error %v", err)
		}
	case c := <-changes:
		t.Fatalf("a policy that does not load was handed over: %s", c)
	case <-ctx.Done():
		t.Fatal("no error reported")
	}
	// A garbage pin is reported too, once. It is renamed into place as
	// WritePin does: a watcher poll between os.WriteFile's truncate and
	// its write would see an empty file, a second error.
	if err := writeFileAtomic(filepath.Join(home, PinFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "decoding pin") {
			t.Errorf("watcher error %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no error for a garbage pin")
	}
	// Back to the first commit: that is what the caller has, so no change.
	pinTo(t, home, f.dir, first)
	time.Sleep(50 * time.Millisecond) // ten polls
	select {
	case c := <-changes:
		t.Errorf("re-pinning the loaded commit gave a change to %s", c)
	case err := <-errs:
		t.Errorf("unexpected error %v", err)
	default:
	}
}

// A pin written by other means than tf policy apply (by hand, or by a
// process that should not) is checked when a gateway loads it: a commit
// whose tests fail, or an unsigned one under require_signed, is refused.
func TestLoadPinnedChecksWhatApplyChecks(t *testing.T) {
	home := testHome(t)
	f := newFixture(t)
	first := f.commit(t, "base", map[string]string{"tameflare.yaml": basePolicy, "tests/base.yaml": baseTests}, nil)
	pinTo(t, home, f.dir, first)
	if _, _, err := LoadPinned(home); err != nil {
		t.Fatalf("a good pin: %v", err)
	}

	weak := f.commit(t, "weaken", map[string]string{"tameflare.yaml": strings.Replace(basePolicy+releaseRule, `startsWith "release/"`, `== "release"`, 1), "tests/base.yaml": baseTests + releaseTest}, nil)
	pin, _ := ReadPin(home)
	pin.Commit = weak
	if err := WritePin(home, pin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadPinned(home); !errors.Is(err, ErrTestsFailed) {
		t.Errorf("a pin to a commit whose tests fail: err = %v, want ErrTestsFailed", err)
	}

	_, alicePub := newKey(t, "alice")
	trustKey(t, home, "alice", alicePub)
	unsigned := f.commit(t, "unsigned", map[string]string{"tameflare.yaml": basePolicy + releaseRule, "tests/base.yaml": baseTests + releaseTest}, nil)
	pin.Commit, pin.RequireSigned = unsigned, true
	if err := WritePin(home, pin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadPinned(home); !errors.Is(err, ErrUnsigned) {
		t.Errorf("an unsigned pin under require_signed: err = %v, want ErrUnsigned", err)
	}
}
