package gitops

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"

	tfhome "github.com/tameflare/tf/home"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// TrustedKeysDir holds the armored OpenPGP public keys whose signatures
// make a commit acceptable under require_signed, under $TF_HOME.
const TrustedKeysDir = "trusted-keys"

// maxKeyBytes bounds one trusted key file.
const maxKeyBytes = 1 << 20

// ErrStalePlan is returned when a saved plan was computed against a commit
// that is no longer pinned.
var ErrStalePlan = errors.New("stale plan")

// ErrTestsFailed is returned when a candidate policy fails its tests.
var ErrTestsFailed = errors.New("policy tests failed")

// ErrUnsigned is returned when a commit must be signed by a trusted key and
// is not.
var ErrUnsigned = errors.New("commit is not signed by a trusted key")

// ApplyOptions configure Apply.
type ApplyOptions struct {
	Home string
	// Plan, when set, is a saved plan: its candidate is applied, and only if
	// its base is still the pinned commit.
	Plan *Plan
	// Rev is the revision to apply when there is no plan; empty means the
	// tip of the pinned branch.
	Rev string
	// RequireSigned demands a trusted signature even if the pin does not.
	RequireSigned bool
	// Who is recorded as the person applying; empty means the OS user.
	Who string
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	Old, New string
	// Changed is false when the candidate was already pinned.
	Changed bool
	Pin     *Pin
	Policy  *rules.Policy
	Tests   *rules.TestReport
	// Signer names the trusted key that signed the commit, when checked.
	Signer string
}

// Apply moves the pin to a candidate commit after checking it: a saved plan
// must still match the pinned commit, the candidate must load and pass its
// tests, and under require_signed it must be signed by a trusted key. The
// move is recorded in the audit log as policy.applied; running gateways
// pick it up through their Watcher.
func Apply(ctx context.Context, opts ApplyOptions) (*ApplyResult, error) {
	pin, err := ReadPin(opts.Home)
	if err != nil {
		return nil, err
	}
	r, err := OpenRepository(ctx, opts.Home, pin.Repository, isRemote(pin.Repository))
	if err != nil {
		return nil, err
	}
	var c *object.Commit
	switch {
	case opts.Plan != nil:
		pl := opts.Plan
		if pl.Base.Commit != pin.Commit {
			return nil, fmt.Errorf("%w: planned against %s, pinned is %s; run tf policy plan again", ErrStalePlan, shortHash(pl.Base.Commit), pin.Short())
		}
		if pl.Repository != pin.Repository {
			return nil, fmt.Errorf("%w: planned for repository %s, pinned is %s; run tf policy plan again", ErrStalePlan, pl.Repository, pin.Repository)
		}
		if pl.Candidate.Commit == "" {
			return nil, fmt.Errorf("the plan's candidate is a working tree (%s), not a commit; commit it, then plan and apply the commit", pl.Candidate.Worktree)
		}
		if c, err = commitAt(r, pl.Candidate.Commit); err != nil {
			return nil, fmt.Errorf("plan candidate: %w", err)
		}
	case opts.Rev != "":
		if c, err = Resolve(r, opts.Rev); err != nil {
			return nil, err
		}
	default:
		if c, err = refTip(r, pin.Ref); err != nil {
			return nil, err
		}
	}
	res := &ApplyResult{Old: pin.Commit, New: c.Hash.String(), Pin: pin}
	p, fsys, err := LoadCommit(c, repoLabel(pin.Repository))
	if err != nil {
		return nil, fmt.Errorf("refusing to apply: %w", err)
	}
	res.Policy = p
	if res.Tests, err = runTests(p, fsys); err != nil {
		return nil, fmt.Errorf("refusing to apply %s: %w", shortHash(res.New), err)
	}
	if opts.RequireSigned || pin.RequireSigned {
		if res.Signer, err = VerifySigned(opts.Home, c); err != nil {
			return nil, fmt.Errorf("refusing to apply: %w", err)
		}
	}
	if res.New == pin.Commit {
		return res, nil
	}
	next := *pin
	next.Commit = res.New
	if err := movePin(ctx, opts.Home, pin, &next, opts.Who, nil); err != nil {
		return nil, err
	}
	res.Pin, res.Changed = &next, true
	return res, nil
}

// runTests runs a candidate's tests; failing or missing tests are errors,
// so that no policy goes into force untested.
func runTests(p *rules.Policy, fsys fs.FS) (*rules.TestReport, error) {
	rep, err := rules.RunTests(p, fsys, p.Source, mcp.Baseline)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrTestsFailed, err)
	}
	if rep.Failed > 0 {
		var msgs []string
		for _, r := range rep.Results {
			if !r.Passed {
				msgs = append(msgs, r.Pos.Error())
			}
		}
		return rep, fmt.Errorf("%w (%s):\n%s", ErrTestsFailed, rep.Summary(), strings.Join(msgs, "\n"))
	}
	return rep, nil
}

