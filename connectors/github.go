package connectors

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tameflare/tf/rules"
)

// GitHubOptions configure the github connector.
type GitHubOptions struct {
	// EnterpriseHosts are GitHub Enterprise Server hosts: the REST API
	// under /api/v3, GraphQL at /api/graphql, git smart HTTP elsewhere.
	EnterpriseHosts []string
	// BaseLookup, when set, finds the base branch of a pull request for a
	// REST merge, which names only the pull request number, asking the
	// GitHub host that serves host (api.github.com or an Enterprise host).
	// An error refuses the merge.
	BaseLookup func(ctx context.Context, host, owner, repo string, number int) (string, error)
	// NeedBase, when set, says whether the base is wanted at all (whether
	// a rule reads it); a merge is then looked up only when it is.
	NeedBase func() bool
	// RefLookup, when set, resolves the node id of a git ref (a GraphQL
	// createCommitOnBranch, deleteRef or updateRef that names its ref by
	// id) to the ref's repository and full name (refs/heads/main), asking
	// the GitHub host that serves host. Without it, or when it fails, such
	// a mutation is refused: a rule about the branch could not see it.
	RefLookup func(ctx context.Context, host, id string) (RefNode, error)
	// BaseCacheTTL is how long a looked-up base or ref is reused; zero
	// means one minute.
	BaseCacheTTL time.Duration
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time
}

type ghHostKind int

const (
	ghAPI        ghHostKind = iota + 1 // api.github.com, uploads.github.com: REST and /graphql
	ghWeb                              // github.com: git smart HTTP and the web
	ghEnterprise                       // GHES: /api/v3, /api/graphql, git and the web on one host
)

// A RefNode is what a ref's node id names.
type RefNode struct {
	Owner, Repo string
	// Ref is the full name: refs/heads/main, refs/tags/v1.
	Ref string
}

// GitHub classifies GitHub REST, GraphQL and git smart HTTP requests.
type GitHub struct {
	hosts     map[string]ghHostKind
	rest      *router[*ghRoute]
	base      baseCache
	refs      refCache
	needBase  func() bool
	resources repoResources
	params    pathParamMaps
}

var (
	_ Connector = (*GitHub)(nil)
	_ Refuser   = (*GitHub)(nil)
)

// NewGitHub returns the github connector.
func NewGitHub(opts GitHubOptions) (*GitHub, error) {
	g := &GitHub{
		hosts: map[string]ghHostKind{
			"api.github.com":     ghAPI,
			"uploads.github.com": ghAPI,
			"github.com":         ghWeb,
		},
		rest:      githubRouter,
		resources: newRepoResources(),
		params:    newPathParamMaps(),
	}
	for _, h := range opts.EnterpriseHosts {
		host := normalizeHost(h)
		if host == "" || strings.ContainsAny(host, "/*") {
			return nil, fmt.Errorf("enterprise host %q: want a host name", h)
		}
		if _, dup := g.hosts[host]; dup {
			return nil, fmt.Errorf("enterprise host %q: listed twice or a github.com host", h)
		}
		g.hosts[host] = ghEnterprise
	}
	ttl := opts.BaseCacheTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	g.base = baseCache{lookup: opts.BaseLookup, ttl: ttl, now: now, entries: map[baseKey]baseEntry{}}
	g.needBase = opts.NeedBase
	g.refs = refCache{lookup: opts.RefLookup, ttl: ttl, now: now, entries: map[[2]string]refEntry{}}
	return g, nil
}

// Name returns "github".
func (*GitHub) Name() string { return "github" }

// Handles reports whether host is github.com, one of its API hosts or a
// configured Enterprise host.
func (g *GitHub) Handles(host string) bool {
	_, ok := g.hosts[host]
	return ok
}

// Classify returns the actions of a GitHub request.
func (g *GitHub) Classify(r *Request) ([]rules.Action, error) {
	kind := g.hosts[requestHost(r)]
	path := r.escapedPath()
	switch {
	case path == "/graphql" && kind != ghWeb, path == "/api/graphql":
		acts, err := g.classifyGraphQL(r)
		if err == errNoGraphQL {
			return []rules.Action{apiFallback(r, path)}, nil
		}
		return acts, err
	case path == "/api/v3" || strings.HasPrefix(path, "/api/v3/"):
		return g.classifyREST(r, strings.TrimPrefix(path, "/api/v3"))
	case kind == ghAPI:
		return g.classifyREST(r, path)
	}
	if acts, ok, err := g.classifyGit(r, path); ok || err != nil {
		return acts, err
	}
	return []rules.Action{webAction(r, path)}, nil
}

