package gitops

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// releaseLog is the recorded traffic of the plan tests: pushes to release/1,
// feature/x and main, merges and reads, one read recorded under an older
// revision that denied it.
var releaseLog = []rec{
	{"github.repo.push", branch("release/1"), rules.Allow},
	{"github.repo.push", branch("feature/x"), rules.Allow},
	{"github.pr.merge", map[string]any{"number": 7.0}, rules.RequireApproval},
	{"github.repo.get", nil, rules.Allow},
	{"github.repo.push", branch("main"), rules.Allow},
	{"github.repo.push", branch("release/1"), rules.Allow},
	{"github.repo.pull", nil, rules.Deny}, // decided by an older revision
	{"github.pr.merge", map[string]any{"number": 8.0}, rules.RequireApproval},
	{"github.repo.push", branch("release/1"), rules.Allow},
	{"github.repo.push", branch("release/1"), rules.Allow},
	{"github.repo.push", branch("feature/x"), rules.Allow},
	{"github.issue.create", nil, rules.Deny},
}

func fixedNow() time.Time { return time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) }

func TestPlanReportsExactlyTheReleasePushes(t *testing.T) {
	home := testHome(t)
	f, first, second := twoCommits(t)
	pinTo(t, home, f.dir, first)
	writeLog(t, home, releaseLog)

	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Base.Commit != first || pl.Candidate.Commit != second {
		t.Fatalf("base %s candidate %s, want %s and %s (the branch tip)", pl.Base.Commit, pl.Candidate.Commit, first, second)
	}
	if len(pl.Changes) != 1 {
		t.Fatalf("want one transition, got %+v", pl.Changes)
	}
	tr := pl.Changes[0]
	if tr.From != rules.Allow || tr.To != rules.Deny || tr.Count != 4 || len(tr.Groups) != 1 {
		t.Fatalf("transition %+v, want allow → deny ×4 in one group", tr)
	}
	g := tr.Groups[0]
	if g.Rule != "no-release-pushes" || g.Action != "github.repo.push" || g.Count != 4 || len(g.Examples) != maxExamples {
		t.Fatalf("group %+v", g)
	}
	for _, e := range g.Examples {
		if !strings.Contains(e.Summary, "branch=release/1") {
			t.Errorf("example %+v is not a release push", e)
		}
	}
	want := Counts{Replayed: 12, NewlyDenied: 4, Unchanged: 8, RecordedDiffers: 1}
	if pl.Counts != want {
		t.Errorf("counts %+v, want %+v", pl.Counts, want)
	}
	if len(pl.Policy) != 1 || pl.Policy[0].Rule != "no-release-pushes" || pl.Policy[0].Change != "added" {
		t.Errorf("rule changes %+v, want no-release-pushes added", pl.Policy)
	}
	if !pl.HasChanges() || !pl.Tests.OK() || pl.Tests.Passed != 4 {
		t.Errorf("has changes %v, tests %+v", pl.HasChanges(), pl.Tests)
	}
	if got := pl.Summary(); got != "Plan: 4 actions newly denied, 0 newly allowed, 0 newly held; 8 unchanged." {
		t.Errorf("summary %q", got)
	}

	var text bytes.Buffer
	if err := pl.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan_release.golden", text.Bytes())
	js, err := json.MarshalIndent(pl, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	js = bytes.ReplaceAll(js, []byte(f.dir), []byte("$REPO"))
	golden(t, "plan_release_json.golden", append(js, '\n'))
}

func TestPlanWindowAndNoChange(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	writeLog(t, home, releaseLog)

	// Records are one second apart from epoch: a window from the 6th
	// record on sees two of the four release pushes.
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Since: epoch.Add(6 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Counts.Replayed != 6 || pl.Counts.NewlyDenied != 2 {
		t.Errorf("windowed counts %+v, want 6 replayed, 2 newly denied", pl.Counts)
	}

	// The pinned commit against itself: nothing changes.
	pl, err = ComputePlan(testCtx(t), PlanOptions{Home: home, Rev: first})
	if err != nil {
		t.Fatal(err)
	}
	if pl.HasChanges() || pl.Counts.Unchanged != 12 {
		t.Errorf("same commit: changes %v, counts %+v", pl.HasChanges(), pl.Counts)
	}
	if got := pl.Summary(); got != "Plan: 0 actions newly denied, 0 newly allowed, 0 newly held; 12 unchanged." {
		t.Errorf("summary %q", got)
	}
}

func TestPlanWorktreeCandidate(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	writeLog(t, home, releaseLog)
	// The working tree holds the second commit; plan it as a PR checkout.
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Worktree: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Candidate.Commit != "" || pl.Candidate.Worktree != f.dir || pl.Counts.NewlyDenied != 4 {
		t.Errorf("candidate %+v counts %+v", pl.Candidate, pl.Counts)
	}
}

func TestPlanRedactedParamsAreUnknown(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	writeLog(t, home, []rec{
		{"github.repo.push", branch("release/1"), rules.Allow},
		{"github.repo.push", branch(Redacted), rules.Allow},
		{"github.repo.push", map[string]any{"branch": "feature/x", "token": Redacted}, rules.Allow},
		{"github.repo.get", map[string]any{"branch": Redacted}, rules.Allow},
		{"github.repo.push", map[string]any{"refs": map[string]any{"branch": Redacted}}, rules.Allow},
	})
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	// A redacted branch on a push is read by the changed rule: unknown. A
	// redacted token is not read; a read is not a push; refs is not read.
	want := Counts{Replayed: 5, NewlyDenied: 1, Unchanged: 3, Unknown: 1}
	if pl.Counts != want {
		t.Errorf("counts %+v, want %+v", pl.Counts, want)
	}
	if len(pl.Unknown) != 1 || pl.Unknown[0].Rule != "no-release-pushes" || pl.Unknown[0].Count != 1 {
		t.Errorf("unknown %+v", pl.Unknown)
	}
	if !strings.HasSuffix(pl.Summary(), "; 3 unchanged; 1 unknown.") {
		t.Errorf("summary %q", pl.Summary())
	}
	var text bytes.Buffer
	if err := pl.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan_unknown.golden", text.Bytes())
}

func TestPlanFailingTestsIsAnError(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	// The rule is weakened but the test still expects a deny.
	bad := f.commit(t, "oops", map[string]string{"tameflare.yaml": strings.Replace(basePolicy+releaseRule, `startsWith "release/"`, `== "release"`, 1)}, nil)
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Rev: bad})
	if !errors.Is(err, ErrTestsFailed) {
		t.Fatalf("err = %v, want ErrTestsFailed", err)
	}
	if pl == nil || pl.Tests.Failed != 1 || len(pl.Tests.Failures) != 1 || !strings.Contains(pl.Tests.Failures[0], "release branch") {
		t.Fatalf("plan tests %+v", pl)
	}
	var text bytes.Buffer
	if err := pl.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "Candidate tests FAILED: 3 passed, 1 failed") {
		t.Errorf("plan text does not say the tests failed:\n%s", text.String())
	}
}

