package gitops

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testCtx is bounded by the test's deadline so that nothing can hang.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	d := 2 * time.Minute
	if tt, ok := t.(*testing.T); ok {
		if dl, ok := tt.Deadline(); ok {
			d = time.Until(dl) - 5*time.Second
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testHome gives the test its own $TF_HOME and $HOME, so that neither the
// state directory nor git's global config of the machine is read.
func testHome(t testing.TB) string {
	t.Helper()
	h := filepath.Join(t.TempDir(), "tfhome")
	if err := os.MkdirAll(h, 0o700); err != nil {
		t.Fatal(err)
	}
	if tt, ok := t.(*testing.T); ok {
		tt.Setenv("TF_HOME", h)
		tt.Setenv("HOME", t.TempDir())
		tt.Setenv("XDG_CONFIG_HOME", t.TempDir())
	}
	return h
}

var epoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

const basePolicy = `version: 1
mode: enforce
default: deny
rules:
  - name: reads
    actions: [github.*.get, github.repo.pull]
    decision: allow
  - name: pushes
    actions: [github.repo.push]
    decision: allow
    reason: Agents push branches.
  - name: merges
    actions: [github.pr.merge]
    decision: require_approval
`

const baseTests = `cases:
  - name: a read is allowed
    action: {type: github.repo.get, resource: {owner: acme, repo: app}}
    expect: allow
  - name: a push is allowed
    action: {type: github.repo.push, params: {branch: feature/x}}
    expect: allow
  - name: a merge is held
    action: {type: github.pr.merge, params: {number: 1}}
    expect: require_approval
`

const releaseRule = `  - name: no-release-pushes
    actions: [github.repo.push]
    when: params.branch startsWith "release/"
    decision: deny
    reason: Release branches are cut by people.
`

const releaseTest = `  - name: a push to a release branch is refused
    action: {type: github.repo.push, params: {branch: release/1}}
    expect: deny
    rule: no-release-pushes
`

// fixture is a policy repository with a working tree.
type fixture struct {
	dir  string
	repo *git.Repository
	wt   *git.Worktree
	n    int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policy")
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, repo: r, wt: wt}
}

// commit writes files (path → content; "" removes) and commits them at a
// fixed time, so that commit hashes are the same on every run.
func (f *fixture) commit(t testing.TB, msg string, files map[string]string, sign *openpgp.Entity) string {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(f.dir, filepath.FromSlash(name))
		if body == "" {
			if _, err := f.wt.Remove(name); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := f.wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	f.n++
	sig := &object.Signature{Name: "Pat Policy", Email: "pat@example.com", When: epoch.Add(time.Duration(f.n) * time.Hour)}
	h, err := f.wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, SignKey: sign})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// twoCommits builds the repository of the plan tests: the base policy, then
// a commit adding a rule that denies pushes to release/*.
func twoCommits(t testing.TB) (f *fixture, first, second string) {
	f = newFixture(t)
	first = f.commit(t, "base policy", map[string]string{"tameflare.yaml": basePolicy, "tests/base.yaml": baseTests}, nil)
	second = f.commit(t, "deny pushes to release branches", map[string]string{
		"tameflare.yaml":  basePolicy + releaseRule,
		"tests/base.yaml": baseTests + releaseTest,
	}, nil)
	return f, first, second
}

func pinTo(t testing.TB, home, repo, commit string) *Pin {
	t.Helper()
	p := &Pin{Version: PinVersion, Repository: repo, Ref: "main", Commit: commit}
	if err := WritePin(home, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// rec is one decision record for the test log.
type rec struct {
	typ      string
	params   map[string]any
	recorded rules.Effect
}

// writeLog appends decision records, one second apart, through the audit
// package's own writer.
func writeLog(t testing.TB, home string, recs []rec) {
	t.Helper()
	writeLogAs(t, home, "gw1", recs)
}

// writeLogAs is writeLog for the gateway of another machine.
func writeLogAs(t testing.TB, home, gateway string, recs []rec) {
	t.Helper()
	actions := make([]*rules.Action, len(recs))
	decisions := make([]rules.Decision, len(recs))
	for i, r := range recs {
		actions[i] = &rules.Action{
			ID: idOf(i), Type: r.typ, Connector: "github",
			Resource: map[string]string{"owner": "acme", "repo": "app"},
			Params:   r.params,
			Request:  rules.Request{Method: "POST", Host: "api.github.com"},
		}
		decisions[i] = rules.Decision{Effect: r.recorded, Revision: "old"}
	}
	appendDecisions(t, home, gateway, actions, decisions)
}

// appendDecisions records decisions[i] of actions[i] as request idOf(i),
// one second apart, through the audit package's own writer.
func appendDecisions(t testing.TB, home, gateway string, actions []*rules.Action, decisions []rules.Decision) {
	t.Helper()
	l, err := audit.Open(audit.Dir(home), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := testCtx(t)
	for i, a := range actions {
		err := l.Append(ctx, &audit.Record{
			Kind: audit.KindDecision, Time: epoch.Add(time.Duration(i) * time.Second),
			RequestID: idOf(i), Gateway: gateway, Action: a, Decision: &decisions[i],
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func idOf(i int) string { return "req-" + string(rune('a'+i/26%26)) + string(rune('a'+i%26)) }

func branch(b string) map[string]any { return map[string]any{"branch": b} }

// newKey makes an OpenPGP signing key and returns it with its armored
// public key.
func newKey(t testing.TB, name string) (*openpgp.Entity, []byte) {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return epoch }}
	e, err := openpgp.NewEntity(name, "", name+"@example.com", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return e, buf.Bytes()
}

func trustKey(t testing.TB, home, name string, armored []byte) {
	t.Helper()
	d := filepath.Join(home, TrustedKeysDir)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, name+".asc"), armored, 0o600); err != nil {
		t.Fatal(err)
	}
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
