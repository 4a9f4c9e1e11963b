package gitops

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// DefaultAppliedRef is the ref of the policy repository's remote that
// tf policy apply moves and gateways follow.
const DefaultAppliedRef = "refs/tf/applied"

// Trailers of an apply commit. An apply commit is a commit on the applied
// ref's own history: its tree is the applied policy commit's tree, its
// parents are the previous apply commit (none for the first) and the
// policy commit, so `git log --first-parent refs/tf/applied` is the list
// of applies, who made them and when, which a server keeps although it
// keeps no reflog.
const (
	trailerPolicy  = "Tf-Policy-Commit"
	trailerBranch  = "Tf-Branch"
	trailerWho     = "Tf-Applied-By"
	maxWhoLen      = 200
	maxApplyWalk   = 10000
	fetchTimeout   = 2 * time.Minute
	trackingPrefix = "refs/tf-remote/"
)

// ErrNotFastForward is returned when the remote ref moved since this home
// last saw it, or moved during the apply: applying would drop an apply
// nobody here has seen.
var ErrNotFastForward = errors.New("the applied ref is not a fast-forward")

// ErrNoApplied is returned when the remote has no applied ref yet.
var ErrNoApplied = errors.New("the remote has no applied ref yet")

// A RemotePin is a policy repository's remote and the ref in it that
// names the policy in force (pin: {remote, ref} in $TF_HOME/config.yaml).
type RemotePin struct {
	// Remote is the repository's URL (https, http, ssh, git, file).
	Remote string
	// Ref is the ref moved by tf policy apply; empty means
	// DefaultAppliedRef.
	Ref string
	// RequireSigned refuses an applied policy commit that is not signed by
	// a key in $TF_HOME/trusted-keys.
	RequireSigned bool
	// Auth are the credentials for fetch and push; nil lets go-git's
	// transport use what it finds (the ssh agent for ssh, none for http).
	Auth transport.AuthMethod
}

// RefName is Ref or the default.
func (rp *RemotePin) RefName() string {
	if rp.Ref == "" {
		return DefaultAppliedRef
	}
	return rp.Ref
}

// Validate refuses a remote pin that cannot name one ref of one remote.
func (rp *RemotePin) Validate() error {
	if strings.TrimSpace(rp.Remote) == "" {
		return errors.New("pin: remote is empty")
	}
	if strings.ContainsFunc(rp.Remote, unicode.IsControl) {
		return errors.New("pin: remote contains control characters")
	}
	if !isRemote(rp.Remote) {
		return fmt.Errorf("pin: remote %q is not a URL (https://, ssh://, file://, or user@host:path)", rp.Remote)
	}
	if u, err := url.Parse(rp.Remote); err == nil && u.User != nil {
		_, has := u.User.Password()
		if has || u.Scheme == "http" || u.Scheme == "https" {
			// A password, or a token given as the user name, would land
			// in the pin, the audit log and every message that names the
			// remote. (ssh://git@host keeps its user.)
			return errors.New("pin: remote URL carries credentials; keep them in the keyring (pin: {credential: NAME})")
		}
	}
	ref := rp.RefName()
	if !strings.HasPrefix(ref, "refs/") || !validRef(ref) {
		return fmt.Errorf("pin: ref %q is not a full ref name such as %s", ref, DefaultAppliedRef)
	}
	if strings.HasPrefix(ref, "refs/heads/") || strings.HasPrefix(ref, "refs/tags/") {
		// A branch would be moved by anyone who may push to it, and
		// reviewed pushes are not applies.
		return fmt.Errorf("pin: ref %q is a branch or tag; use a ref of its own such as %s", ref, DefaultAppliedRef)
	}
	return nil
}

// trackingRef is where the cache keeps the remote's applied ref.
func trackingRef(ref string) plumbing.ReferenceName {
	return plumbing.ReferenceName(trackingPrefix + strings.TrimPrefix(ref, "refs/"))
}

// An AppliedCommit is one apply on the applied ref: which policy commit
// went into force, from which branch, who applied it and when.
type AppliedCommit struct {
	// Commit is the apply commit on the ref.
	Commit string `json:"commit"`
	// Policy is the policy commit it put in force.
	Policy string `json:"policy"`
	// Previous is the apply commit before it ("" for the first).
	Previous string    `json:"previous,omitempty"`
	Branch   string    `json:"branch,omitempty"`
	Who      string    `json:"who"`
	When     time.Time `json:"when"`
	// Subject is the policy commit's subject line, when it could be read.
	Subject string `json:"subject,omitempty"`
}

