package connectors

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/tameflare/tf/jsonbody"
	"github.com/tameflare/tf/rules"
)

// A ghRoute is one REST endpoint: the action it is, the body fields copied
// into params, and an optional refinement that looks at the body (a PATCH
// with state=closed is a close).
type ghRoute struct {
	action string
	fields []bodyField
	// want holds the top-level body members the route reads, at most
	// maxBodyKeys of them.
	want   []string
	refine func(g *GitHub, r *Request, a *rules.Action, body restVals) error
	// shareParams is set when the params come from the path alone, and
	// few enough of them for a shared map: a read, a delete. An agent
	// works on a few pull requests and issues, with many requests each.
	shareParams bool
}

// maxBodyKeys bounds the body members one route reads, so that they fit in
// a restVals.
const maxBodyKeys = 8

// restVals holds the top-level body members a route read. It lives on the
// classifier's stack, and refinements get a copy, so that it never
// escapes: a map here cost two allocations per request.
type restVals struct {
	n  int
	kv [maxBodyKeys]struct {
		key string
		v   any
	}
}

// get returns the value of the member key, nil when the body had none.
func (b *restVals) get(key string) any {
	for i := 0; i < b.n; i++ {
		if b.kv[i].key == key {
			return b.kv[i].v
		}
	}
	return nil
}

// set records a member; a repeated key replaces the earlier value, as in
// encoding/json.
func (b *restVals) set(key string, v any) {
	for i := 0; i < b.n; i++ {
		if b.kv[i].key == key {
			b.kv[i].v = v
			return
		}
	}
	b.kv[b.n].key, b.kv[b.n].v = key, v
	b.n++
}

// A bodyField copies the JSON value at path (dot separated) into a param.
type bodyField struct {
	path  []string
	param string
}

func (f bodyField) top() string { return f.path[0] }

// ghRouteDef is the readable form of the route table.
type ghRouteDef struct {
	method, path, action string
	// fields lists body fields: "key", "key>param" or "a.b>param".
	fields string
	refine func(g *GitHub, r *Request, a *rules.Action, body restVals) error
}

const repoPrefix = "/repos/{owner}/{repo}"

