package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// DefaultBranch is the branch tf init creates.
const DefaultBranch = "main"

// InitOptions configure Init.
type InitOptions struct {
	// Dir is the repository directory; it is created if needed.
	Dir string
	// Home is $TF_HOME, where the pin is written.
	Home string
	// Author signs the commit; nil means user.name and user.email from git
	// config (repository, global, system), else "tf <tf@localhost>".
	Author *object.Signature
	// Force re-pins to this repository when the pin names another one.
	Force bool
	// Agent picks the preset (see Agents); empty means GenericAgent.
	Agent string
	// Now is the commit time; nil means time.Now.
	Now func() time.Time
}

// InitResult says what Init did.
type InitResult struct {
	Dir     string
	Commit  string
	Created []string // files written
	// Committed is set when Init made a commit, Pinned when it wrote the pin.
	Committed, Pinned bool
	Pin               *Pin
}

// Init creates a policy repository with the starter policy and pins it. It
// is idempotent: on a repository it made, with the pin in place, it changes
// nothing. It refuses to overwrite a tameflare.yaml that is not its own,
// and to re-pin when the pin names another repository (unless Force).
func Init(ctx context.Context, opts InitOptions) (*InitResult, error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", opts.Dir, err)
	}
	agent := opts.Agent
	if agent == "" {
		agent = GenericAgent
	}
	preset, ok := agentPresets[agent]
	if !ok {
		return nil, fmt.Errorf("unknown agent %q: want one of %s", agent, strings.Join(Agents(), ", "))
	}
	files := starterFor(preset)
	res := &InitResult{Dir: dir}
	old, err := ReadPin(opts.Home)
	switch {
	case errors.Is(err, ErrNoPin):
		old = nil
	case err != nil:
		return nil, err
	case old.Repository != dir && !opts.Force:
		return nil, fmt.Errorf("the pin names another repository (%s@%s); use --force to pin %s instead", old.Repository, old.Short(), dir)
	}
	// Check before writing anything, so that a refusal leaves no trace.
	if data, err := os.ReadFile(filepath.Join(dir, rules.PolicyFile)); err == nil && !bytes.Equal(data, []byte(files[0].body)) {
		for _, other := range Agents() {
			if bytes.Equal(data, []byte(starterFor(agentPresets[other])[0].body)) {
				return nil, fmt.Errorf("%s holds the starter of tf init --agent %s, not %s; refusing to overwrite it", filepath.Join(dir, rules.PolicyFile), other, agent)
			}
		}
		return nil, fmt.Errorf("%s already exists and was not written by tf init; refusing to overwrite it", filepath.Join(dir, rules.PolicyFile))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", rules.PolicyFile, err)
	}

	r, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
		r, err = git.PlainInitWithOptions(dir, &git.PlainInitOptions{
			InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(DefaultBranch)},
		})
	}
	if err != nil {
		return nil, fmt.Errorf("opening repository %s: %w", dir, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return nil, fmt.Errorf("%s: a policy repository made by tf init needs a working tree: %w", dir, err)
	}

	if err := checkIndexClean(wt); err != nil {
		return nil, err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if _, err := os.Lstat(p); err == nil {
			continue // the user's own README or tests stay as they are
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("checking %s: %w", f.name, err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", filepath.Dir(f.name), err)
		}
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.name, err)
		}
		res.Created = append(res.Created, f.name)
	}
	// The starter must load and pass its own tests before it is committed.
	if p, err := rules.LoadDir(dir); err != nil {
		return nil, fmt.Errorf("checking the policy in %s: %w", dir, err)
	} else if rep, err := rules.RunTests(p, os.DirFS(dir), dir, mcp.Baseline); err != nil {
		return nil, fmt.Errorf("testing the policy in %s: %w", dir, err)
	} else if rep.Failed > 0 {
		return nil, fmt.Errorf("the policy in %s fails its tests: %s", dir, rep.Summary())
	}

	// Stage what init wrote, and starter files left untracked by an
	// earlier run; a tracked file the user has edited is theirs to commit.
	st, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("reading status of %s: %w", dir, err)
	}
	for _, f := range files {
		if slices.Contains(res.Created, f.name) || st.File(f.name).Worktree == git.Untracked {
			if _, err := wt.Add(f.name); err != nil {
				return nil, fmt.Errorf("staging %s: %w", f.name, err)
			}
		}
	}
	head, herr := r.Head()
	st, err = wt.Status()
	if err != nil {
		return nil, fmt.Errorf("reading status of %s: %w", dir, err)
	}
	staged := false
	for _, f := range starterFiles {
		if s := st.File(f.name); s.Staging != git.Unmodified && s.Staging != git.Untracked {
			staged = true
		}
	}
	var commit plumbing.Hash
	if staged || herr != nil {
		now := time.Now
		if opts.Now != nil {
			now = opts.Now
		}
		sig := opts.Author
		if sig == nil {
			sig = authorFromConfig(r)
		}
		s := *sig
		s.When = now()
		commit, err = wt.Commit("tf init: starter policy for coding agents ("+agent+")", &git.CommitOptions{Author: &s, Committer: &s})
		if err != nil {
			return nil, fmt.Errorf("committing the starter policy: %w", err)
		}
		res.Committed = true
	} else {
		commit = head.Hash()
	}
	res.Commit = commit.String()

	branch := DefaultBranch
	if h, err := r.Head(); err == nil && h.Name().IsBranch() {
		branch = h.Name().Short()
	}
	if old != nil && old.Repository == dir {
		// Already pinned to this repository: the pin moves only through
		// tf policy apply, never backwards by a repeated init.
		res.Pin = old
		return res, nil
	}
	pin := &Pin{Version: PinVersion, Repository: dir, Ref: branch, Commit: res.Commit,
		AppliedBy: osUser(), AppliedAt: time.Now().UTC().Truncate(time.Second)}
	if old != nil {
		pin.RequireSigned = old.RequireSigned
	}
	if err := WritePin(opts.Home, pin); err != nil {
		return nil, err
	}
	res.Pin, res.Pinned = pin, true
	oldCommit := ""
	if old != nil {
		oldCommit = old.Commit
	}
	if err := recordApplied(ctx, opts.Home, oldCommit, pin, map[string]any{"init": true}); err != nil {
		return nil, err
	}
	return res, nil
}

// authorFromConfig reads user.name and user.email as git would (repository,
// then global, then system config), falling back to tf's own identity.
func authorFromConfig(r *git.Repository) *object.Signature {
	sig := &object.Signature{Name: "tf", Email: "tf@localhost"}
	cfg, err := r.ConfigScoped(config.SystemScope)
	if err != nil {
		return sig
	}
	if cfg.User.Name != "" {
		sig.Name = cfg.User.Name
	}
	if cfg.User.Email != "" {
		sig.Email = cfg.User.Email
	}
	return sig
}

// checkIndexClean refuses a repository with staged changes to files other
// than the starter's: committing the index would take them along.
func checkIndexClean(wt *git.Worktree) error {
	st, err := wt.Status()
	if err != nil {
		return fmt.Errorf("reading repository status: %w", err)
	}
	starter := map[string]bool{}
	for _, f := range starterFiles {
		starter[f.name] = true
	}
	for name, s := range st {
		if !starter[name] && s.Staging != git.Unmodified && s.Staging != git.Untracked {
			return fmt.Errorf("the repository has staged changes (%s); commit or unstage them before tf init", name)
		}
	}
	return nil
}
