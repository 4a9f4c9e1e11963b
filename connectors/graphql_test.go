package connectors

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

type graphqlCase struct {
	Name string `yaml:"name"`
	Body string `yaml:"body"`
	Want []struct {
		Type     string            `yaml:"type"`
		Resource map[string]string `yaml:"resource"`
		Params   map[string]any    `yaml:"params"`
	} `yaml:"want"`
	Error string `yaml:"error"`
}

func TestGraphQL(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "graphql.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []graphqlCase
	if err := yaml.UnmarshalWithOptions(raw, &cases, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	reg := testRegistry(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			targets := []struct{ method, host, path, query string }{{"POST", "api.github.com", "/graphql", ""}, {"POST", "ghe.example.com", "/api/graphql", ""}}
			if q := asQuery(c.Body); q != "" && c.Error == "" {
				// The same request over GET is the same action.
				targets = append(targets, struct{ method, host, path, query string }{"GET", "api.github.com", "/graphql", q})
			}
			for _, target := range targets {
				body := []byte(c.Body)
				if target.method == "GET" {
					body = nil
				}
				r := newRequest(target.method, target.host, target.path, target.query, body, false)
				acts, err := reg.Classify(r)
				if c.Error != "" {
					if err == nil || !strings.Contains(err.Error(), c.Error) {
						t.Fatalf("error = %v, want %q", err, c.Error)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(acts) != len(c.Want) {
					t.Fatalf("got %d actions %+v, want %d", len(acts), acts, len(c.Want))
				}
				for i, w := range c.Want {
					a := acts[i]
					if a.Type != w.Type || a.Connector != "github" {
						t.Errorf("action %d: %s/%s, want github/%s", i, a.Connector, a.Type, w.Type)
					}
					if !reflect.DeepEqual(asJSON(t, a.Params), asJSON(t, w.Params)) {
						t.Errorf("action %d params = %v, want %v", i, a.Params, w.Params)
					}
					if !reflect.DeepEqual(asJSON(t, a.Resource), asJSON(t, w.Resource)) {
						t.Errorf("action %d resource = %v, want %v", i, a.Resource, w.Resource)
					}
				}
			}
		})
	}
}

// asQuery turns a GraphQL POST body into the query string of the same
// request over GET; "" when the body is not a plain JSON object.
func asQuery(body string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(body), &m) != nil {
		return ""
	}
	q := url.Values{}
	for k, v := range m {
		var s string
		if json.Unmarshal(v, &s) == nil {
			q.Set(k, s)
		} else {
			q.Set(k, string(v))
		}
	}
	return q.Encode()
}

func TestGraphQLOverGET(t *testing.T) {
	reg := testRegistry(t)
	for _, c := range []struct{ query, typ, err string }{
		{url.Values{"query": {`mutation{deleteRef(input:{refId:"REF_1"}){clientMutationId}}`}}.Encode(), "github.branch.delete", ""},
		{url.Values{"query": {`{viewer{login}}`}}.Encode(), "github.graphql.query", ""},
		{"", "github.api.get", ""},
		{"query=%7Bviewer%7Blogin%7D%7D&query=mutation%7BdeleteRepository(input%3A%7BrepositoryId%3A%22R%22%7D)%7BclientMutationId%7D%7D", "", "given 2 times"},
		{"Query=mutation%7BdeleteRepository(input%3A%7BrepositoryId%3A%22R%22%7D)%7BclientMutationId%7D%7D", "", "is not \"query\""},
	} {
		acts, err := reg.Classify(newRequest("GET", "api.github.com", "/graphql", c.query, nil, false))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("GET /graphql?%s: error %v, want %q", c.query, err, c.err)
			}
			continue
		}
		if err != nil || len(acts) != 1 || acts[0].Type != c.typ {
			t.Errorf("GET /graphql?%s = %+v, %v; want %s", c.query, acts, err, c.typ)
		}
	}
}

func TestGraphQLTruncated(t *testing.T) {
	reg := testRegistry(t)
	r := newRequest("POST", "api.github.com", "/graphql", "", []byte(`{"query":"mutation {`), true)
	if _, err := reg.Classify(r); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("error = %v", err)
	}
}

// TestGraphQLRecordedGH classifies bodies recorded from the real gh client
// (testdata/gh/SOURCE says how).
func TestGraphQLRecordedGH(t *testing.T) {
	cases := []struct {
		file, typ string
		params    map[string]any
	}{
		{"pr_create", "github.pr.create", map[string]any{"base": "main", "head": "feature", "repository_id": "R_kgDOExample", "title": "my title", "draft": false, "maintainer_can_modify": true, "operation": "PullRequestCreate"}},
		{"pr_merge_squash", "github.pr.merge", map[string]any{"pull_request_id": "PR_kwDOExample7", "merge_method": "squash", "operation": "PullRequestMerge"}},
		{"pr_merge_merge", "github.pr.merge", map[string]any{"pull_request_id": "PR_kwDOExample7", "merge_method": "merge", "operation": "PullRequestMerge"}},
		{"pr_merge_disable_auto", "github.pr.disable_auto_merge", map[string]any{"pull_request_id": "PR_kwDOExample7", "operation": "PullRequestAutoMergeDisable"}},
		{"pr_close", "github.pr.close", map[string]any{"pull_request_id": "PR_kwDOExample7", "operation": "PullRequestClose"}},
		{"pr_review_approve", "github.pr.review", map[string]any{"pull_request_id": "PR_kwDOExample7", "event": "approve", "operation": "PullRequestReviewAdd"}},
		{"pr_comment", "github.issue.comment", map[string]any{"subject_id": "PR_kwDOExample7", "operation": "CommentCreate"}},
		{"issue_create", "github.issue.create", map[string]any{"repository_id": "R_kgDOExample", "title": "Bug", "operation": "IssueCreate"}},
		{"issue_close", "github.issue.close", map[string]any{"issue_id": "I_kwDOExample3", "operation": "IssueClose"}},
		{"query_pr_by_number", "github.graphql.query", map[string]any{"operation": "query", "name": "PullRequestByNumber"}},
	}
	reg := testRegistry(t)
	for _, c := range cases {
		body, err := os.ReadFile(filepath.Join("testdata", "gh", c.file+".json"))
		if err != nil {
			t.Fatal(err)
		}
		acts, err := reg.Classify(newRequest("POST", "api.github.com", "/graphql", "", body, false))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if len(acts) != 1 || acts[0].Type != c.typ {
			t.Errorf("%s: %+v, want %s", c.file, acts, c.typ)
			continue
		}
		if !reflect.DeepEqual(asJSON(t, acts[0].Params), asJSON(t, c.params)) {
			t.Errorf("%s: params %v, want %v", c.file, acts[0].Params, c.params)
		}
	}
}

// Without a way to resolve node ids, a commit that names its branch by id
// is refused rather than classified as a push to no branch (which a rule
// for "other branches" would allow).
func TestCommitByNodeIDWithoutLookup(t *testing.T) {
	reg, err := NewRegistry(Options{})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"query":"mutation($input:CreateCommitOnBranchInput!){createCommitOnBranch(input:$input){commit{oid}}}","variables":{"input":{"branch":{"id":"REF_main"},"expectedHeadOid":"cc"}}}`
	_, err = reg.Classify(newRequest("POST", "api.github.com", "/graphql", "", []byte(body), false))
	if err == nil || !strings.Contains(err.Error(), "resolves no node ids") {
		t.Fatalf("error = %v", err)
	}
}
