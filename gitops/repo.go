package gitops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tameflare/tf/rules"
)

// ReposDir is where remote policy repositories are cached, bare, under
// $TF_HOME.
const ReposDir = "repos"

// isRemote reports whether a repository names a remote (a URL or an scp-like
// ssh address) rather than a local path.
func isRemote(repo string) bool {
	if strings.Contains(repo, "://") {
		return true
	}
	// user@host:path, as git accepts for ssh.
	if at := strings.IndexByte(repo, '@'); at > 0 {
		if colon := strings.IndexByte(repo[at:], ':'); colon > 0 && !strings.Contains(repo[:at], "/") {
			return true
		}
	}
	return false
}

// cacheDir is where a remote repository is kept under home: one bare clone
// per URL, named by a hash so that no URL can name a path.
func cacheDir(home, url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(home, ReposDir, hex.EncodeToString(sum[:16]))
}

// OpenRepository opens the repository of a pin. A local path (bare or with
// a working tree) is opened directly; a remote is cloned bare into the
// cache under home on first use and fetched when fetch is set.
func OpenRepository(ctx context.Context, home, repository string, fetch bool) (*git.Repository, error) {
	if !isRemote(repository) {
		r, err := git.PlainOpenWithOptions(repository, &git.PlainOpenOptions{})
		if err != nil {
			return nil, fmt.Errorf("opening policy repository %s: %w", repository, err)
		}
		return r, nil
	}
	dir := cacheDir(home, repository)
	r, err := git.PlainOpen(dir)
	switch {
	case errors.Is(err, git.ErrRepositoryNotExists):
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return nil, fmt.Errorf("creating repository cache: %w", err)
		}
		r, err = git.PlainInit(dir, true)
		if err != nil {
			return nil, fmt.Errorf("creating repository cache for %s: %w", repository, err)
		}
		if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{repository}}); err != nil {
			return nil, fmt.Errorf("configuring repository cache for %s: %w", repository, err)
		}
		fetch = true
	case err != nil:
		return nil, fmt.Errorf("opening repository cache for %s: %w", repository, err)
	}
	if fetch {
		if err := fetchAll(ctx, r); err != nil {
			return nil, fmt.Errorf("fetching %s: %w", repository, err)
		}
	}
	return r, nil
}

// fetchAll mirrors the remote's branches into the cache's branches, so that
// a ref in a pin resolves the same way in a cache as in a local repository.
func fetchAll(ctx context.Context, r *git.Repository) error {
	err := r.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/heads/*"},
		Tags:       git.NoTags,
		Force:      true,
	})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// Resolve finds the commit a revision names: a branch, a tag, a full or
// abbreviated hash, or any revision expression go-git understands.
func Resolve(r *git.Repository, rev string) (*object.Commit, error) {
	if rev == "" {
		return nil, errors.New("no revision given")
	}
	h, err := r.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("resolving %q: %w", rev, err)
	}
	c, err := r.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", shortHash(h.String()), err)
	}
	return c, nil
}

// refTip resolves a pin's branch, trying the local branch first and then
// the remote-tracking one.
func refTip(r *git.Repository, ref string) (*object.Commit, error) {
	for _, name := range []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewRemoteReferenceName("origin", ref)} {
		ref, err := r.Reference(name, true)
		if err == nil {
			return commitAt(r, ref.Hash().String())
		}
	}
	return nil, fmt.Errorf("branch %q not found in the policy repository", ref)
}

func commitAt(r *git.Repository, hash string) (*object.Commit, error) {
	if !isHexHash(hash) {
		return nil, fmt.Errorf("%q is not a full commit hash", hash)
	}
	c, err := r.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", shortHash(hash), err)
	}
	return c, nil
}

// CommitFS returns the read-only file system of a commit's tree.
func CommitFS(c *object.Commit) (fs.FS, error) {
	t, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", shortHash(c.Hash.String()), err)
	}
	return TreeFS(t, c.Committer.When), nil
}

// LoadCommit loads the policy in commit c. Its Revision is the commit hash
// and its Source "repo@shortcommit", so decisions name what decided them.
func LoadCommit(c *object.Commit, repoLabel string) (*rules.Policy, fs.FS, error) {
	fsys, err := CommitFS(c)
	if err != nil {
		return nil, nil, err
	}
	label := repoLabel + "@" + shortHash(c.Hash.String())
	p, err := rules.LoadFS(fsys, label)
	if err != nil {
		return nil, nil, fmt.Errorf("loading policy: %w", err)
	}
	p.Revision = c.Hash.String()
	p.Source = label
	return p, fsys, nil
}

// repoLabel is a short name for a repository in messages: the last path
// element without .git.
func repoLabel(repository string) string {
	s := strings.TrimRight(repository, "/")
	if i := strings.LastIndexAny(s, "/:"); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSuffix(s, ".git")
	if s == "" {
		return "policy"
	}
	return s
}

// pinnedCommit opens the pin's repository and reads its commit, fetching a
// remote when the commit is not cached yet.
func pinnedCommit(ctx context.Context, home string, pin *Pin) (*git.Repository, *object.Commit, error) {
	r, err := OpenRepository(ctx, home, pin.Repository, false)
	if err != nil {
		return nil, nil, err
	}
	c, err := commitAt(r, pin.Commit)
	if err != nil && isRemote(pin.Repository) {
		if ferr := fetchAll(ctx, r); ferr != nil {
			return nil, nil, fmt.Errorf("fetching %s: %w", pin.Repository, ferr)
		}
		c, err = commitAt(r, pin.Commit)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pinned commit: %w", err)
	}
	return r, c, nil
}

// LoadPinned loads the policy that $TF_HOME/pin names, from the pinned
// commit's tree (never a working tree: uncommitted edits do not take
// effect).
func LoadPinned(home string) (*rules.Policy, *Pin, error) {
	return LoadPinnedContext(context.Background(), home)
}

// LoadPinnedContext is LoadPinned with a context for fetching a remote.
func LoadPinnedContext(ctx context.Context, home string) (*rules.Policy, *Pin, error) {
	pin, err := ReadPin(home)
	if err != nil {
		return nil, nil, err
	}
	_, c, err := pinnedCommit(ctx, home, pin)
	if err != nil {
		return nil, pin, err
	}
	p, fsys, err := LoadCommit(c, repoLabel(pin.Repository))
	if err != nil {
		return nil, pin, err
	}
	if err := checkPinned(home, pin, c, p, fsys); err != nil {
		return nil, pin, err
	}
	return p, pin, nil
}

// checkPinned runs the checks of tf policy apply where a gateway loads a
// pinned commit: a pin written by other means (by hand, or by a process
// that should not) is refused, not only when it is applied.
func checkPinned(home string, pin *Pin, c *object.Commit, p *rules.Policy, fsys fs.FS) error {
	if _, err := runTests(p, fsys); err != nil {
		return fmt.Errorf("refusing the pinned commit %s: %w", pin.Short(), err)
	}
	if pin.RequireSigned {
		if _, err := VerifySigned(home, c); err != nil {
			return fmt.Errorf("refusing the pinned commit %s: %w", pin.Short(), err)
		}
	}
	return nil
}