// movePin writes next as the pin and records policy.applied. If the record
// cannot be written, the old pin is put back: a policy change that the
// audit log does not show must not stay in force.
func movePin(ctx context.Context, home string, old, next *Pin, who string, extra map[string]any) error {
	next.AppliedBy, next.AppliedAt = who, time.Now().UTC().Truncate(time.Second)
	// A local move leaves the remote's apply chain: a gateway that follows
	// a remote ref goes back to the ref's tip on its next fetch.
	next.Applied = ""
	if who == "" {
		next.AppliedBy = osUser()
	}
	return commitPin(ctx, home, old, old.Commit, next, withWho(extra, who))
}

// commitPin writes next as the pin and records policy.applied from
// oldCommit; old is the pin to put back when the record cannot be
// written (nil: remove the pin).
func commitPin(ctx context.Context, home string, old *Pin, oldCommit string, next *Pin, extra map[string]any) error {
	if err := WritePin(home, next); err != nil {
		return err
	}
	if err := recordApplied(ctx, home, oldCommit, next, extra); err != nil {
		if old == nil {
			if rerr := os.Remove(filepath.Join(home, PinFile)); rerr != nil {
				return fmt.Errorf("%w; removing the new pin also failed: %w", err, rerr)
			}
			return fmt.Errorf("%w (the new pin was removed)", err)
		}
		if rerr := WritePin(home, old); rerr != nil {
			return fmt.Errorf("%w; restoring the previous pin also failed: %w", err, rerr)
		}
		return fmt.Errorf("%w (the pin was restored to %s)", err, old.Short())
	}
	return nil
}

func withWho(extra map[string]any, who string) map[string]any {
	if who == "" {
		return extra
	}
	m := map[string]any{"who": who}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// recordApplied appends a policy.applied event: old and new commit, the
// repository and branch, and who applied it.
func recordApplied(ctx context.Context, home, old string, pin *Pin, extra map[string]any) error {
	d := map[string]any{
		"old":        old,
		"new":        pin.Commit,
		"repository": pin.Repository,
		"ref":        pin.Ref,
		"who":        osUser(),
	}
	for k, v := range extra {
		d[k] = v
	}
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "tf"})
	if err != nil {
		return fmt.Errorf("recording policy.applied: %w", err)
	}
	err = l.Event(ctx, "tf", audit.EventPolicyApplied, d)
	if cerr := l.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording policy.applied: %w", err)
	}
	return nil
}

func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

// VerifySigned checks that c carries an OpenPGP signature by one of the
// armored public keys in $TF_HOME/trusted-keys and returns who signed.
func VerifySigned(home string, c *object.Commit) (string, error) {
	short := shortHash(c.Hash.String())
	if strings.TrimSpace(c.PGPSignature) == "" {
		return "", fmt.Errorf("%w: %s has no signature", ErrUnsigned, short)
	}
	dir := filepath.Join(home, TrustedKeysDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading trusted keys: %w", err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	keys := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := tfhome.ReadFile(filepath.Join(dir, e.Name()), maxKeyBytes)
		if err != nil {
			return "", fmt.Errorf("reading trusted key %s: %w", e.Name(), err)
		}
		keys++
		// One file at a time: an armored key ring is read one armor
		// block at a time, so concatenating files would hide all but one.
		ent, err := c.Verify(string(data))
		if err != nil || ent == nil {
			continue
		}
		for name := range ent.Identities {
			return fmt.Sprintf("%s (key %X, %s)", name, ent.PrimaryKey.KeyId, e.Name()), nil
		}
		return fmt.Sprintf("key %X (%s)", ent.PrimaryKey.KeyId, e.Name()), nil
	}
	if keys == 0 {
		return "", fmt.Errorf("%w: no trusted keys in %s (add armored OpenPGP public keys there)", ErrUnsigned, dir)
	}
	return "", fmt.Errorf("%w: %s is signed, but not by any of the %d keys in %s", ErrUnsigned, short, keys, dir)
}

// An Applied is one policy.applied event of the audit log.
type Applied struct {
	Time       time.Time `json:"time"`
	Seq        uint64    `json:"seq"`
	Old        string    `json:"old,omitempty"`
	New        string    `json:"new"`
	Repository string    `json:"repository,omitempty"`
	Ref        string    `json:"ref,omitempty"`
	Who        string    `json:"who,omitempty"`
	Rollback   bool      `json:"rollback,omitempty"`
	Init       bool      `json:"init,omitempty"`
}