// githubRoutes is the REST route table. Reads are <resource>.get or .list.
var githubRoutes = []ghRouteDef{
	// Repositories.
	{"GET", repoPrefix, "github.repo.get", "", nil},
	{"PATCH", repoPrefix, "github.repo.update", "name private visibility default_branch archived", nil},
	{"DELETE", repoPrefix, "github.repo.delete", "", nil},
	{"POST", "/user/repos", "github.repo.create", "name private visibility", refineRepoName},
	{"POST", "/orgs/{org}/repos", "github.repo.create", "name private visibility", refineRepoName},
	{"POST", repoPrefix + "/generate", "github.repo.create", "owner>new_owner name private", nil},
	{"POST", repoPrefix + "/transfer", "github.repo.transfer", "new_owner new_name", nil},
	{"POST", repoPrefix + "/forks", "github.repo.fork", "organization name default_branch_only", nil},
	{"POST", repoPrefix + "/dispatches", "github.repo.dispatch", "event_type", nil},
	{"GET", "/user/repos", "github.repo.list", "", nil},
	{"GET", "/orgs/{org}/repos", "github.repo.list", "", nil},
	{"GET", "/users/{username}/repos", "github.repo.list", "", nil},
	{"GET", repoPrefix + "/tarball/{ref...}", "github.repo.pull", "", nil},
	{"GET", repoPrefix + "/zipball/{ref...}", "github.repo.pull", "", nil},
	{"PUT", "/user/starred/{owner}/{repo}", "github.star.add", "", nil},
	{"DELETE", "/user/starred/{owner}/{repo}", "github.star.remove", "", nil},

	// Pull requests.
	{"GET", repoPrefix + "/pulls", "github.pr.list", "", nil},
	{"POST", repoPrefix + "/pulls", "github.pr.create", "base head title draft head_repo issue", nil},
	{"GET", repoPrefix + "/pulls/{number}", "github.pr.get", "", nil},
	{"PATCH", repoPrefix + "/pulls/{number}", "github.pr.update", "base title state", refineClose("github.pr.close")},
	{"PUT", repoPrefix + "/pulls/{number}/merge", "github.pr.merge", "merge_method sha commit_title", refineMergeBase},
	{"GET", repoPrefix + "/pulls/{number}/merge", "github.pr.get", "", nil},
	{"POST", repoPrefix + "/pulls/{number}/reviews", "github.pr.review", "event commit_id", lowerParam("event")},
	{"GET", repoPrefix + "/pulls/{number}/reviews", "github.pr_review.list", "", nil},
	{"PUT", repoPrefix + "/pulls/{number}/reviews/{review_id}/dismissals", "github.pr.dismiss_review", "", nil},
	{"POST", repoPrefix + "/pulls/{number}/comments", "github.pr.comment", "path commit_id in_reply_to", nil},
	{"GET", repoPrefix + "/pulls/{number}/comments", "github.pr_comment.list", "", nil},
	{"POST", repoPrefix + "/pulls/{number}/requested_reviewers", "github.pr.request_reviewers", "reviewers team_reviewers", nil},
	{"DELETE", repoPrefix + "/pulls/{number}/requested_reviewers", "github.pr.remove_reviewers", "reviewers team_reviewers", nil},
	{"PUT", repoPrefix + "/pulls/{number}/update-branch", "github.pr.update_branch", "expected_head_sha", nil},
	{"GET", repoPrefix + "/pulls/{number}/files", "github.pr_file.list", "", nil},
	{"GET", repoPrefix + "/pulls/{number}/commits", "github.pr_commit.list", "", nil},

	// Issues.
	{"GET", repoPrefix + "/issues", "github.issue.list", "", nil},
	{"POST", repoPrefix + "/issues", "github.issue.create", "title labels assignees milestone", nil},
	{"GET", repoPrefix + "/issues/{number}", "github.issue.get", "", nil},
	{"PATCH", repoPrefix + "/issues/{number}", "github.issue.update", "title state state_reason labels assignees milestone", refineClose("github.issue.close")},
	{"GET", repoPrefix + "/issues/{number}/comments", "github.issue_comment.list", "", nil},
	{"POST", repoPrefix + "/issues/{number}/comments", "github.issue.comment", "", nil},
	{"PATCH", repoPrefix + "/issues/comments/{comment_id}", "github.issue_comment.update", "", nil},
	{"DELETE", repoPrefix + "/issues/comments/{comment_id}", "github.issue_comment.delete", "", nil},
	{"POST", repoPrefix + "/issues/{number}/labels", "github.issue.label", "labels", nil},
	{"PUT", repoPrefix + "/issues/{number}/labels", "github.issue.label", "labels", nil},
	{"DELETE", repoPrefix + "/issues/{number}/labels", "github.issue.unlabel", "", nil},
	{"DELETE", repoPrefix + "/issues/{number}/labels/{label}", "github.issue.unlabel", "", nil},
	{"POST", repoPrefix + "/issues/{number}/assignees", "github.issue.assign", "assignees", nil},
	{"PUT", repoPrefix + "/issues/{number}/lock", "github.issue.lock", "lock_reason", nil},
	{"DELETE", repoPrefix + "/issues/{number}/lock", "github.issue.unlock", "", nil},
	{"GET", repoPrefix + "/labels", "github.label.list", "", nil},
	{"POST", repoPrefix + "/labels", "github.label.create", "name color", nil},
	{"DELETE", repoPrefix + "/labels/{label}", "github.label.delete", "", nil},

	// Branches, refs and tags.
	{"GET", repoPrefix + "/branches", "github.branch.list", "", nil},
	{"GET", repoPrefix + "/branches/{branch}", "github.branch.get", "", nil},
	{"POST", repoPrefix + "/branches/{branch}/rename", "github.branch.rename", "new_name", nil},
	{"GET", repoPrefix + "/branches/{branch}/protection", "github.branch_protection.get", "", nil},
	{"PUT", repoPrefix + "/branches/{branch}/protection", "github.branch_protection.update", "enforce_admins", nil},
	{"DELETE", repoPrefix + "/branches/{branch}/protection", "github.branch_protection.delete", "", nil},
	{"POST", repoPrefix + "/merges", "github.branch.merge", "base head", nil},
	{"GET", repoPrefix + "/git/refs", "github.ref.list", "", nil},
	{"GET", repoPrefix + "/git/refs/{ref...}", "github.ref.get", "", refineRefParam},
	{"GET", repoPrefix + "/git/ref/{ref...}", "github.ref.get", "", refineRefParam},
	{"GET", repoPrefix + "/git/matching-refs/{ref...}", "github.ref.list", "", nil},
	{"POST", repoPrefix + "/git/refs", "github.ref.create", "ref sha", refineRefCreate},
	{"PATCH", repoPrefix + "/git/refs/{ref...}", "github.ref.update", "sha force", refineRefParam},
	{"DELETE", repoPrefix + "/git/refs/{ref...}", "github.ref.delete", "", refineRefDelete},
	{"GET", repoPrefix + "/tags", "github.tag.list", "", nil},

	// Contents and commits.
	{"GET", repoPrefix + "/contents", "github.file.get", "", nil},
	{"GET", repoPrefix + "/contents/{path...}", "github.file.get", "", nil},
	{"PUT", repoPrefix + "/contents/{path...}", "github.file.create", "message branch sha", refineFilePut},
	{"DELETE", repoPrefix + "/contents/{path...}", "github.file.delete", "message branch sha", nil},
	{"GET", repoPrefix + "/readme", "github.file.get", "", nil},
	{"GET", repoPrefix + "/commits", "github.commit.list", "", nil},
	{"GET", repoPrefix + "/commits/{ref}", "github.commit.get", "", nil},
	{"GET", repoPrefix + "/compare/{basehead...}", "github.commit.compare", "", nil},
	{"POST", repoPrefix + "/statuses/{sha}", "github.status.create", "state context", nil},
	{"POST", repoPrefix + "/check-runs", "github.check_run.create", "name head_sha status conclusion", nil},

	// Releases.
	{"GET", repoPrefix + "/releases", "github.release.list", "", nil},
	{"POST", repoPrefix + "/releases", "github.release.create", "tag_name>tag target_commitish name draft prerelease", nil},
	{"GET", repoPrefix + "/releases/latest", "github.release.get", "", nil},
	{"GET", repoPrefix + "/releases/tags/{tag}", "github.release.get", "", nil},
	{"GET", repoPrefix + "/releases/{release_id}", "github.release.get", "", nil},
	{"PATCH", repoPrefix + "/releases/{release_id}", "github.release.update", "tag_name>tag target_commitish name draft prerelease", nil},
	{"DELETE", repoPrefix + "/releases/{release_id}", "github.release.delete", "", nil},
	{"POST", repoPrefix + "/releases/{release_id}/assets", "github.release_asset.upload", "", refineAssetName},
	{"DELETE", repoPrefix + "/releases/assets/{asset_id}", "github.release_asset.delete", "", nil},

	// Collaborators, deploy keys, webhooks.
	{"GET", repoPrefix + "/collaborators", "github.collaborator.list", "", nil},
	{"PUT", repoPrefix + "/collaborators/{username}", "github.collaborator.add", "permission", nil},
	{"DELETE", repoPrefix + "/collaborators/{username}", "github.collaborator.remove", "", nil},
	{"GET", repoPrefix + "/keys", "github.deploy_key.list", "", nil},
	{"POST", repoPrefix + "/keys", "github.deploy_key.add", "title read_only", nil},
	{"DELETE", repoPrefix + "/keys/{key_id}", "github.deploy_key.remove", "", nil},
	{"GET", repoPrefix + "/hooks", "github.webhook.list", "", nil},
	{"POST", repoPrefix + "/hooks", "github.webhook.create", "config.url>url events active", nil},
	{"PATCH", repoPrefix + "/hooks/{hook_id}", "github.webhook.update", "config.url>url events active", nil},
	{"DELETE", repoPrefix + "/hooks/{hook_id}", "github.webhook.delete", "", nil},
	{"POST", "/orgs/{org}/hooks", "github.webhook.create", "config.url>url events active", nil},
	{"DELETE", "/orgs/{org}/hooks/{hook_id}", "github.webhook.delete", "", nil},

	// Actions.
	{"GET", repoPrefix + "/actions/workflows", "github.workflow.list", "", nil},
	{"GET", repoPrefix + "/actions/workflows/{workflow}", "github.workflow.get", "", nil},
	{"POST", repoPrefix + "/actions/workflows/{workflow}/dispatches", "github.workflow.dispatch", "ref inputs", nil},
	{"PUT", repoPrefix + "/actions/workflows/{workflow}/enable", "github.workflow.enable", "", nil},
	{"PUT", repoPrefix + "/actions/workflows/{workflow}/disable", "github.workflow.disable", "", nil},
	{"GET", repoPrefix + "/actions/runs", "github.run.list", "", nil},
	{"GET", repoPrefix + "/actions/runs/{run_id}", "github.run.get", "", nil},
	{"DELETE", repoPrefix + "/actions/runs/{run_id}", "github.run.delete", "", nil},
	{"POST", repoPrefix + "/actions/runs/{run_id}/rerun", "github.run.rerun", "enable_debug_logging", nil},
	{"POST", repoPrefix + "/actions/runs/{run_id}/rerun-failed-jobs", "github.run.rerun", "enable_debug_logging", setParam("failed_only", true)},
	{"POST", repoPrefix + "/actions/jobs/{job_id}/rerun", "github.run.rerun", "enable_debug_logging", nil},
	{"POST", repoPrefix + "/actions/runs/{run_id}/cancel", "github.run.cancel", "", nil},
	{"POST", repoPrefix + "/actions/runs/{run_id}/force-cancel", "github.run.cancel", "", setParam("force", true)},
	{"GET", repoPrefix + "/actions/runs/{run_id}/logs", "github.run_log.get", "", nil},
	{"GET", repoPrefix + "/actions/jobs/{job_id}/logs", "github.run_log.get", "", nil},
	{"GET", repoPrefix + "/actions/secrets", "github.secret.list", "", nil},
	{"GET", repoPrefix + "/actions/secrets/public-key", "github.secret_key.get", "", nil},
	{"PUT", repoPrefix + "/actions/secrets/{secret}", "github.secret.put", "", nil},
	{"DELETE", repoPrefix + "/actions/secrets/{secret}", "github.secret.delete", "", nil},
	{"GET", "/orgs/{org}/actions/secrets/public-key", "github.secret_key.get", "", nil},
	{"PUT", "/orgs/{org}/actions/secrets/{secret}", "github.secret.put", "visibility", nil},
	{"DELETE", "/orgs/{org}/actions/secrets/{secret}", "github.secret.delete", "", nil},
	{"POST", repoPrefix + "/actions/variables", "github.variable.create", "name", nil},
	{"PATCH", repoPrefix + "/actions/variables/{variable}", "github.variable.update", "", nil},
	{"DELETE", repoPrefix + "/actions/variables/{variable}", "github.variable.delete", "", nil},

	// Gists.
	{"GET", "/gists", "github.gist.list", "", nil},
	{"POST", "/gists", "github.gist.create", "public description", nil},
	{"GET", "/gists/{gist_id}", "github.gist.get", "", nil},
	{"PATCH", "/gists/{gist_id}", "github.gist.update", "description", nil},
	{"DELETE", "/gists/{gist_id}", "github.gist.delete", "", nil},

	// Users, organizations, search.
	{"GET", "/user", "github.user.get", "", nil},
	{"GET", "/users/{username}", "github.user.get", "", nil},
	{"GET", "/orgs/{org}", "github.org.get", "", nil},
	{"GET", "/rate_limit", "github.rate_limit.get", "", nil},
	{"GET", "/search/{kind}", "github.search.get", "", nil},
	{"GET", "/notifications", "github.notification.list", "", nil},
	{"GET", "/meta", "github.meta.get", "", nil},
}

