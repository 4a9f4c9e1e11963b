package connectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func FuzzPktLines(f *testing.F) {
	f.Add(pkts(oidA+" "+oidB+" refs/heads/main\x00"+caps, "0000"))
	f.Add(pkts(oidA+" "+oidB+" refs/heads/main\x00push-options", oidZ+" "+oidB+" refs/tags/v1", "0000", "opt", "0000"))
	f.Add(pkts("shallow "+oidA, oidA+" "+oidZ+" refs/heads/x", "0000"))
	f.Add([]byte("0000"))
	f.Add([]byte("00zz"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePushRequest(body)
		if err != nil {
			return
		}
		if len(p.Updates) == 0 {
			t.Fatal("no updates and no error")
		}
		// What parsed re-encodes to commands that parse the same.
		var again []byte
		for i, u := range p.Updates {
			line := u.Old + " " + u.New + " " + u.Ref
			if i == 0 {
				line += "\x00" + strings.Join(p.Capabilities, " ")
			}
			again = appendPkt(again, []byte(line))
		}
		again = append(again, "0000"...)
		if p.HasCapability("push-options") {
			for _, o := range p.Options {
				again = appendPkt(again, []byte(o))
			}
			again = append(again, "0000"...)
		}
		q, err := ParsePushRequest(again)
		if err != nil {
			t.Fatalf("re-encoded commands do not parse: %v", err)
		}
		if len(q.Updates) != len(p.Updates) {
			t.Fatalf("round trip: %d updates, want %d", len(q.Updates), len(p.Updates))
		}
		for i := range q.Updates {
			if q.Updates[i] != p.Updates[i] || !validRefName(q.Updates[i].Ref) {
				t.Fatalf("round trip: %+v != %+v", q.Updates[i], p.Updates[i])
			}
		}
	})
}

func FuzzGraphQL(f *testing.F) {
	f.Add(`mutation PullRequestMerge($input:MergePullRequestInput!){mergePullRequest(input: $input){clientMutationId}}`, `{"input":{"pullRequestId":"PR_1","mergeMethod":"SQUASH"}}`, "")
	f.Add(`mutation { a: closeIssue(input:{issueId:"I"}){x} b: deleteRef(input:{refId:"R"}){x} }`, `{}`, "")
	f.Add(`query Q { viewer { login } } mutation M { ...F } fragment F on Mutation { createRef(input:{name:"refs/heads/x"}){x} }`, `null`, "M")
	f.Add(`mutation($f: Boolean = true){updateRef(input:{force:$f, list:[1, 2.5, ENUM, null, "s"]}){x}}`, `{"f":false}`, "")
	f.Fuzz(func(t *testing.T, query, vars, opName string) {
		var v map[string]any
		_ = json.Unmarshal([]byte(vars), &v)
		acts, err := classifyGraphQLBody(&gqlBody{Query: query, Variables: v, OperationName: opName})
		if err != nil {
			return
		}
		if len(acts) == 0 {
			t.Fatal("no actions and no error")
		}
		for _, a := range acts {
			if !strings.HasPrefix(a.Type, "github.") || a.Connector != "github" {
				t.Fatalf("action %+v", a)
			}
			if _, err := json.Marshal(a); err != nil {
				t.Fatalf("action does not marshal: %v", err)
			}
		}
	})
}

