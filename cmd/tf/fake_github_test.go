package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// fakeGitHub answers the GraphQL API of api.github.com for one repository
// (acme/app), just far enough for gh pr create and gh pr merge: the
// queries and mutations that gh 2.23 sends for them (see
// connectors/testdata/gh and GH_DEBUG=api). Everything else is recorded
// as unexpected and answered with an error, so a test notices when gh
// asks for something the fake does not know.
type fakeGitHub struct {
	addr, caFile string

	mu         sync.Mutex
	ops        []ghOperation
	unexpected []string
	pulls      map[int]*fakePull
	nextNumber int
}

// ghOperation is one GraphQL operation the fake received.
type ghOperation struct {
	Type          string   // query or mutation
	Name          string   // the operation's name: PullRequestCreate
	Fields        []string // its top-level fields: createPullRequest
	Variables     map[string]any
	Authorization string
}

type fakePull struct {
	Number                   int
	ID, Title, Body          string
	BaseRefName, HeadRefName string
	State                    string // OPEN or MERGED
	MergeMethod              string
}

const (
	fakeOwner  = "acme"
	fakeRepo   = "app"
	fakeRepoID = "R_kgDOFakeApp"
)

// fakeGitHubHosts are the names the fake's certificate carries.
var fakeGitHubHosts = []string{"api.github.com", "github.com"}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{pulls: map[int]*fakePull{}, nextNumber: 42}
	f.addr, f.caFile = startFakeTLS(t, f, fakeGitHubHosts...)
	return f
}

// args returns the tf run flags that send GitHub's hosts to the fake.
func (f *fakeGitHub) args() []string { return upstreamArgs(f.addr, f.caFile, fakeGitHubHosts...) }

// operations returns a copy of the operations received so far.
func (f *fakeGitHub) operations() []ghOperation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ghOperation(nil), f.ops...)
}

// unexpectedRequests lists what the fake could not answer.
func (f *fakeGitHub) unexpectedRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.unexpected...)
}

// pull returns a copy of pull request n, if it exists.
func (f *fakeGitHub) pull(n int) (fakePull, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pulls[n]
	if !ok {
		return fakePull{}, false
	}
	return *p, true
}

// sawField reports whether any operation had the top-level field name.
func (f *fakeGitHub) sawField(name string) bool {
	for _, op := range f.operations() {
		for _, fl := range op.Fields {
			if fl == name {
				return true
			}
		}
	}
	return false
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if r.Method != http.MethodPost || r.URL.Path != "/graphql" || r.Host != "api.github.com" {
		f.fail(w, http.StatusNotFound, fmt.Sprintf("%s %s%s", r.Method, r.Host, r.URL.Path), `{"message":"Not Found"}`)
		return
	}
	var req struct {
		Query         string         `json:"query"`
		OperationName string         `json:"operationName"`
		Variables     map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		f.fail(w, http.StatusBadRequest, "undecodable GraphQL body: "+err.Error(), `{"message":"Problems parsing JSON"}`)
		return
	}
	op, err := parseOperation(req.Query, req.OperationName)
	if err != nil {
		f.fail(w, http.StatusOK, "unparsable GraphQL: "+err.Error(), graphQLError(err.Error()))
		return
	}
	rec := ghOperation{Type: string(op.Operation), Name: op.Name, Variables: req.Variables, Authorization: r.Header.Get("Authorization")}
	for _, sel := range op.SelectionSet {
		if fl, ok := sel.(*ast.Field); ok {
			rec.Fields = append(rec.Fields, fl.Name)
		}
	}
	f.mu.Lock()
	f.ops = append(f.ops, rec)
	f.mu.Unlock()

	data, ok := f.answer(rec)
	if !ok {
		f.fail(w, http.StatusOK, fmt.Sprintf("%s %s %v", rec.Type, rec.Name, rec.Fields), graphQLError("the fake GitHub does not answer "+rec.Name))
		return
	}
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		f.fail(w, http.StatusInternalServerError, "encoding an answer: "+err.Error(), `{"message":"Server Error"}`)
		return
	}
	w.Write(body)
}

// parseOperation returns the operation of a GraphQL document that gh
// would have the server run: the named one, or the only one.
func parseOperation(query, name string) (*ast.OperationDefinition, error) {
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		return nil, fmt.Errorf("parsing the query: %w", err)
	}
	if name != "" {
		if op := doc.Operations.ForName(name); op != nil {
			return op, nil
		}
		return nil, fmt.Errorf("no operation named %q", name)
	}
	if len(doc.Operations) != 1 {
		return nil, fmt.Errorf("%d operations and no operationName", len(doc.Operations))
	}
	return doc.Operations[0], nil
}

func (f *fakeGitHub) fail(w http.ResponseWriter, status int, what, body string) {
	f.mu.Lock()
	f.unexpected = append(f.unexpected, what)
	f.mu.Unlock()
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func graphQLError(msg string) string {
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"message": msg}}})
	return string(b)
}