// ParseAppliedCommit reads an apply commit and checks its shape: a
// Tf-Policy-Commit trailer naming its last parent, whose tree it carries.
func ParseAppliedCommit(c *object.Commit) (*AppliedCommit, error) {
	short := shortHash(c.Hash.String())
	tr := trailers(c.Message)
	pol := tr[trailerPolicy]
	if !isHexHash(pol) {
		return nil, fmt.Errorf("%s is not a tf apply commit: no %s trailer with a full commit hash", short, trailerPolicy)
	}
	n := len(c.ParentHashes)
	if n < 1 || n > 2 || c.ParentHashes[n-1].String() != pol {
		return nil, fmt.Errorf("%s is not a tf apply commit: its parents are not [previous apply,] %s", short, shortHash(pol))
	}
	a := &AppliedCommit{
		Commit: c.Hash.String(), Policy: pol, Branch: tr[trailerBranch],
		Who: tr[trailerWho], When: c.Committer.When.UTC(),
	}
	if n == 2 {
		a.Previous = c.ParentHashes[0].String()
	}
	if a.Branch != "" && !validRef(a.Branch) {
		return nil, fmt.Errorf("%s: branch %q in %s is not a branch name", short, a.Branch, trailerBranch)
	}
	if a.Who == "" {
		a.Who = c.Committer.Name
	}
	a.Who = cleanWho(a.Who)
	pc, err := c.Parent(n - 1)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the applied policy commit %s: %w", short, shortHash(pol), err)
	}
	if pc.TreeHash != c.TreeHash {
		return nil, fmt.Errorf("%s is not a tf apply commit: its tree is not the tree of %s", short, shortHash(pol))
	}
	a.Subject, _, _ = strings.Cut(pc.Message, "\n")
	return a, nil
}

// cleanWho keeps a name printable and short: it comes from the remote.
func cleanWho(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > maxWhoLen {
		s = s[:maxWhoLen]
	}
	return strings.TrimSpace(s)
}