// githubRouter is built once from githubRoutes; a bad entry is a
// programming error caught by every test run.
var githubRouter = func() *router[*ghRoute] {
	rt := &router[*ghRoute]{}
	for _, d := range githubRoutes {
		route := &ghRoute{action: d.action, refine: d.refine}
		for _, f := range strings.Fields(d.fields) {
			src, param, ok := strings.Cut(f, ">")
			if !ok {
				param = src
			}
			route.fields = append(route.fields, bodyField{path: strings.Split(src, "."), param: param})
		}
		for _, f := range route.fields {
			if !slices.Contains(route.want, f.top()) {
				route.want = append(route.want, f.top())
			}
		}
		for _, k := range refineKeys[d.action] {
			if !slices.Contains(route.want, k) {
				route.want = append(route.want, k)
			}
		}
		if len(route.want) > maxBodyKeys {
			panic("connectors: github route table: " + d.method + " " + d.path + " reads more than 8 body members")
		}
		segs, err := parseTemplate(d.path)
		if err != nil {
			panic("connectors: github route table: " + err.Error())
		}
		params := 0
		for _, sg := range segs {
			if (sg.param || sg.rest) && sg.name != "owner" && sg.name != "org" && sg.name != "repo" {
				params++
			}
		}
		route.shareParams = len(route.want) == 0 && route.refine == nil && params <= maxSharedParams
		if err := rt.add(d.method, d.path, route); err != nil {
			panic("connectors: github route table: " + err.Error())
		}
	}
	return rt
}()