// webAction is a request to github.com that is neither git nor API: the web
// site, archive and release downloads. The first two segments name the
// repository when there are at least two.
func webAction(r *Request, path string) rules.Action {
	a := rules.Action{
		Connector: "github",
		Type:      "github.web." + methodVerb(r.HTTP.Method),
		Params:    map[string]any{"path": unescapePath(path)},
	}
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 3)
	if len(parts) >= 2 && parts[0] != "" && parts[1] != "" && !githubReservedPaths[strings.ToLower(parts[0])] {
		owner, repo := repoName(unescapePath(parts[0]), unescapePath(parts[1]))
		a.Resource = map[string]string{"owner": owner, "repo": repo}
	}
	return a
}

// repoName normalises an owner and repository name as GitHub treats them:
// case-insensitive, with an optional .git suffix, so that /repos/acme/VAULT
// and /acme/vault.git are the repository a rule names "vault". The request
// as sent stays in the recorded request path. It allocates only when
// something changes.
func repoName(owner, repo string) (string, string) {
	return lowerASCII(owner), lowerASCII(strings.TrimSuffix(strings.TrimSuffix(repo, ".git"), ".GIT"))
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// githubReservedPaths are first path segments of github.com that are not
// owners, so that /login/oauth/access_token is not taken for a repository.
var githubReservedPaths = map[string]bool{
	"login": true, "logout": true, "session": true, "sessions": true, "settings": true, "orgs": true,
	"organizations": true, "apps": true, "marketplace": true, "features": true, "notifications": true,
	"explore": true, "topics": true, "search": true, "sponsors": true, "users": true, "pulls": true,
	"issues": true, "codespaces": true, "copilot": true, "site": true, "about": true, "pricing": true,
	"enterprise": true, "enterprises": true, "readme": true, "collections": true, "trending": true, "new": true,
	"account": true, "dashboard": true, "api": true, "assets": true, "stars": true, "watching": true,
	"gist": true, "security": true, "customer-stories": true, "team": true, "contact": true,
}

// baseKey and baseEntry hold looked-up merge bases.
type baseKey struct {
	host, owner, repo string
	number            int
}

type baseEntry struct {
	base    string
	expires time.Time
}

// maxBaseEntries bounds the cache; when full, expired entries go, and if
// none has expired the cache starts over.
const maxBaseEntries = 4096

type baseCache struct {
	lookup func(ctx context.Context, host, owner, repo string, number int) (string, error)
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[baseKey]baseEntry
}

func (c *baseCache) get(ctx context.Context, host, owner, repo string, number int) (string, error) {
	k := baseKey{host, owner, repo, number}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.base, nil
	}
	base, err := c.lookup(ctx, host, owner, repo, number)
	if err != nil {
		return "", fmt.Errorf("looking up the base branch of %s/%s#%d: %w", owner, repo, number, err)
	}
	if base == "" {
		return "", fmt.Errorf("looking up the base branch of %s/%s#%d: empty answer", owner, repo, number)
	}
	c.mu.Lock()
	if len(c.entries) >= maxBaseEntries {
		for key, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, key)
			}
		}
		if len(c.entries) >= maxBaseEntries {
			c.entries = map[baseKey]baseEntry{}
		}
	}
	c.entries[k] = baseEntry{base: base, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return base, nil
}

// requestContext returns the context of r, bounded so that a slow base
// lookup cannot hold a request forever.
func requestContext(r *Request) (context.Context, context.CancelFunc) {
	ctx := r.HTTP.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, 10*time.Second)
}

type refEntry struct {
	node    RefNode
	expires time.Time
}

// refCache holds resolved ref node ids, by host and id, as baseCache holds
// merge bases.
type refCache struct {
	lookup func(ctx context.Context, host, id string) (RefNode, error)
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[[2]string]refEntry
}

func (c *refCache) get(ctx context.Context, host, id string) (RefNode, error) {
	if c.lookup == nil {
		return RefNode{}, fmt.Errorf("node id %q names the ref, and this gateway resolves no node ids", id)
	}
	k := [2]string{host, id}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.node, nil
	}
	n, err := c.lookup(ctx, host, id)
	if err != nil {
		return RefNode{}, fmt.Errorf("resolving node id %q: %w", id, err)
	}
	if n.Owner == "" || n.Repo == "" || !strings.HasPrefix(n.Ref, "refs/") {
		return RefNode{}, fmt.Errorf("resolving node id %q: the answer names no ref", id)
	}
	c.mu.Lock()
	if len(c.entries) >= maxBaseEntries {
		c.entries = map[[2]string]refEntry{}
	}
	c.entries[k] = refEntry{node: n, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return n, nil
}