// answer returns the data of the reply to op, or false when the fake does
// not know op.
func (f *fakeGitHub) answer(op ghOperation) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vars := op.Variables
	switch {
	case op.Type == "query" && op.Name == "PullRequest_fields":
		// gh's feature detection: a PullRequest without the merge queue
		// fields makes gh merge at once, as on github.com without one.
		fields := []map[string]string{}
		for _, n := range []string{"id", "number", "title", "state", "baseRefName", "headRefName", "mergeStateStatus"} {
			fields = append(fields, map[string]string{"name": n})
		}
		return map[string]any{"PullRequest": map[string]any{"fields": fields}}, true

	case op.Type == "query" && op.Name == "RepositoryInfo":
		if vars["owner"] != fakeOwner || vars["name"] != fakeRepo {
			return map[string]any{"repository": nil}, true
		}
		return map[string]any{"repository": map[string]any{
			"id": fakeRepoID, "name": fakeRepo, "owner": map[string]any{"login": fakeOwner},
			"hasIssuesEnabled": true, "description": "", "hasWikiEnabled": false,
			"viewerPermission": "WRITE", "defaultBranchRef": map[string]any{"name": "main"},
			"parent": nil, "mergeCommitAllowed": true, "rebaseMergeAllowed": true, "squashMergeAllowed": true,
		}}, true

	case op.Type == "query" && op.Name == "PullRequestForBranch":
		if vars["owner"] != fakeOwner || vars["repo"] != fakeRepo {
			return map[string]any{"repository": nil}, true
		}
		nodes := []any{}
		for _, p := range f.pulls {
			if p.HeadRefName == vars["headRefName"] && p.State == "OPEN" {
				nodes = append(nodes, f.pullJSON(p))
			}
		}
		return map[string]any{"repository": map[string]any{
			"pullRequests":     map[string]any{"nodes": nodes},
			"defaultBranchRef": map[string]any{"name": "main"},
		}}, true

	case op.Type == "query" && op.Name == "PullRequestByNumber":
		n, _ := vars["pr_number"].(float64)
		p, ok := f.pulls[int(n)]
		if vars["owner"] != fakeOwner || vars["repo"] != fakeRepo || !ok {
			return map[string]any{"repository": map[string]any{"pullRequest": nil}}, true
		}
		return map[string]any{"repository": map[string]any{"pullRequest": f.pullJSON(p)}}, true

	case op.Type == "mutation" && len(op.Fields) == 1 && op.Fields[0] == "createPullRequest":
		in, _ := vars["input"].(map[string]any)
		title, _ := in["title"].(string)
		body, _ := in["body"].(string)
		base, _ := in["baseRefName"].(string)
		head, _ := in["headRefName"].(string)
		if in["repositoryId"] != fakeRepoID || title == "" || base == "" || head == "" {
			return nil, false
		}
		p := &fakePull{Number: f.nextNumber, ID: fmt.Sprintf("PR_kwDOFake%d", f.nextNumber),
			Title: title, Body: body, BaseRefName: base, HeadRefName: head, State: "OPEN"}
		f.pulls[p.Number] = p
		f.nextNumber++
		return map[string]any{"createPullRequest": map[string]any{"pullRequest": map[string]any{"id": p.ID, "url": pullURL(p)}}}, true

	case op.Type == "mutation" && len(op.Fields) == 1 && op.Fields[0] == "mergePullRequest":
		in, _ := vars["input"].(map[string]any)
		for _, p := range f.pulls {
			if p.ID == in["pullRequestId"] && p.State == "OPEN" {
				p.State = "MERGED"
				p.MergeMethod, _ = in["mergeMethod"].(string)
				return map[string]any{"mergePullRequest": map[string]any{"clientMutationId": nil}}, true
			}
		}
		return nil, false
	}
	return nil, false
}

func pullURL(p *fakePull) string {
	return fmt.Sprintf("https://github.com/%s/%s/pull/%d", fakeOwner, fakeRepo, p.Number)
}

func (f *fakeGitHub) pullJSON(p *fakePull) map[string]any {
	return map[string]any{
		"id": p.ID, "number": p.Number, "url": pullURL(p), "state": p.State, "title": p.Title,
		"baseRefName": p.BaseRefName, "headRefName": p.HeadRefName, "headRefOid": "0123456789abcdef0123456789abcdef01234567",
		"isCrossRepository": false, "mergeStateStatus": "CLEAN",
		"commits":             map[string]any{"nodes": []any{map[string]any{"commit": map[string]any{"oid": "0123456789abcdef0123456789abcdef01234567"}}}},
		"headRepositoryOwner": map[string]any{"id": "MDQ6VXNlcjE=", "login": fakeOwner},
	}
}
