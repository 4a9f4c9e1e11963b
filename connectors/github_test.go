package connectors

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMergeBaseLookup(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := false
	gh, err := NewGitHub(GitHubOptions{
		BaseLookup: func(ctx context.Context, _, owner, repo string, number int) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if fail {
				return "", errors.New("upstream said 502")
			}
			if owner != "acme" || repo != "app" {
				return "", errors.New("wrong repository")
			}
			return map[int]string{7: "main", 8: "release"}[number], nil
		},
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	merge := func(n string) (string, error) {
		r := newRequest("PUT", "api.github.com", "/repos/acme/app/pulls/"+n+"/merge", "", []byte(`{"merge_method":"merge"}`), false)
		acts, err := gh.Classify(r)
		if err != nil {
			return "", err
		}
		b, _ := acts[0].Params["base"].(string)
		return b, nil
	}
	for i := 0; i < 3; i++ {
		if b, err := merge("7"); err != nil || b != "main" {
			t.Fatalf("merge 7: %q, %v", b, err)
		}
	}
	if b, err := merge("8"); err != nil || b != "release" {
		t.Fatalf("merge 8: %q, %v", b, err)
	}
	if calls != 2 {
		t.Errorf("lookups = %d, want 2 (cached)", calls)
	}
	// After the TTL the base is looked up again, and a failure refuses.
	now = now.Add(61 * time.Second)
	fail = true
	if _, err := merge("7"); err == nil || !strings.Contains(err.Error(), "upstream said 502") || !strings.Contains(err.Error(), "acme/app#7") {
		t.Errorf("failing lookup: %v", err)
	}
	fail = false
	if b, err := merge("7"); err != nil || b != "main" || calls != 4 {
		t.Errorf("after TTL: %q, %v, calls %d", b, err, calls)
	}
	// An empty answer refuses too.
	if _, err := merge("9"); err == nil || !strings.Contains(err.Error(), "empty answer") {
		t.Errorf("empty base: %v", err)
	}
	// When no rule reads the base, nothing is looked up.
	need := false
	lazy, _ := NewGitHub(GitHubOptions{NeedBase: func() bool { return need },
		BaseLookup: func(context.Context, string, string, string, int) (string, error) { calls++; return "main", nil }})
	before := calls
	acts, err := lazy.Classify(newRequest("PUT", "api.github.com", "/repos/acme/app/pulls/7/merge", "", nil, false))
	if err != nil || acts[0].Params["base"] != nil || calls != before {
		t.Errorf("unneeded lookup: %+v %v, calls %d", acts, err, calls-before)
	}
	need = true
	if acts, err := lazy.Classify(newRequest("PUT", "api.github.com", "/repos/acme/app/pulls/7/merge", "", nil, false)); err != nil || acts[0].Params["base"] != "main" {
		t.Errorf("needed lookup: %+v %v", acts, err)
	}
	// Without a lookup, the merge has no base and is not refused.
	plain, _ := NewGitHub(GitHubOptions{})
	acts, err = plain.Classify(newRequest("PUT", "api.github.com", "/repos/acme/app/pulls/7/merge", "", nil, false))
	if err != nil || acts[0].Params["base"] != nil {
		t.Errorf("no lookup: %+v %v", acts, err)
	}
}

func TestGitHubOptions(t *testing.T) {
	for _, h := range []string{"", "ghe.example.com/path", "*.example.com"} {
		if _, err := NewGitHub(GitHubOptions{EnterpriseHosts: []string{h}}); err == nil {
			t.Errorf("enterprise host %q accepted", h)
		}
	}
	gh, err := NewGitHub(GitHubOptions{EnterpriseHosts: []string{"GHE.Example.com:443"}})
	if err != nil || !gh.Handles("ghe.example.com") || gh.Handles("example.com") {
		t.Errorf("enterprise host: %v", err)
	}
}

func TestRouterTemplates(t *testing.T) {
	bad := []string{"", "x", "/a//b", "/{a", "/a{b}", "/{a...}/b", "/{1a}", "/{a}/{a}", "/{}"}
	for _, tpl := range bad {
		var rt router[int]
		if err := rt.add("GET", tpl, 1); err == nil {
			t.Errorf("template %q accepted", tpl)
		}
	}
	var rt router[int]
	if err := rt.add("GET", "/a/{x}", 1); err != nil {
		t.Fatal(err)
	}
	if err := rt.add("GET", "/a/{x}", 2); err == nil {
		t.Error("duplicate route accepted")
	}
	if err := rt.add("POST", "/a/{y}", 2); err == nil {
		t.Error("conflicting parameter names accepted")
	}
	if err := rt.add("*", "/b/{rest...}", 3); err != nil {
		t.Fatal(err)
	}
	var sp splitPath
	var m match
	sp.split("/b/c/d%2Fe")
	if v, ok := rt.lookup("DELETE", &sp, &m); !ok || v != 3 {
		t.Fatalf("rest lookup = %v %v", v, ok)
	}
	if p, _ := m.Param("rest"); p != "c/d/e" {
		t.Errorf("rest = %q", p)
	}
	// Over the segment limit only a rest capture matches, and it takes
	// the whole rest of the path.
	long := strings.Repeat("/x", 40)
	sp.split("/b" + long)
	if _, ok := rt.lookup("GET", &sp, &m); !ok {
		t.Error("a long path did not match the rest capture")
	} else if p, _ := m.Param("rest"); p != long[1:] {
		t.Errorf("rest = %q", p)
	}
	if err := rt.add("GET", "/a/{x}"+strings.Repeat("/x", 35), 4); err == nil {
		t.Error("a template over the segment limit was accepted")
	}
	sp.split("/a" + long)
	if _, ok := rt.lookup("GET", &sp, &m); ok {
		t.Error("a path over the segment limit matched a plain route")
	}
}