func TestRuleDiffFields(t *testing.T) {
	load := func(src string) *rules.Policy {
		t.Helper()
		p, err := rules.LoadFS(mapFS(map[string]string{"tameflare.yaml": src}), "p")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := load(basePolicy)
	b := load(strings.NewReplacer(
		"decision: require_approval", "decision: require_approval\n    approval: {timeout: 5m}",
		"reason: Agents push branches.", "reason: Pushes are fine.\n    when: params.branch != \"main\"",
		"default: deny", "default: allow",
	).Replace(basePolicy) + releaseRule)
	got := diffPolicies(a, b)
	want := []RuleChange{
		{Rule: "(policy)", Change: "changed", Fields: []string{"default deny → allow"}, Diffs: []FieldDiff{{"default", `"deny"`, `"allow"`}}},
		{Rule: "pushes", Change: "changed", Fields: []string{"when", "reason"}, Where: "tameflare.yaml:8", Diffs: []FieldDiff{
			{"when", "", `"params.branch != \"main\""`}, {"reason", `"Agents push branches."`, `"Pushes are fine."`}}},
		{Rule: "merges", Change: "changed", Fields: []string{"approval"}, Where: "tameflare.yaml:13", Diffs: []FieldDiff{{"approval.timeout", "", `"5m"`}}},
		{Rule: "no-release-pushes", Change: "added", Where: "tameflare.yaml:17", Diffs: []FieldDiff{
			{"actions", "", `["github.repo.push"]`}, {"when", "", `"params.branch startsWith \"release/\""`},
			{"decision", "", `"deny"`}, {"reason", "", `"Release branches are cut by people."`}}},
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("diff\n got %s\nwant %s", gj, wj)
	}
	rm := diffPolicies(b, a)
	if last := rm[len(rm)-1]; last.Change != "removed" || last.Rule != "no-release-pushes" || len(last.Diffs) != 4 || last.Diffs[2] != (FieldDiff{"decision", `"deny"`, ""}) {
		t.Errorf("reverse diff %+v", rm)
	}

	// The text form, plain and coloured: before -> after for each changed
	// field, the body of an added or removed rule.
	for _, tc := range []struct {
		color  bool
		golden string
	}{{false, "plan_fields.golden"}, {true, "plan_fields_color.golden"}} {
		pl := &Plan{Base: Side{Commit: strings.Repeat("a", 40)}, Candidate: Side{Commit: strings.Repeat("b", 40)},
			Policy: append(got, rm[len(rm)-1]), Changes: []*Transition{{From: rules.Allow, To: rules.Deny, Count: 1}}}
		var text bytes.Buffer
		if err := pl.WriteTextColor(&text, tc.color); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(text.String(), "\x1b[") != tc.color {
			t.Errorf("color %v: escape sequences present = %v", tc.color, !tc.color)
		}
		golden(t, tc.golden, text.Bytes())
	}
}

func TestParamsRead(t *testing.T) {
	for when, want := range map[string]string{
		`params.branch startsWith "release/"`:            "branch",
		`params?.base == "main" && params["head"] != ""`: "base,head",
		`"token" in params`:                              "*",
		`resource.repo == "x"`:                           "",
		`params.a.b == 1 || params['c'] > 2`:             "a,c",
	} {
		got := strings.Join(sortedKeys(paramsRead(when)), ",")
		if got != want {
			t.Errorf("paramsRead(%q) = %q, want %q", when, got, want)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 48211: "48,211", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPlanFileRoundTrip(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/plan.json"
	if err := WritePlanFile(path, pl); err != nil {
		t.Fatal(err)
	}
	back, err := ReadPlanFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Base != pl.Base || back.Candidate != pl.Candidate || back.Counts != pl.Counts {
		t.Errorf("read back %+v, want %+v", back, pl)
	}
	if _, err := ParsePlan([]byte(`{"format_version":2}`)); err == nil {
		t.Error("a plan of another format version was accepted")
	}
}

// The plan decides MCP actions as the gateway does, with the built-in
// baseline: a rule denying mcp.*.@tools/list turns the baseline's allow
// into deny. The "made under another revision" note counts only records
// of another revision.
func TestPlanReplaysMCPBaselineAndCountsOtherRevisions(t *testing.T) {
	home := testHome(t)
	f := newFixture(t)
	first := f.commit(t, "base policy", map[string]string{"tameflare.yaml": basePolicy, "tests/base.yaml": baseTests}, nil)
	second := f.commit(t, "no tool lists", map[string]string{"tameflare.yaml": basePolicy + `  - name: no-tool-lists
    actions: ["mcp.*.@tools/list"]
    decision: deny
`}, nil)
	pinTo(t, home, f.dir, first)
	c, err := f.repo.CommitObject(plumbing.NewHash(first))
	if err != nil {
		t.Fatal(err)
	}
	base, _, err := LoadCommit(c, "policy")
	if err != nil {
		t.Fatal(err)
	}
	var actions []*rules.Action
	var decisions []rules.Decision
	for i, r := range []struct {
		conn, typ string
		recorded  rules.Effect
		revision  string
	}{
		{"mcp", "mcp.files.@tools/list", rules.Allow, base.Revision},
		{"mcp", "mcp.files.@initialize", rules.Allow, base.Revision},
		// The pinned revision allows reads; this one was refused by a
		// gateway for another reason, not by another policy: no note.
		{"github", "github.repo.get", rules.Deny, base.Revision},
		// Another revision decided this differently: the note counts it.
		{"github", "github.repo.get", rules.Deny, "old"},
	} {
		a := &rules.Action{ID: idOf(i), Type: r.typ, Connector: r.conn}
		if _, method, ok := strings.Cut(r.typ, ".@"); ok {
			// As the MCP connector records a protocol method of a listed
			// server: the baseline applies only to those.
			a.Resource = map[string]string{"server": "files", "method": method}
		}
		actions = append(actions, a)
		decisions = append(decisions, rules.Decision{Effect: r.recorded, Revision: r.revision})
	}
	appendDecisions(t, home, "gw1", actions, decisions)
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Rev: second})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Changes) != 1 || pl.Changes[0].From != rules.Allow || pl.Changes[0].To != rules.Deny || pl.Changes[0].Count != 1 ||
		pl.Changes[0].Groups[0].Rule != "no-tool-lists" || pl.Changes[0].Groups[0].Action != "mcp.files.@tools/list" {
		t.Fatalf("changes %+v", pl.Changes)
	}
	want := Counts{Replayed: 4, NewlyDenied: 1, Unchanged: 3, RecordedDiffers: 1}
	if pl.Counts != want {
		t.Errorf("counts %+v, want %+v", pl.Counts, want)
	}
}

// Colour keeps values terminal-safe: an escape sequence inside a field's
// value is shown escaped, only tf's own styles reach the terminal.
func TestPlanColorKeepsValuesSafe(t *testing.T) {
	pl := &Plan{Base: Side{Commit: strings.Repeat("a", 40)}, Candidate: Side{Commit: strings.Repeat("b", 40)},
		Policy: []RuleChange{{Rule: "r", Change: "changed", Fields: []string{"reason"}, Diffs: []FieldDiff{{"reason", `"old"`, "\"\x1b[2Jwiped\""}}}}}
	var text bytes.Buffer
	if err := pl.WriteTextColor(&text, true); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	if strings.Contains(out, "\x1b[2J") || !strings.Contains(out, ansiRed+`"old"`+ansiReset) {
		t.Errorf("colour output:\n%q", out)
	}
}

// A plan replays the records of two machines' logs and a collector
// export, each record once, even when the export repeats records one of
// the logs holds (at-least-once shipping).
func TestPlanOverManySources(t *testing.T) {
	home := testHome(t)
	f, first, _ := twoCommits(t)
	pinTo(t, home, f.dir, first)
	writeLog(t, home, releaseLog) // this machine's: not replayed unless named
	laptop, ci, shipped := t.TempDir(), t.TempDir(), t.TempDir()
	writeLogAs(t, laptop, "laptop", releaseLog)
	writeLogAs(t, ci, "ci", releaseLog[:6])
	writeLogAs(t, shipped, "runner", releaseLog)

	// The collector's file: the runner's records, and the ci log's again.
	var lines []string
	for _, dir := range []string{shipped, ci} {
		if err := audit.Scan(audit.Dir(dir), audit.Filter{}, func(r *audit.Record) error {
			lines = append(lines, string(r.Line))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var recs []map[string]any
	for _, l := range lines {
		recs = append(recs, map[string]any{"body": map[string]any{"stringValue": l}})
	}
	export, _ := json.Marshal(map[string]any{"resourceLogs": []any{map[string]any{"scopeLogs": []any{
		map[string]any{"scope": map[string]any{"name": audit.OTLPScope}, "logRecords": recs},
	}}}})
	exportPath := filepath.Join(t.TempDir(), "logs.json")
	if err := os.WriteFile(exportPath, append(export, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}

	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Now: fixedNow, Audit: []string{laptop, ci, exportPath}})
	if err != nil {
		t.Fatal(err)
	}
	want := 2*len(releaseLog) + 6
	if pl.Counts.Replayed != want {
		t.Fatalf("replayed %d decisions, want %d", pl.Counts.Replayed, want)
	}
	// Each machine's release pushes (4, 4 and 2 in the ci log's first 6)
	// change from allow to deny.
	if len(pl.Changes) != 1 || pl.Changes[0].Count != 10 {
		t.Fatalf("changes %+v, want allow → deny ×10", pl.Changes)
	}
	var buf bytes.Buffer
	if err := pl.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "in 3 audit sources") {
		t.Errorf("plan text does not name the sources:\n%s", buf.String())
	}
	if _, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Audit: []string{filepath.Join(t.TempDir(), "nope")}}); err == nil {
		t.Fatal("a missing audit source is not an error")
	}
}

