package gitops

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

func TestStarterPolicyPassesItsTests(t *testing.T) {
	fsys := starterFS(starterFiles)
	p, err := rules.LoadFS(fsys, "starter")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rules.RunTests(p, fsys, "starter", mcp.Baseline)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Passed < len(p.Rules) {
		t.Fatalf("starter tests: %s for %d rules", rep.Summary(), len(p.Rules))
	}
	// Every rule is the deciding rule of at least one case.
	decided := map[string]bool{}
	for _, r := range rep.Results {
		decided[r.Got.Rule] = true
	}
	for _, r := range p.Rules {
		if !decided[r.Name] {
			t.Errorf("rule %s has no test case", r.Name)
		}
	}
	if !strings.HasPrefix(starterPolicy, "# yaml-language-server: $schema=https://tameflare.dev/schema/tameflare.schema.json\n") {
		t.Error("the starter policy does not start with the schema modeline")
	}
}

func TestInitIsIdempotent(t *testing.T) {
	home := testHome(t)
	dir := filepath.Join(t.TempDir(), "agent-policy")
	ctx := testCtx(t)

	res, err := Init(ctx, InitOptions{Dir: dir, Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Committed || !res.Pinned || len(res.Created) != len(starterFiles) {
		t.Fatalf("first init %+v", res)
	}
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := r.Head()
	if err != nil || head.Name() != plumbing.NewBranchReferenceName("main") || head.Hash().String() != res.Commit {
		t.Fatalf("HEAD %v %v, want main at %s", head, err, res.Commit)
	}
	c, err := r.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	// HOME is empty in tests, so git config has no user: tf's own identity.
	if c.Author.Name != "tf" || c.Author.Email != "tf@localhost" {
		t.Errorf("author %s <%s>", c.Author.Name, c.Author.Email)
	}
	p, pin, err := LoadPinned(home)
	if err != nil {
		t.Fatal(err)
	}
	if pin.Repository != dir || pin.Ref != "main" || pin.Commit != res.Commit || p.Revision != res.Commit || p.Source != "agent-policy@"+res.Commit[:12] {
		t.Errorf("pin %+v, revision %s, source %s", pin, p.Revision, p.Source)
	}
	hist, err := History(home)
	if err != nil || len(hist) != 1 || !hist[0].Init || hist[0].New != res.Commit {
		t.Errorf("history %+v %v", hist, err)
	}

	// The user's uncommitted edit of a starter file is theirs: a second
	// init neither commits nor reverts it.
	edited := "# Our agent policy\n"
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	pinBefore, _ := os.ReadFile(filepath.Join(home, PinFile))
	again, err := Init(ctx, InitOptions{Dir: dir, Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if again.Committed || again.Pinned || len(again.Created) != 0 || again.Commit != res.Commit {
		t.Errorf("second init changed something: %+v", again)
	}
	pinAfter, _ := os.ReadFile(filepath.Join(home, PinFile))
	if string(pinBefore) != string(pinAfter) {
		t.Error("second init rewrote the pin")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "README.md")); string(b) != edited {
		t.Error("second init changed the edited README")
	}
	if hist, _ := History(home); len(hist) != 1 {
		t.Errorf("second init recorded an apply: %+v", hist)
	}
}

func TestInitRefusesAForeignPolicy(t *testing.T) {
	home := testHome(t)
	dir := t.TempDir()
	mine := "version: 1\nrules: []\n"
	if err := os.WriteFile(filepath.Join(dir, rules.PolicyFile), []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Init(testCtx(t), InitOptions{Dir: dir, Home: home})
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, rules.PolicyFile)); string(b) != mine {
		t.Error("the existing policy was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
		t.Error("a refused init created a repository")
	}
	if _, err := ReadPin(home); err != ErrNoPin {
		t.Errorf("a refused init wrote a pin: %v", err)
	}
}

func TestInitRefusesToRepinAnotherRepository(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	dir := filepath.Join(t.TempDir(), "other")
	if _, err := Init(testCtx(t), InitOptions{Dir: dir, Home: home}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	res, err := Init(testCtx(t), InitOptions{Dir: dir, Home: home, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if pin, _ := ReadPin(home); pin.Repository != dir || pin.Commit != res.Commit {
		t.Errorf("forced init pin %+v", pin)
	}
}

func TestInitUsesGitConfigAuthor(t *testing.T) {
	home := testHome(t)
	cfg := "[user]\n\tname = Rae Reviewer\n\temail = rae@example.com\n"
	if err := os.WriteFile(filepath.Join(os.Getenv("HOME"), ".gitconfig"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "p")
	res, err := Init(testCtx(t), InitOptions{Dir: dir, Home: home})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := git.PlainOpen(dir)
	c, err := r.CommitObject(plumbing.NewHash(res.Commit))
	if err != nil {
		t.Fatal(err)
	}
	if c.Author.Name != "Rae Reviewer" || c.Author.Email != "rae@example.com" {
		t.Errorf("author %s <%s>", c.Author.Name, c.Author.Email)
	}
}

func TestLoadPinnedReadsTheCommitNotTheWorkingTree(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	// An uncommitted edit that would make the policy invalid.
	if err := os.WriteFile(filepath.Join(f.dir, "tameflare.yaml"), []byte("version: 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _, err := LoadPinned(home)
	if err != nil {
		t.Fatal(err)
	}
	if p.Revision != first || len(p.Rules) != 3 {
		t.Errorf("loaded %s with %d rules", p.Revision, len(p.Rules))
	}
}

// TestLoadPinnedBareRepository opens a bare repository by path, as gateways
// do with a repository that has no working tree.
func TestLoadPinnedBareRepository(t *testing.T) {
	home := testHome(t)
	f, _, second := twoCommits(t)
	bareDir := filepath.Join(t.TempDir(), "policy.git")
	bare, err := git.PlainInit(bareDir, true)
	if err != nil {
		t.Fatal(err)
	}
	// Copy every object and the branch: what a push would leave.
	objs, err := f.repo.Storer.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		t.Fatal(err)
	}
	if err := objs.ForEach(func(o plumbing.EncodedObject) error {
		_, err := bare.Storer.SetEncodedObject(o)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := bare.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName("main"), plumbing.NewHash(second))); err != nil {
		t.Fatal(err)
	}
	pinTo(t, home, bareDir, second)
	p, _, err := LoadPinned(home)
	if err != nil {
		t.Fatal(err)
	}
	if p.Revision != second || p.Source != "policy@"+second[:12] || len(p.Rules) != 4 {
		t.Errorf("bare: revision %s source %s rules %d", p.Revision, p.Source, len(p.Rules))
	}
}

// TestRemoteRepositoryIsCached pins a file:// URL: the repository is
// cloned bare into $TF_HOME/repos/<hash> and fetched again by plan and
// apply. (go-git's file transport runs git-upload-pack, as a real remote
// would be reached over a transport.)
func TestRemoteRepositoryIsCached(t *testing.T) {
	home := testHome(t)
	f := newFixture(t)
	first := f.commit(t, "base", map[string]string{"tameflare.yaml": basePolicy, "tests/base.yaml": baseTests}, nil)
	url := "file://" + f.dir
	pinTo(t, home, url, first)

	p, _, err := LoadPinned(home)
	if err != nil {
		t.Fatal(err)
	}
	if p.Revision != first || p.Source != "policy@"+first[:12] {
		t.Errorf("remote: revision %s source %s", p.Revision, p.Source)
	}
	cache := cacheDir(home, url)
	if !strings.HasPrefix(cache, filepath.Join(home, ReposDir)+string(filepath.Separator)) {
		t.Fatalf("cache %s is not under $TF_HOME/repos", cache)
	}
	if _, err := os.Stat(filepath.Join(cache, "HEAD")); err != nil {
		t.Fatalf("no bare cache: %v", err)
	}

	// A new commit upstream: plan fetches it as the branch tip, apply pins it.
	second := f.commit(t, "release rule", map[string]string{"tameflare.yaml": basePolicy + releaseRule, "tests/base.yaml": baseTests + releaseTest}, nil)
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Candidate.Commit != second {
		t.Errorf("plan candidate %s, want the fetched tip %s", pl.Candidate.Commit, second)
	}
	res, err := Apply(testCtx(t), ApplyOptions{Home: home, Plan: pl})
	if err != nil || res.New != second {
		t.Fatalf("apply %+v %v", res, err)
	}
}

// The agents' rules of tf init without --agent and of the built-in policy
// (tf run with no policy) are written twice, in Go and in YAML; they must
// say the same, or a user would get one answer from tf run and another
// after tf init.
func TestStarterAgentRulesMatchBuiltIn(t *testing.T) {
	starter := presetPolicy(t, GenericAgent)
	builtin, err := rules.LoadFS(testdata.ExamplePolicy(), "built-in")
	if err != nil {
		t.Fatal(err)
	}
	byName := func(p *rules.Policy) map[string]rules.Rule {
		m := map[string]rules.Rule{}
		for _, r := range p.Rules {
			m[r.Name] = r.Rule
		}
		return m
	}
	s, b := byName(starter), byName(builtin)
	for _, name := range []string{"agent-model-calls", "agent-service-endpoints", "no-agent-telemetry", "no-gemini-usage-statistics"} {
		sr, ok1 := s[name]
		br, ok2 := b[name]
		if !ok1 || !ok2 {
			t.Errorf("rule %s: in the starter %v, in the built-in policy %v", name, ok1, ok2)
			continue
		}
		sa, ba := slices.Sorted(slices.Values(sr.Actions)), slices.Sorted(slices.Values(br.Actions))
		if !slices.Equal(sa, ba) || sr.When != br.When || sr.Decision != br.Decision || sr.Reason != br.Reason {
			t.Errorf("rule %s differs:\nstarter:  %v %q %s %q\nbuilt-in: %v %q %s %q", name,
				sa, sr.When, sr.Decision, sr.Reason, ba, br.When, br.Decision, br.Reason)
		}
	}
}
