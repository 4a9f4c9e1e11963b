package gitops

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

func builtinCatalog(t testing.TB) connectors.Catalog {
	t.Helper()
	cat, err := connectors.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// sessionActions is a monitor-mode session of a coding agent, as the
// connectors name its requests.
func sessionActions() []*rules.Action {
	gh := map[string]string{"owner": "acme", "repo": "app"}
	req := func(m, h string) rules.Request { return rules.Request{Method: m, Host: h} }
	return []*rules.Action{
		{Type: "anthropic.messages.create", Connector: "anthropic", Request: req("POST", "api.anthropic.com")},
		{Type: "anthropic.messages.create", Connector: "anthropic", Request: req("POST", "api.anthropic.com")},
		{Type: "github.repo.get", Connector: "github", Resource: gh, Request: req("GET", "api.github.com")},
		{Type: "github.repo.pull", Connector: "github", Resource: gh, Request: req("POST", "github.com")},
		{Type: "github.issue.list", Connector: "github", Resource: gh, Request: req("GET", "api.github.com")},
		{Type: "github.issue.create", Connector: "github", Resource: gh, Request: req("POST", "api.github.com")},
		{Type: "github.repo.push", Connector: "github", Resource: gh, Params: map[string]any{"branch": "feature/x"}, Request: req("POST", "github.com")},
		{Type: "github.repo.push", Connector: "github", Resource: gh, Params: map[string]any{"branch": "main"}, Request: req("POST", "github.com")},
		{Type: "github.pr.create", Connector: "github", Resource: gh, Request: req("POST", "api.github.com")},
		{Type: "github.pr.merge", Connector: "github", Resource: gh, Request: req("PUT", "api.github.com")},
		{Type: "github.branch.delete", Connector: "github", Resource: gh, Request: req("DELETE", "api.github.com")},
		{Type: "npm.package.get", Connector: "npm", Request: req("GET", "registry.npmjs.org")},
		{Type: "npm.package.publish", Connector: "npm", Request: req("PUT", "registry.npmjs.org")},
		{Type: "http.get", Connector: "http", Resource: map[string]string{"host": "pypi.org"}, Request: req("GET", "pypi.org")},
		{Type: "http.get", Connector: "http", Resource: map[string]string{"host": "docs.example.com"}, Request: req("GET", "docs.example.com")},
		{Type: "http.post", Connector: "http", Resource: map[string]string{"host": "paste.example.com"}, Request: req("POST", "paste.example.com")},
		{Type: "mcp.docs.@initialize", Connector: "mcp", Request: req("POST", "mcp.example.com")},
		{Type: "mcp.docs.search_docs", Connector: "mcp", Request: req("POST", "mcp.example.com")},
		{Type: "mcp.docs.deleteIndex", Connector: "mcp", Request: req("POST", "mcp.example.com")},
		{Type: "mcp.docs.frobnicate", Connector: "mcp", Request: req("POST", "mcp.example.com")},
		{Type: "tf.unclassified", Connector: "http", Request: req("POST", "odd.example.com")},
	}
}

func writeActions(t testing.TB, home, gateway string, acts []*rules.Action) {
	t.Helper()
	l, err := audit.Open(audit.Dir(home), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for i, a := range acts {
		err := l.Append(ctx, &audit.Record{
			Kind: audit.KindDecision, Time: epoch.Add(time.Duration(i) * time.Second), RequestID: idOf(i), Gateway: gateway, Action: a,
			Decision: &rules.Decision{Effect: rules.Allow, Monitor: true},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// loadSuggestion writes s as a directory and loads and tests it with the
// real loader, as tf policy validate and tf policy test do.
func loadSuggestion(t testing.TB, s *Suggestion) *rules.Policy {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "suggested")
	if err := s.WriteDir(dir, false); err != nil {
		t.Fatal(err)
	}
	p, err := rules.LoadDir(dir)
	if err != nil {
		t.Fatalf("the suggestion does not validate: %v\n%s", err, s.Policy)
	}
	if errs := builtinCatalog(t).UnknownActions(p); len(errs) > 0 {
		t.Fatalf("tf policy validate would refuse the suggestion: %v\n%s", errs, s.Policy)
	}
	rep, err := rules.RunTests(p, os.DirFS(dir), dir, mcp.Baseline)
	if err != nil || rep.Failed > 0 || rep.Passed == 0 {
		t.Fatalf("the suggestion's tests: %+v %v\n%s\n%s", rep, err, s.Policy, s.Tests)
	}
	return p
}

func TestSuggestFromAMonitorSession(t *testing.T) {
	home := testHome(t)
	acts := sessionActions()
	writeActions(t, home, "agent", acts)
	writeActions(t, home, "other", []*rules.Action{{Type: "github.repo.delete", Connector: "github"}})
	// The agent tried a read the policy in force refused: it is not
	// suggested.
	l, err := audit.Open(audit.Dir(home), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(testCtx(t), &audit.Record{Kind: audit.KindDecision, Time: epoch.Add(time.Minute), RequestID: "refused", Gateway: "agent",
		Action:   &rules.Action{Type: "github.secret.list", Connector: "github"},
		Decision: &rules.Decision{Effect: rules.Deny, Rule: "no-secrets"}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	s, err := Suggest(testCtx(t), SuggestOptions{Home: home, Gateway: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "suggest_session.golden", append(append(append([]byte{}, s.Policy...), "---\n"...), s.Tests...))
	if s.Decisions != uint64(len(acts)) || s.Skipped != 1 || s.Refused != 1 || strings.Contains(string(s.Policy), "github.secret.list") {
		t.Errorf("decisions %d skipped %d refused %d", s.Decisions, s.Skipped, s.Refused)
	}
	p := loadSuggestion(t, s)
	want := map[string]rules.Effect{
		"anthropic.messages.create": rules.Allow, "github.repo.get": rules.Allow, "github.repo.pull": rules.Allow,
		"github.issue.list": rules.Allow, "github.issue.create": rules.Allow, "github.pr.create": rules.Allow,
		"github.pr.merge": rules.RequireApproval, "github.branch.delete": rules.RequireApproval,
		"npm.package.get": rules.Allow, "npm.package.publish": rules.RequireApproval,
		"http.get": rules.Allow, "http.post": rules.Deny, "mcp.docs.@initialize": rules.Allow,
		"mcp.docs.search_docs": rules.Allow, "mcp.docs.deleteIndex": rules.RequireApproval,
		"mcp.docs.frobnicate": rules.RequireApproval, "tf.unclassified": rules.Deny,
	}
	d := &rules.Decider{Policy: p}
	for _, a := range acts {
		exp := want[a.Type]
		if a.Type == "github.repo.push" {
			exp = rules.Allow
			if a.Params["branch"] == "main" {
				exp = rules.RequireApproval
			}
		}
		if got := d.Decide(a).Effect; got != exp {
			t.Errorf("%s %v: %s, want %s", a.Type, a.Params, got, exp)
		}
	}
	// What was not seen stays denied: another host, another gateway's type.
	for _, a := range []*rules.Action{
		{Type: "http.get", Request: rules.Request{Host: "evil.example.com"}},
		{Type: "github.repo.delete"},
		{Type: "github.repo.push"},
	} {
		if got := d.Decide(a).Effect; got == rules.Allow {
			t.Errorf("%s to %s not seen, and allowed", a.Type, a.Request.Host)
		}
	}
	// --since past the records: an empty suggestion that still validates.
	s, err = Suggest(testCtx(t), SuggestOptions{Home: home, Since: epoch.Add(time.Hour)})
	if err != nil || s.Decisions != 0 {
		t.Fatalf("empty: %v %+v", err, s)
	}
	loadSuggestion(t, s)
}

// Recorded traffic is what the agent made: action types, hosts and
// branches that try to break out of the YAML, the expression or the glob.
func TestSuggestAdversarialTraffic(t *testing.T) {
	evil := []string{
		"github.repo.get\nrules: []", "mcp.x.\"quoted\"", "mcp.x.it's", "mcp.x.a: b", "mcp.x.# comment", "mcp.x.*", "github.*.get",
		"github.repo.[get]", "mcp.x.{a}", "mcp.x.&anchor", "mcp.x.!!str", "mcp.x.tool\u2028next", "mcp.x.\x00", "mcp.x.🙂",
		"-", "@x", ":", "mcp.x.%41", "mcp.X.Tool", "mcp.x.(y)", "mcp.x.---", strings.Repeat("a", 300), "github.repo.get ", "",
		"mcp.docs.search", "mcp.docs-2.search", "mcp.docs_2.search", "http.get", "http.post", "github.repo.push", "a", "a.b",
		"admin.x.get", "x.secret.list", "mcp.s.@tools/list",
	}
	hosts := []string{"ok.example.com", "evil\"host", "a b", "x\n- name: pwn", "h*st", "\"]) || true || ([\"", "Upper.Example.com",
		"", strings.Repeat("h", 300) + ".com", "127.0.0.1", "[::1]", "ok.example.com:8443"}
	branches := []string{"main", "feature/x", "\"main\"", "main\n", "a\" || true || \"", strings.Repeat("b", 5000), "\u2029", "master", ""}
	s := newSuggester(builtinCatalog(t))
	for i, typ := range evil {
		a := &rules.Action{Type: typ, Connector: "c\n#", Request: rules.Request{Host: hosts[i%len(hosts)]}}
		if typ == "github.repo.push" {
			for _, b := range branches {
				s.add(epoch, &rules.Action{Type: typ, Params: map[string]any{"branch": b}})
			}
			s.add(epoch, &rules.Action{Type: typ, Params: map[string]any{"branch": 42}})
		}
		if strings.HasPrefix(typ, "http.") {
			for _, h := range hosts {
				s.add(epoch, &rules.Action{Type: typ, Request: rules.Request{Host: h}})
			}
		}
		s.add(epoch, a)
	}
	s.seen["mcp.docs.search"].count = math.MaxUint64
	sug, err := s.build("gw\n- name: pwn")
	if err != nil {
		t.Fatal(err)
	}
	p := loadSuggestion(t, sug)
	// No pattern widened what was seen, and no host made the condition
	// true for others.
	d := &rules.Decider{Policy: p}
	for _, a := range []*rules.Action{
		{Type: "github.repo.delete"}, {Type: "mcp.x.anything"}, {Type: "http.get", Request: rules.Request{Host: "other.example.com"}},
		{Type: "http.get", Request: rules.Request{Host: "evil\"host"}},
	} {
		if got := d.Decide(a); got.Effect == rules.Allow {
			t.Errorf("%s on %q allowed by %s", a.Type, a.Request.Host, got.Rule)
		}
	}
	if got := d.Decide(&rules.Action{Type: "http.get", Request: rules.Request{Host: "ok.example.com"}}); got.Effect != rules.Allow {
		t.Errorf("a read of a seen host: %+v", got)
	}
	for _, line := range strings.Split(string(sug.Policy), "\n") {
		if strings.HasPrefix(line, "- name: pwn") || strings.HasPrefix(line, "rules: []") {
			t.Errorf("a recorded value started a line: %q", line)
		}
	}
	if !strings.Contains(string(sug.Policy), "18446744073709551615 seen") {
		t.Error("the huge count is not in the comments")
	}
}

// FuzzSuggest: whatever the records hold, the suggestion loads and its
// tests pass (build checks both and fails otherwise).
func FuzzSuggest(f *testing.F) {
	f.Add("mcp.x.get_y", "example.com", "main", "gw")
	f.Add("http.get", "a\"b", "x\ny", "")
	f.Add("github.repo.push", "", "feature/\u2028", "\n")
	cat := builtinCatalog(f)
	f.Fuzz(func(t *testing.T, typ, host, br, gw string) {
		s := newSuggester(cat)
		s.add(epoch, &rules.Action{Type: typ, Request: rules.Request{Host: host}, Params: map[string]any{"branch": br}})
		s.add(epoch, &rules.Action{Type: "http.get", Request: rules.Request{Host: host}})
		s.add(epoch, &rules.Action{Type: "github.repo.push", Params: map[string]any{"branch": br}})
		s.add(epoch, &rules.Action{Type: "mcp." + host + "." + br})
		if _, err := s.build(gw); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSuggestionWriteDirRefusesANonEmptyDirectory(t *testing.T) {
	s, err := newSuggester(builtinCatalog(t)).build("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes"), []byte("mine"), 0o644)
	if err := s.WriteDir(dir, false); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("non-empty: %v", err)
	}
	if err := s.WriteDir(dir, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "notes")); string(b) != "mine" {
		t.Error("--force removed a file of the directory")
	}
	if _, err := rules.LoadDir(dir); err != nil {
		t.Fatal(err)
	}
}

// The README's table, a row at a time, as classify applies it.
func TestSuggestHeuristicTable(t *testing.T) {
	for typ, want := range map[string]verbClass{
		"github.repo.get": classRead, "mcp.docs.@tools/list": classRead, "mcp.fs.listFiles": classRead, "slack.conversations.list_members": classRead,
		"github.issue.create": classWrite, "anthropic.messages.create": classWrite, "anthropic.oauth.token": classWrite,
		"github.repo.push": classPush,
		"github.pr.merge":  classHuman, "npm.package.publish": classHuman, "mcp.db.drop_table": classHuman, "github.workflow.dispatch": classHuman,
		"github.secret.list": classHuman, "github.branch_protection.get": classHuman, "github.deploy_key.add": classHuman, "github.repo.update": classHuman,
		"github.release.create": classHuman, "github.tag.create": classHuman, "stripe.refund.create": classHuman, "github.release.get": classRead,
		"mcp.x.frobnicate": classUnknown, "github.graphql.mutation": classUnknown,
		"http.get": classHTTPRead, "http.head": classHTTPRead, "http.post": classHTTPWrite, "http.delete": classHTTPWrite,
		"tf.unclassified": classNone, "net.connect": classNone, "a": classUnknown,
	} {
		if got := classify(typ); got != want {
			t.Errorf("%s: class %d, want %d", typ, got, want)
		}
	}
}

// BenchmarkSuggest reads 100,000 recorded actions of 40 types and builds
// the suggestion (the policy and its tests loaded and run once).
func BenchmarkSuggest(b *testing.B) {
	cat := builtinCatalog(b)
	acts := sessionActions()
	for i := 0; i < b.N; i++ {
		s := newSuggester(cat)
		for j := 0; j < 100000; j++ {
			a := *acts[j%len(acts)]
			if j%len(acts) == 0 {
				a.Type = fmt.Sprintf("mcp.srv%d.get_thing", j%20)
			}
			s.add(epoch, &a)
		}
		if _, err := s.build(""); err != nil {
			b.Fatal(err)
		}
	}
}