// classifyREST classifies a REST request; path is escaped and has no
// /api/v3 prefix.
func (g *GitHub) classifyREST(r *Request, path string) ([]rules.Action, error) {
	var sp splitPath
	var m match
	if !sp.split(path) {
		return []rules.Action{apiFallback(r, path)}, nil
	}
	route, ok := g.rest.lookup(r.HTTP.Method, &sp, &m)
	if !ok {
		return []rules.Action{apiFallback(r, path)}, nil
	}
	// The action is built in place in the result: a local handed to a
	// refinement would escape and cost a second copy.
	acts := make([]rules.Action, 1)
	a := &acts[0]
	a.Connector, a.Type = "github", route.action
	var owner, repo string
	var pp pathParams // the params of a route that shares them
	for i := 0; i < m.n; i++ {
		name := m.captures[i].name
		v := m.value(i)
		switch name {
		case "owner", "org":
			owner = v
			continue
		case "repo":
			repo = v
			continue
		case "number":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("%s %s: %q is not a pull request or issue number", r.HTTP.Method, unescapePath(path), v)
			}
			if !route.shareParams {
				setP(a, "number", n)
				continue
			}
		default:
			if !route.shareParams {
				setP(a, name, v)
				continue
			}
		}
		pp.kv[pp.n] = paramKV{name, v}
		pp.n++
	}
	if pp.n > 0 {
		a.Params = g.params.get(&pp)
	}
	if owner != "" || repo != "" {
		owner, repo = repoName(owner, repo)
		a.Resource = g.resources.get(owner, repo)
	}
	var body restVals
	if len(route.want) > 0 {
		if err := g.restBody(r, route, &body); err != nil {
			return nil, fmt.Errorf("%s %s (%s): %w", r.HTTP.Method, unescapePath(path), route.action, err)
		}
		for _, f := range route.fields {
			if v, ok := lookupFields(body.get(f.top()), f.path[1:]); ok && v != nil {
				setP(a, f.param, v)
			}
		}
	}
	if route.refine != nil {
		if err := route.refine(g, r, a, body); err != nil {
			return nil, fmt.Errorf("%s %s (%s): %w", r.HTTP.Method, unescapePath(path), a.Type, err)
		}
	}
	return acts, nil
}