// trailers reads "Key: value" lines of a commit message's last paragraph.
func trailers(msg string) map[string]string {
	paras := strings.Split(strings.TrimSpace(msg), "\n\n")
	out := map[string]string{}
	for _, line := range strings.Split(paras[len(paras)-1], "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && !strings.ContainsAny(k, " \t") {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// openRemote opens the cache of rp's remote and fetches its branches and
// its applied ref. It returns the ref's tip, nil when the remote has none.
func openRemote(ctx context.Context, home string, rp *RemotePin) (*git.Repository, *object.Commit, error) {
	if err := rp.Validate(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	r, err := openCache(home, rp.Remote)
	if err != nil {
		return nil, nil, err
	}
	ref := rp.RefName()
	track := trackingRef(ref)
	err = r.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/heads/*", config.RefSpec("+" + ref + ":" + track.String())},
		Tags:       git.NoTags,
		Force:      true,
		Auth:       rp.Auth,
	})
	if errors.Is(err, git.NoMatchingRefSpecError{}) {
		// The remote has no applied ref yet: fetch the branches alone, and
		// forget a tracking ref whose remote ref was deleted.
		_ = r.Storer.RemoveReference(track)
		err = r.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin", RefSpecs: []config.RefSpec{"+refs/heads/*:refs/heads/*"},
			Tags: git.NoTags, Force: true, Auth: rp.Auth,
		})
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, nil, fmt.Errorf("fetching %s from %s: %w", ref, rp.Remote, err)
	}
	tip, err := r.Reference(track, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return r, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s of %s: %w", ref, rp.Remote, err)
	}
	c, err := r.CommitObject(tip.Hash())
	if err != nil {
		return nil, nil, fmt.Errorf("%s of %s does not name a commit: %w", ref, rp.Remote, err)
	}
	return r, c, nil
}

// openCache opens (creating it if need be) the bare cache of a remote.
func openCache(home, remote string) (*git.Repository, error) {
	dir := cacheDir(home, remote)
	r, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if r, err = git.PlainInit(dir, true); err != nil {
			return nil, fmt.Errorf("creating repository cache for %s: %w", remote, err)
		}
		if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{remote}}); err != nil {
			return nil, fmt.Errorf("configuring repository cache for %s: %w", remote, err)
		}
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening repository cache for %s: %w", remote, err)
	}
	return r, nil
}

// RemoteLog lists the applies on rp's ref, newest first, following the
// first parents of the apply chain. A commit on the ref that is not an
// apply commit ends the list with an error that says so, after the
// applies above it.
func RemoteLog(ctx context.Context, home string, rp *RemotePin) ([]AppliedCommit, error) {
	_, tip, err := openRemote(ctx, home, rp)
	if err != nil {
		return nil, err
	}
	if tip == nil {
		return nil, fmt.Errorf("%w: %s has no %s", ErrNoApplied, rp.Remote, rp.RefName())
	}
	var out []AppliedCommit
	for c := tip; c != nil && len(out) < maxApplyWalk; {
		a, err := ParseAppliedCommit(c)
		if err != nil {
			return out, err
		}
		out = append(out, *a)
		if a.Previous == "" {
			break
		}
		if c, err = c.Parent(0); err != nil {
			return out, fmt.Errorf("reading apply commit %s: %w", shortHash(a.Previous), err)
		}
	}
	return out, nil
}

// RemoteApplyOptions configure RemoteApply.
type RemoteApplyOptions struct {
	Home   string
	Remote RemotePin
	// Plan, Rev, RequireSigned and Who are as in ApplyOptions; Rev
	// resolves in the remote (a commit must have been pushed there to be
	// applied), and its default is the tip of Branch.
	Plan          *Plan
	Rev           string
	RequireSigned bool
	Who           string
	// Branch is what the apply records as the policy's branch (plans
	// compare against it); empty means the branch of the local pin when
	// it follows this remote, else that of the current apply, else main.
	Branch string
	// Force moves the ref even when it moved since this home last saw it,
	// or holds something that is not a tf apply chain.
	Force bool
}

// RemoteApplyResult says what RemoteApply did.
type RemoteApplyResult struct {
	ApplyResult
	// Applied is the new apply commit ("" when nothing changed).
	Applied *AppliedCommit
}

// RemoteApply moves rp's ref in the remote to a new apply commit for a
// candidate policy commit after the checks Apply makes (the plan's base,
// the policy loads and passes its tests, the signature under
// require_signed). The push is fast-forward only unless opts.Force; it
// does not touch the local pin (SyncRemote does, as gateways do).
func RemoteApply(ctx context.Context, opts RemoteApplyOptions) (*RemoteApplyResult, error) {
	rp := &opts.Remote
	r, tip, err := openRemote(ctx, opts.Home, rp)
	if err != nil {
		return nil, err
	}
	local, err := ReadPin(opts.Home)
	if err != nil && !errors.Is(err, ErrNoPin) {
		return nil, err
	}
	following := local != nil && local.Repository == rp.Remote
	var cur *AppliedCommit
	if tip != nil {
		cur, err = ParseAppliedCommit(tip)
		if err != nil && !opts.Force {
			return nil, fmt.Errorf("%w: %s on %s: %w; --force replaces it", ErrNotFastForward, rp.RefName(), rp.Remote, err)
		}
	}
	if following && local.Applied != "" && !opts.Force && (tip == nil || tip.Hash.String() != local.Applied) {
		now := "is gone"
		if cur != nil {
			now = fmt.Sprintf("is now %s (%s applied by %s at %s)", shortHash(cur.Commit), shortHash(cur.Policy), cur.Who, cur.When.Format(time.RFC3339))
		}
		return nil, fmt.Errorf("%w: %s on %s moved since this home last saw it (%s); it %s. Check tf policy log, tf policy sync, plan again, or use --force",
			ErrNotFastForward, rp.RefName(), rp.Remote, shortHash(local.Applied), now)
	}

	branch := opts.Branch
	switch {
	case branch != "":
	case following:
		branch = local.Ref
	case cur != nil && cur.Branch != "":
		branch = cur.Branch
	default:
		branch = "main"
	}
	if !validRef(branch) {
		return nil, fmt.Errorf("branch %q is not a branch name", branch)
	}
	var c *object.Commit
	switch {
	case opts.Plan != nil:
		pl := opts.Plan
		base := ""
		if cur != nil {
			base = cur.Policy
		}
		if pl.Repository != rp.Remote {
			return nil, fmt.Errorf("%w: planned for repository %s, not %s; run tf policy plan again", ErrStalePlan, pl.Repository, rp.Remote)
		}
		if pl.Base.Commit != base {
			return nil, fmt.Errorf("%w: planned against %s, %s on %s applies %s; run tf policy plan again", ErrStalePlan, shortHash(pl.Base.Commit), rp.RefName(), rp.Remote, shortHash(base))
		}
		if pl.Candidate.Commit == "" {
			return nil, fmt.Errorf("the plan's candidate is a working tree (%s), not a commit; commit it, push it, then plan and apply the commit", pl.Candidate.Worktree)
		}
		if c, err = commitAt(r, pl.Candidate.Commit); err != nil {
			return nil, fmt.Errorf("plan candidate (push it to %s first): %w", rp.Remote, err)
		}
	case opts.Rev != "":
		if c, err = Resolve(r, opts.Rev); err != nil {
			return nil, fmt.Errorf("%w in %s (push it there first)", err, rp.Remote)
		}
	default:
		if c, err = refTip(r, branch); err != nil {
			return nil, fmt.Errorf("%w in %s", err, rp.Remote)
		}
	}
	res := &RemoteApplyResult{ApplyResult: ApplyResult{New: c.Hash.String()}}
	if cur != nil {
		res.Old = cur.Policy
	}
	label := repoLabel(rp.Remote)
	p, fsys, err := LoadCommit(c, label)
	if err != nil {
		return nil, fmt.Errorf("refusing to apply: %w", err)
	}
	res.Policy = p
	if res.Tests, err = runTests(p, fsys); err != nil {
		return nil, fmt.Errorf("refusing to apply %s: %w", shortHash(res.New), err)
	}
	if opts.RequireSigned || rp.RequireSigned {
		if res.Signer, err = VerifySigned(opts.Home, c); err != nil {
			return nil, fmt.Errorf("refusing to apply: %w", err)
		}
	}
	if cur != nil && cur.Policy == res.New && !opts.Force {
		res.Applied = nil
		return res, nil
	}

	who := opts.Who
	if who == "" {
		who = osUser()
	}
	who = cleanWho(who)
	sig := object.Signature{Name: who, Email: "", When: time.Now().UTC().Truncate(time.Second)}
	ac := &object.Commit{
		Author: sig, Committer: sig, TreeHash: c.TreeHash,
		Message: fmt.Sprintf("tf policy apply: %s\n\n%s: %s\n%s: %s\n%s: %s\n",
			shortHash(res.New), trailerPolicy, res.New, trailerBranch, branch, trailerWho, who),
	}
	var parent plumbing.Hash
	if tip != nil {
		parent = tip.Hash
	}
	if cur != nil {
		ac.ParentHashes = []plumbing.Hash{tip.Hash, c.Hash}
	} else {
		// No chain yet, or --force over something that is not one.
		ac.ParentHashes = []plumbing.Hash{c.Hash}
	}
	obj := r.Storer.NewEncodedObject()
	if err := ac.Encode(obj); err != nil {
		return nil, fmt.Errorf("encoding the apply commit: %w", err)
	}
	h, err := r.Storer.SetEncodedObject(obj)
	if err != nil {
		return nil, fmt.Errorf("storing the apply commit: %w", err)
	}
	if err := pushApplied(ctx, r, rp, h, parent, opts.Force); err != nil {
		return nil, err
	}
	created, err := r.CommitObject(h)
	if err != nil {
		return nil, err
	}
	if res.Applied, err = ParseAppliedCommit(created); err != nil {
		return nil, fmt.Errorf("the apply commit tf made does not parse: %w", err)
	}
	res.Changed = true
	return res, nil
}

// pushApplied moves rp's ref from old to h. Without force, the server
// must still hold old (a concurrent apply makes this fail, not vanish).
func pushApplied(ctx context.Context, r *git.Repository, rp *RemotePin, h, old plumbing.Hash, force bool) error {
	ref := rp.RefName()
	// go-git pushes from a local ref: a private one, so that the
	// tracking ref moves only once the remote has accepted.
	src := plumbing.ReferenceName("refs/tf-push/" + strings.TrimPrefix(ref, "refs/"))
	if err := r.Storer.SetReference(plumbing.NewHashReference(src, h)); err != nil {
		return err
	}
	defer r.Storer.RemoveReference(src)
	spec := config.RefSpec(src.String() + ":" + ref)
	po := &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: rp.Auth}
	if force {
		po.Force = true
	} else if !old.IsZero() {
		po.RequireRemoteRefs = []config.RefSpec{config.RefSpec(old.String() + ":" + ref)}
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	err := r.PushContext(ctx, po)
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, git.ErrNonFastForwardUpdate) || strings.Contains(err.Error(), "remote ref") || strings.Contains(err.Error(), "non-fast-forward"):
		return fmt.Errorf("%w: %s on %s moved while applying: %w; check tf policy log and apply again", ErrNotFastForward, ref, rp.Remote, err)
	default:
		return fmt.Errorf("pushing %s to %s: %w", ref, rp.Remote, err)
	}
	return r.Storer.SetReference(plumbing.NewHashReference(trackingRef(ref), h))
}

// SyncResult says what SyncRemote did.
type SyncResult struct {
	// Applied is the apply at the tip of the remote ref.
	Applied *AppliedCommit
	// Changed is true when the local pin moved to it.
	Changed bool
	Pin     *Pin
	Signer  string
}

// SyncRemote makes the local pin follow rp: it fetches the ref, and when
// its tip is a new apply, checks the applied policy commit as tf policy
// apply does (it loads, its tests pass, it is signed by a trusted key
// under require_signed) and moves the local pin to it, recording
// policy.applied. A tip that fails a check is refused with an error and
// the local pin, the last good policy, stays.
//
// The new tip must descend from the apply this home followed last: a
// history rewritten on the server (back to an older, once-signed policy,
// say) is refused with ErrNotFastForward unless acceptRewrite, which
// tf policy sync --accept-rewrite sets after a person looked.
func SyncRemote(ctx context.Context, home string, rp *RemotePin) (*SyncResult, error) {
	return syncRemote(ctx, home, rp, false)
}

// SyncRemoteAcceptingRewrite is SyncRemote that takes a tip which does not
// descend from the apply this home followed last.
func SyncRemoteAcceptingRewrite(ctx context.Context, home string, rp *RemotePin) (*SyncResult, error) {
	return syncRemote(ctx, home, rp, true)
}

func syncRemote(ctx context.Context, home string, rp *RemotePin, acceptRewrite bool) (*SyncResult, error) {
	r, tip, err := openRemote(ctx, home, rp)
	if err != nil {
		return nil, err
	}
	if tip == nil {
		return nil, fmt.Errorf("%w: %s has no %s (run tf policy apply --remote %s)", ErrNoApplied, rp.Remote, rp.RefName(), rp.Remote)
	}
	old, err := ReadPin(home)
	if err != nil && !errors.Is(err, ErrNoPin) {
		return nil, err
	}
	if old != nil && old.Repository == rp.Remote && old.Applied == tip.Hash.String() {
		return &SyncResult{Pin: old}, nil
	}
	a, err := ParseAppliedCommit(tip)
	if err != nil {
		return nil, fmt.Errorf("refusing %s of %s: %w", rp.RefName(), rp.Remote, err)
	}
	res := &SyncResult{Applied: a}
	refuse := func(err error) error {
		return fmt.Errorf("refusing %s of %s (apply %s of %s by %s): %w", rp.RefName(), rp.Remote, shortHash(a.Commit), shortHash(a.Policy), a.Who, err)
	}
	following := old != nil && old.Repository == rp.Remote && old.Applied != ""
	if following && !acceptRewrite {
		prev, err := commitAt(r, old.Applied)
		ok := false
		if err == nil {
			ok, err = prev.IsAncestor(tip)
		}
		if err != nil || !ok {
			return nil, refuse(fmt.Errorf("%w: it does not descend from %s, the apply this home follows; the ref's history was rewritten. If that was meant, run tf policy sync --accept-rewrite", ErrNotFastForward, shortHash(old.Applied)))
		}
	}
	c, err := commitAt(r, a.Policy)
	if err != nil {
		return nil, refuse(err)
	}
	p, fsys, err := LoadCommit(c, repoLabel(rp.Remote))
	if err != nil {
		return nil, refuse(err)
	}
	if _, err := runTests(p, fsys); err != nil {
		return nil, refuse(err)
	}
	signed := rp.RequireSigned || (old != nil && old.RequireSigned)
	if signed {
		if res.Signer, err = VerifySigned(home, c); err != nil {
			return nil, refuse(err)
		}
	}
	branch := a.Branch
	if branch == "" {
		branch = "main"
	}
	next := &Pin{
		Version: PinVersion, Repository: rp.Remote, Ref: branch, Commit: a.Policy,
		RequireSigned: signed, AppliedBy: a.Who, AppliedAt: a.When, Applied: a.Commit,
	}
	// Another gateway of this home may have synced meanwhile: one record
	// per move.
	if now, err := ReadPin(home); err == nil && now.Repository == rp.Remote && now.Applied == a.Commit {
		return &SyncResult{Applied: a, Pin: now}, nil
	}
	oldCommit := ""
	if old != nil {
		oldCommit = old.Commit
	}
	extra := map[string]any{"who": a.Who, "remote_ref": rp.RefName(), "apply_commit": a.Commit}
	if err := commitPin(ctx, home, old, oldCommit, next, extra); err != nil {
		return nil, err
	}
	res.Pin, res.Changed = next, true
	return res, nil
}