// History lists the policy.applied events of the audit log, oldest first.
func History(home string) ([]Applied, error) {
	var out []Applied
	err := audit.Scan(audit.Dir(home), audit.Filter{Kind: audit.KindEvent}, func(r *audit.Record) error {
		if r.Event != audit.EventPolicyApplied {
			return nil
		}
		str := func(k string) string { s, _ := r.Details[k].(string); return s }
		flag := func(k string) bool { b, _ := r.Details[k].(bool); return b }
		out = append(out, Applied{
			Time: r.Time, Seq: r.Seq, Old: str("old"), New: str("new"), Repository: str("repository"),
			Ref: str("ref"), Who: str("who"), Rollback: flag("rollback"), Init: flag("init"),
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading policy history: %w", err)
	}
	return out, nil
}

// RollbackOptions configure Rollback.
type RollbackOptions struct {
	Home string
	Who  string
}

// Rollback moves the pin back to the commit that was in force before the
// last apply that led to the pinned commit, and records policy.applied
// with rollback: true. The earlier commit must still load, and under
// require_signed still carry a trusted signature; its tests are not
// re-run, since it was in force before and a rollback is for emergencies.
func Rollback(ctx context.Context, opts RollbackOptions) (*ApplyResult, error) {
	pin, err := ReadPin(opts.Home)
	if err != nil {
		return nil, err
	}
	hist, err := History(opts.Home)
	if err != nil {
		return nil, err
	}
	target := ""
	for i := len(hist) - 1; i >= 0; i-- {
		if h := hist[i]; h.New == pin.Commit && h.Repository == pin.Repository {
			target = h.Old
			break
		}
	}
	if target == "" {
		return nil, fmt.Errorf("no earlier commit to roll back to: the audit log shows no apply that led to %s from another commit", pin.Short())
	}
	r, err := OpenRepository(ctx, opts.Home, pin.Repository, false)
	if err != nil {
		return nil, err
	}
	c, err := commitAt(r, target)
	if err != nil {
		return nil, fmt.Errorf("rollback target: %w", err)
	}
	p, _, err := LoadCommit(c, repoLabel(pin.Repository))
	if err != nil {
		return nil, fmt.Errorf("refusing to roll back: %w", err)
	}
	res := &ApplyResult{Old: pin.Commit, New: target, Policy: p}
	if pin.RequireSigned {
		if res.Signer, err = VerifySigned(opts.Home, c); err != nil {
			return nil, fmt.Errorf("refusing to roll back: %w", err)
		}
	}
	next := *pin
	next.Commit = target
	if err := movePin(ctx, opts.Home, pin, &next, opts.Who, map[string]any{"rollback": true}); err != nil {
		return nil, err
	}
	res.Pin, res.Changed = &next, true
	return res, nil
}

// Shown is what tf policy show prints: the pin and the commit behind it.
type Shown struct {
	Pin     *Pin      `json:"pin"`
	Author  string    `json:"author"`
	Date    time.Time `json:"date"`
	Subject string    `json:"subject"`
	Mode    string    `json:"mode"`
	Default string    `json:"default"`
	Rules   int       `json:"rules"`
	Source  string    `json:"source"`
	// OnRef reports whether the pinned commit is on the pin's branch (its
	// tip or an ancestor of it); Branches lists the branches that hold it
	// when it is not (a commit applied from another branch).
	OnRef    bool     `json:"on_ref"`
	Branches []string `json:"branches,omitempty"`
}

// Show describes the pinned policy.
func Show(ctx context.Context, home string) (*Shown, error) {
	pin, err := ReadPin(home)
	if err != nil {
		return nil, err
	}
	r, c, err := pinnedCommit(ctx, home, pin)
	if err != nil {
		return nil, err
	}
	p, _, err := LoadCommit(c, repoLabel(pin.Repository))
	if err != nil {
		return nil, err
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	s := &Shown{
		Pin: pin, Author: fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email), Date: c.Author.When,
		Subject: subject, Mode: string(p.Mode), Default: string(p.Default), Rules: len(p.Rules), Source: p.Source,
	}
	if tip, err := refTip(r, pin.Ref); err == nil {
		s.OnRef = contains(tip, c)
	}
	if !s.OnRef {
		s.Branches = branchesHolding(r, c)
	}
	return s, nil
}

// contains reports whether commit c is tip or one of its ancestors.
func contains(tip, c *object.Commit) bool {
	if tip.Hash == c.Hash {
		return true
	}
	ok, err := c.IsAncestor(tip)
	return err == nil && ok
}

// branchesHolding lists the local and origin branches whose tip holds c.
func branchesHolding(r *git.Repository, c *object.Commit) []string {
	var out []string
	refs, err := r.References()
	if err != nil {
		return nil
	}
	_ = refs.ForEach(func(ref *plumbing.Reference) error {
		n := ref.Name()
		if ref.Type() != plumbing.HashReference || !(n.IsBranch() || n.IsRemote()) {
			return nil
		}
		if tip, err := r.CommitObject(ref.Hash()); err == nil && contains(tip, c) {
			out = append(out, n.Short())
		}
		return nil
	})
	sort.Strings(out)
	return out
}