func FuzzRoute(f *testing.F) {
	for _, d := range githubRoutes {
		f.Add(d.method, strings.ReplaceAll(strings.ReplaceAll(d.path, "{", "x"), "}", ""), "")
	}
	f.Add("DELETE", "/repos/a/b/git/refs/heads/%2e%2e/x", `{"a":1}`)
	f.Add("PUT", "/api/v3/repos/a/b/contents/%zz", `{"sha":"x"`)
	gh, err := NewGitHub(GitHubOptions{EnterpriseHosts: []string{"ghe.example.com"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !validToken(method) || len(method) > 16 {
			return
		}
		u, err := url.Parse("https://api.github.com" + path)
		if err != nil || u.Host != "api.github.com" {
			return
		}
		r := &Request{HTTP: &http.Request{Method: method, URL: u, Header: http.Header{}, Host: u.Host}, Scheme: "https", Body: []byte(body)}
		acts, err := gh.Classify(r)
		if err != nil {
			return
		}
		if len(acts) != 1 || !strings.HasPrefix(acts[0].Type, "github.") {
			t.Fatalf("actions %+v", acts)
		}
		// The matcher alone agrees with itself on the same input.
		var sp splitPath
		var m match
		if sp.split(u.EscapedPath()) {
			r1, ok1 := githubRouter.lookup(method, &sp, &m)
			r2, ok2 := githubRouter.lookup(method, &sp, &m)
			if ok1 != ok2 || r1 != r2 {
				t.Fatal("lookup is not deterministic")
			}
		}
	})
}

func FuzzNPM(f *testing.F) {
	body, _ := readFixture("npm_publish_body.json")
	f.Add("PUT", "/@tfdemo%2fhello", body, false)
	f.Add("PUT", "/@tfdemo%2fhello", body[:len(body)/2], true)
	f.Add("GET", "/@babel/core/-/core-7.24.0.tgz", []byte(nil), false)
	f.Add("DELETE", "/left-pad/-/left-pad-1.3.0.tgz/-rev/4-def", []byte(nil), false)
	f.Add("PUT", "/-/package/left-pad/dist-tags/next", []byte(`"1.0.0"`), false)
	f.Add("POST", "/-/npm/v1/tokens", []byte(`{"readonly":true}`), false)
	f.Fuzz(func(t *testing.T, method, path string, body []byte, truncated bool) {
		a, err := classifyNPMPath(method, path, body, truncated)
		if err != nil {
			return
		}
		if !strings.HasPrefix(a.Type, "npm.") || a.Connector != "npm" {
			t.Fatalf("action %+v", a)
		}
		if p, ok := a.Params["package"].(string); ok && !validPackageName(p) {
			t.Fatalf("invalid package name %q in %+v", p, a)
		}
		if a.Type == "npm.package.publish" && !bytes.Contains(body, []byte(`"versions"`)) {
			t.Fatalf("publish without versions in the body: %+v", a)
		}
	})
}

// FuzzRESTBody checks the REST body reader against encoding/json with
// case-sensitive comparison: a body it accepts is one encoding/json reads
// to the same sha and force, with no two top-level names that
// encoding/json would match to one struct field.
func FuzzRESTBody(f *testing.F) {
	f.Add([]byte(`{"sha":"a","force":false}`))
	f.Add([]byte(`{"sha":"a","force":false,"force":true}`))
	f.Add([]byte(`{"sha":"a","Force":true,"force":false}`))
	f.Add([]byte(`{"sha":"a","f\u006frce":true}`))
	reg, err := NewRegistry(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := newRequest("PATCH", "api.github.com", "/repos/acme/app/git/refs/heads/main", "", body, false)
		acts, err := reg.Classify(r)
		if err != nil {
			return
		}
		var ref map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&ref); err != nil || dec.More() {
			if len(bytes.TrimSpace(body)) == 0 {
				return // no body: nothing read
			}
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		for a := range ref {
			for b := range ref {
				if a != b && strings.EqualFold(a, b) {
					t.Fatalf("accepted names %q and %q", a, b)
				}
			}
		}
		var typed struct {
			SHA   any `json:"sha"`
			Force any `json:"force"`
		}
		if err := json.Unmarshal(body, &typed); err != nil {
			t.Fatal(err)
		}
		p := acts[0].Params
		if fmt.Sprint(p["force"]) != fmt.Sprint(normNumber(typed.Force)) || fmt.Sprint(p["sha"]) != fmt.Sprint(normNumber(typed.SHA)) {
			t.Fatalf("%q: params %v, encoding/json reads sha=%v force=%v", body, p, typed.SHA, typed.Force)
		}
	})
}

func normNumber(v any) any {
	if f, ok := v.(float64); ok && f == float64(int(f)) {
		return int(f)
	}
	return v
}

// FuzzEscapedPath holds escapedPath to url.URL.EscapedPath.
func FuzzEscapedPath(f *testing.F) {
	for _, p := range []string{"/repos/acme/app/pulls/42", "/a b", "/(x)!*'", "/%2F", "/é", "/a?b", "/~user/$x&y+z,;=:@"} {
		f.Add(p, "")
	}
	f.Add("/a%2Fb", "/a%2Fb")
	f.Fuzz(func(t *testing.T, path, raw string) {
		u := &url.URL{Path: path, RawPath: raw}
		if got, want := escapedPath(u), u.EscapedPath(); got != want {
			t.Fatalf("escapedPath(%q, raw %q) = %q, want %q", path, raw, got, want)
		}
	})
}