// A plan replays a model call whose body the gateway could not read to
// its end as the gateway would decide it: a candidate rule reading
// params.model refuses it (tf:truncated-body), where deciding on the
// missing field would have shown it allowed.
func TestPlanReplaysTruncatedBodies(t *testing.T) {
	home := testHome(t)
	f := newFixture(t)
	models := basePolicy + `  - name: model-calls
    actions: [anthropic.messages.create]
    decision: allow
`
	first := f.commit(t, "models", map[string]string{"tameflare.yaml": models, "tests/base.yaml": baseTests}, nil)
	second := f.commit(t, "no opus", map[string]string{"tameflare.yaml": models + `  - name: no-opus
    actions: [anthropic.messages.create]
    when: params.model matches "opus"
    decision: deny
`}, nil)
	pinTo(t, home, f.dir, first)
	var actions []*rules.Action
	var decisions []rules.Decision
	for i, params := range []map[string]any{{"model": "claude-sonnet-4-5"}, {"body_truncated": true}} {
		actions = append(actions, &rules.Action{ID: idOf(i), Type: "anthropic.messages.create", Connector: "anthropic", Params: params})
		decisions = append(decisions, rules.Decision{Effect: rules.Allow, Rule: "model-calls"})
	}
	appendDecisions(t, home, "gw1", actions, decisions)
	pl, err := ComputePlan(testCtx(t), PlanOptions{Home: home, Rev: second})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Changes) != 1 || pl.Changes[0].To != rules.Deny || pl.Changes[0].Count != 1 || pl.Changes[0].Groups[0].Rule != rules.TruncatedBodyRule {
		t.Fatalf("changes %+v", pl.Changes)
	}
}