// restBody reads the top-level body members a route needs into vals. Reads
// and bodiless requests have none. The whole body is read strictly
// (jsonbody): a body larger than the inspected prefix, or ambiguous, is
// refused, since the upstream may apply what tf did not see. Keys are
// matched against the route's own strings, so none is allocated.
func (g *GitHub) restBody(r *Request, route *ghRoute, vals *restVals) error {
	if len(r.Body) == 0 && !r.Truncated {
		return nil
	}
	if r.Truncated {
		return fmt.Errorf("its fields %s are read from the body: %w", strings.Join(slices.Sorted(slices.Values(route.want)), ", "), errTruncatedBody)
	}
	want := route.want
	err := jsonbody.Members(r.Body, func(name, raw []byte) error {
		k := -1
		for i, w := range want {
			if string(name) == w {
				k = i
				break
			}
		}
		if k < 0 {
			return nil
		}
		v, err := jsonbody.Decode(raw)
		if err != nil {
			return err
		}
		vals.set(want[k], v)
		return nil
	})
	if err != nil {
		*vals = restVals{}
		return err
	}
	return nil
}

// refineKeys are body members that refinements read beyond the listed
// fields.
var refineKeys = map[string][]string{
	"github.pr.update":    {"state"},
	"github.issue.update": {"state"},
	"github.ref.create":   {"ref"},
	"github.file.create":  {"sha"},
}

func setP(a *rules.Action, k string, v any) {
	if a.Params == nil {
		a.Params = make(map[string]any, 4)
	}
	a.Params[k] = v
}

// apiFallback is an API request no route matches: github.api.<method> with
// the path, and the repository when the path names one.
func apiFallback(r *Request, path string) rules.Action {
	a := rules.Action{
		Connector: "github",
		Type:      "github.api." + methodVerb(r.HTTP.Method),
		Params:    map[string]any{"path": unescapePath(path)},
	}
	if rest, ok := strings.CutPrefix(path, "/repos/"); ok {
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) >= 2 && parts[0] != "" && parts[1] != "" {
			owner, repo := repoName(unescapePath(parts[0]), unescapePath(parts[1]))
			a.Resource = map[string]string{"owner": owner, "repo": repo}
		}
	}
	return a
}

func unescapePath(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	u, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return u
}

func refineClose(closeAction string) func(*GitHub, *Request, *rules.Action, restVals) error {
	return func(_ *GitHub, _ *Request, a *rules.Action, body restVals) error {
		if s, _ := body.get("state").(string); strings.EqualFold(s, "closed") {
			a.Type = closeAction
		}
		return nil
	}
}

func lowerParam(name string) func(*GitHub, *Request, *rules.Action, restVals) error {
	return func(_ *GitHub, _ *Request, a *rules.Action, _ restVals) error {
		if s, ok := a.Params[name].(string); ok {
			if l := strings.ToLower(s); l != s {
				a.Params[name] = l
			}
		}
		return nil
	}
}

func setParam(name string, v any) func(*GitHub, *Request, *rules.Action, restVals) error {
	return func(_ *GitHub, _ *Request, a *rules.Action, _ restVals) error {
		setP(a, name, v)
		return nil
	}
}

func refineRepoName(g *GitHub, _ *Request, a *rules.Action, body restVals) error {
	name, _ := body.get("name").(string)
	if name == "" {
		return fmt.Errorf("no repository name in the body")
	}
	// Resource maps are shared and read-only: this one is replaced.
	_, name = repoName("", name)
	a.Resource = g.resources.get(a.Resource["owner"], name)
	return nil
}

// refineMergeBase adds params.base to a REST merge, which names only the
// pull request, through the configured lookup.
func refineMergeBase(g *GitHub, r *Request, a *rules.Action, _ restVals) error {
	if s, ok := a.Params["merge_method"].(string); ok {
		if l := strings.ToLower(s); l != s {
			a.Params["merge_method"] = l
		}
	}
	if _, ok := a.Params["base"]; ok || g.base.lookup == nil || g.needBase != nil && !g.needBase() {
		return nil
	}
	n, _ := a.Params["number"].(int)
	ctx, cancel := requestContext(r)
	defer cancel()
	base, err := g.base.get(ctx, requestHost(r), a.Resource["owner"], a.Resource["repo"], n)
	if err != nil {
		return err
	}
	a.Params["base"] = base
	return nil
}

// refineRefParam turns the ref path parameter (heads/x, tags/v1) into
// params.ref (refs/heads/x) and params.branch or params.tag.
func refineRefParam(_ *GitHub, _ *Request, a *rules.Action, _ restVals) error {
	ref, _ := a.Params["ref"].(string)
	ref = "refs/" + strings.TrimPrefix(ref, "refs/")
	a.Params["ref"] = ref
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		a.Params["branch"] = b
	} else if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		a.Params["tag"] = t
	}
	return nil
}

func refineRefDelete(g *GitHub, r *Request, a *rules.Action, body restVals) error {
	refineRefParam(g, r, a, body)
	switch {
	case a.Params["branch"] != nil:
		a.Type = "github.branch.delete"
	case a.Params["tag"] != nil:
		a.Type = "github.tag.delete"
	}
	return nil
}

func refineRefCreate(_ *GitHub, _ *Request, a *rules.Action, body restVals) error {
	ref, _ := body.get("ref").(string)
	if ref == "" {
		return fmt.Errorf("no ref in the body")
	}
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		a.Type = "github.branch.create"
		a.Params["branch"] = b
	} else if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		a.Type = "github.tag.create"
		a.Params["tag"] = t
	}
	return nil
}

func refineFilePut(_ *GitHub, _ *Request, a *rules.Action, body restVals) error {
	if s, _ := body.get("sha").(string); s != "" {
		a.Type = "github.file.update"
	}
	return nil
}

func refineAssetName(_ *GitHub, r *Request, a *rules.Action, _ restVals) error {
	if name := r.HTTP.URL.Query().Get("name"); name != "" {
		setP(a, "name", name)
	}
	return nil
}

// lookupFields follows nested member names into decoded JSON.
func lookupFields(v any, path []string) (any, bool) {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}
