package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	tfhome "github.com/tameflare/tf/home"

	"github.com/tameflare/tf/termtext"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/usage"
)

// PlanFormatVersion is the version of the plan's JSON form (tf policy plan
// --json and saved plans).
const PlanFormatVersion = 1

// maxExamples is how many example requests a plan keeps per group.
const maxExamples = 3

// Redacted is the value the gateway records in place of a secret-looking
// parameter.
const Redacted = "[redacted]"

// PlanOptions configure ComputePlan.
type PlanOptions struct {
	// Home is $TF_HOME: the pin and the audit log.
	Home string
	// Rev is the candidate revision of the pinned repository; empty (and no
	// Worktree) means the tip of the pinned branch.
	Rev string
	// Worktree, when set, is a directory holding the candidate policy (a
	// pull request checkout in CI) instead of a revision.
	Worktree string
	// Since and Until bound the replayed records; zero means unbounded.
	Since, Until time.Time
	// Now stamps the plan; nil means time.Now.
	Now func() time.Time
	// Audit, when set, replaces this machine's log with these sources:
	// $TF_HOME or audit log directories and collector exports (see
	// audit.ScanSources), merged by time, each record once.
	Audit []string
}

// A Side is one of the two policies a plan compares.
type Side struct {
	Commit   string `json:"commit,omitempty"`
	Worktree string `json:"worktree,omitempty"`
	Source   string `json:"source"`
	Revision string `json:"revision"`
	Rules    int    `json:"rules"`
}

// Label names the side in messages.
func (s Side) Label() string {
	if s.Commit != "" {
		return shortHash(s.Commit)
	}
	return s.Worktree
}

// TestSummary is the outcome of the candidate's tests.
type TestSummary struct {
	Passed   int      `json:"passed"`
	Failed   int      `json:"failed"`
	Failures []string `json:"failures,omitempty"`
	// Error is set when the tests could not run (a file that does not
	// parse, no tests at all).
	Error string `json:"error,omitempty"`
}

// OK reports whether the tests ran and passed.
func (t TestSummary) OK() bool { return t.Failed == 0 && t.Error == "" }

// A RuleChange is one rule added, removed or changed, by name; for a change,
// Fields lists what differs. Rule "(policy)" carries policy-level settings
// (mode, default, passthrough, private_hosts).
type RuleChange struct {
	Rule   string   `json:"rule"`
	Change string   `json:"change"` // added | removed | changed
	Fields []string `json:"fields,omitempty"`
	// Where is file:line of the rule on the side that has it (the
	// candidate's, for a change).
	Where string `json:"where,omitempty"`
	// Diffs holds each differing field's value before and after, as the
	// policy file spells it; an added rule has only afters (its body), a
	// removed one only befores.
	Diffs []FieldDiff `json:"diffs,omitempty"`
}

// A FieldDiff is one field of a rule or of the policy on each side; a side
// that lacks the field has an empty value.
type FieldDiff struct {
	Field  string `json:"field"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// An Example is one recorded request of a group.
type Example struct {
	Time      time.Time `json:"time"`
	Gateway   string    `json:"gateway,omitempty"`
	Action    string    `json:"action"`
	Summary   string    `json:"summary,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
}

// A Group counts decisions of one action type decided by one rule.
type Group struct {
	// Rule is the candidate's deciding rule ("" for the default); for an
	// unknown group, the changed rule that reads a redacted parameter.
	Rule     string    `json:"rule"`
	Action   string    `json:"action"`
	Count    int       `json:"count"`
	Examples []Example `json:"examples"`
}

// A Transition counts decisions that go from one effect to another.
type Transition struct {
	From   rules.Effect `json:"from"`
	To     rules.Effect `json:"to"`
	Count  int          `json:"count"`
	Groups []*Group     `json:"groups"`
}

// Counts is the summary of a replay.
type Counts struct {
	Replayed     int `json:"replayed"`
	NewlyDenied  int `json:"newly_denied"`
	NewlyAllowed int `json:"newly_allowed"`
	NewlyHeld    int `json:"newly_held"`
	Unchanged    int `json:"unchanged"`
	Unknown      int `json:"unknown"`
	// RecordedDiffers counts recorded decisions that the pinned policy
	// decides differently on replay (they were made under another
	// revision); KillSwitch counts records refused by the kill switch,
	// which a replay of policies does not reproduce.
	RecordedDiffers int `json:"recorded_differs"`
	KillSwitch      int `json:"kill_switch"`
}

// Plan is what a policy change would do to recorded traffic.
type Plan struct {
	FormatVersion int       `json:"format_version"`
	Created       time.Time `json:"created"`
	Repository    string    `json:"repository"`
	Ref           string    `json:"ref"`
	// Base is the pinned policy the plan was computed against; apply
	// refuses the plan once the pin has moved.
	Base      Side        `json:"base"`
	Candidate Side        `json:"candidate"`
	Since     time.Time   `json:"since,omitzero"`
	Until     time.Time   `json:"until,omitzero"`
	Tests     TestSummary `json:"tests"`
	// Policy lists rule and setting changes.
	Policy []RuleChange `json:"policy_changes"`
	// Changes are decision transitions, most severe first.
	Changes []*Transition `json:"decision_changes"`
	// Unknown are actions a changed rule decides from a redacted parameter:
	// neither side's answer can be trusted, so none is given.
	Unknown []*Group `json:"unknown"`
	Counts  Counts   `json:"counts"`
	// Audit lists the sources replayed when they were not this
	// machine's log.
	Audit []string `json:"audit,omitempty"`
}

// HasChanges reports whether the candidate differs from the pinned policy in
// its rules or in any replayed decision.
func (p *Plan) HasChanges() bool {
	return len(p.Policy) > 0 || len(p.Changes) > 0 || len(p.Unknown) > 0
}

// ComputePlan compiles the candidate, runs its tests, and replays every
// decision record in the window through the pinned policy and the candidate.
// It streams the audit log, keeping counts and a few examples per group.
// A candidate whose tests fail gives the plan and an error wrapping
// ErrTestsFailed.
func ComputePlan(ctx context.Context, opts PlanOptions) (*Plan, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	pin, err := ReadPin(opts.Home)
	if err != nil {
		return nil, err
	}
	r, err := OpenRepository(ctx, opts.Home, pin.Repository, isRemote(pin.Repository) && opts.Worktree == "")
	if err != nil {
		return nil, err
	}
	label := repoLabel(pin.Repository)
	baseCommit, err := commitAt(r, pin.Commit)
	if err != nil {
		return nil, fmt.Errorf("pinned commit: %w", err)
	}
	base, _, err := LoadCommit(baseCommit, label)
	if err != nil {
		return nil, fmt.Errorf("pinned policy: %w", err)
	}

	var (
		cand     *rules.Policy
		candFS   fs.FS
		candSide Side
	)
	if opts.Worktree != "" {
		dir, err := filepath.Abs(opts.Worktree)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", opts.Worktree, err)
		}
		candFS = os.DirFS(dir)
		if cand, err = rules.LoadFS(candFS, dir); err != nil {
			return nil, fmt.Errorf("candidate policy: %w", err)
		}
		candSide.Worktree = dir
	} else {
		var c *object.Commit
		if opts.Rev != "" {
			c, err = Resolve(r, opts.Rev)
		} else {
			c, err = refTip(r, pin.Ref)
		}
		if err != nil {
			return nil, fmt.Errorf("candidate: %w", err)
		}
		if cand, candFS, err = LoadCommit(c, label); err != nil {
			return nil, fmt.Errorf("candidate policy: %w", err)
		}
		candSide.Commit = c.Hash.String()
	}
	candSide.Source, candSide.Revision, candSide.Rules = cand.Source, cand.Revision, len(cand.Rules)

	pl := &Plan{
		FormatVersion: PlanFormatVersion,
		Created:       now().UTC(),
		Repository:    pin.Repository,
		Ref:           pin.Ref,
		Base:          Side{Commit: pin.Commit, Source: base.Source, Revision: base.Revision, Rules: len(base.Rules)},
		Candidate:     candSide,
		Since:         opts.Since,
		Until:         opts.Until,
		Policy:        diffPolicies(base, cand),
		Changes:       []*Transition{},
		Unknown:       []*Group{},
		Audit:         opts.Audit,
	}
	rep, testErr := runTests(cand, candFS)
	if rep != nil {
		pl.Tests.Passed, pl.Tests.Failed = rep.Passed, rep.Failed
		for _, res := range rep.Results {
			if !res.Passed {
				pl.Tests.Failures = append(pl.Tests.Failures, res.Pos.Error())
			}
		}
	}
	var rerr rules.Errors
	if errors.As(testErr, &rerr) {
		pl.Tests.Error = rerr.Error()
	}

	if err := replay(ctx, pl, opts.Home, opts.Audit, base, cand); err != nil {
		return nil, err
	}
	if testErr != nil {
		return pl, fmt.Errorf("candidate %s: %w", candSide.Label(), testErr)
	}
	return pl, nil
}

// replayBatch is how many records travel together from the reader to the
// deciding goroutine: large enough to make channel costs vanish, small
// enough to keep memory constant.
const replayBatch = 512

// replay streams the decision records of the window through both policies.
// Reading and decoding the log (audit.Scan) runs in one goroutine and
// deciding in another, so that on a machine with two cores they overlap;
// one decider keeps the examples in log order.
func replay(ctx context.Context, pl *Plan, home string, sources []string, base, cand *rules.Policy) error {
	rd := newReplayer(base, cand, pl.Policy)
	// Every kind: decisions are replayed; gateway starts begin the
	// sessions and outcomes carry the tokens that limits count.
	f := audit.Filter{Since: pl.Since, Until: pl.Until}
	batches := make(chan []*audit.Record, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range batches {
			for _, rec := range b {
				rd.add(rec)
			}
		}
	}()
	batch := make([]*audit.Record, 0, replayBatch)
	scan := func(fn func(*audit.Record) error) error { return audit.Scan(audit.Dir(home), f, fn) }
	if len(sources) > 0 {
		scan = func(fn func(*audit.Record) error) error { return audit.ScanSources(ctx, sources, f, fn) }
	}
	err := scan(func(rec *audit.Record) error {
		batch = append(batch, rec)
		if len(batch) < replayBatch {
			return nil
		}
		select {
		case batches <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
		batch = make([]*audit.Record, 0, replayBatch)
		return nil
	})
	if err == nil && len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	<-done
	if err != nil {
		return fmt.Errorf("replaying the audit log: %w", err)
	}
	rd.finish(pl)
	return nil
}

type groupKey struct{ rule, action string }

type transKey struct{ from, to rules.Effect }

// replayer aggregates a replay in memory bounded by the number of distinct
// (transition, rule, action type) groups, not by the log's length.
type replayer struct {
	base, cand rules.Decider
	// watch are the rules of either side that changed, with the parameter
	// names their conditions read.
	watch  []watchedRule
	trans  map[transKey]map[groupKey]*Group
	unk    map[groupKey]*Group
	counts Counts
	// sessions is the current run of each gateway (the time it started),
	// for limits per session; tokens holds the model calls a token limit
	// counted on either side, until their outcome brings the tokens.
	sessions map[string]string
	tokens   map[string]tokenCall
}

type tokenCall struct {
	a          *rules.Action
	base, cand rules.Decision
}

type watchedRule struct {
	name    string
	actions []string
	params  map[string]bool // "*" reads any parameter
}

func newReplayer(base, cand *rules.Policy, changes []RuleChange) *replayer {
	rd := &replayer{
		// Limits are replayed in record order, each side with counters
		// of its own that start empty at the start of the window.
		// Decided as the gateway decides: the rules, a truncated body's
		// refusal, and the MCP baseline for protocol plumbing.
		base:     rules.Decider{Policy: base, Counters: rules.NewMemCounters(), Baseline: mcp.Baseline},
		cand:     rules.Decider{Policy: cand, Counters: rules.NewMemCounters(), Baseline: mcp.Baseline},
		trans:    map[transKey]map[groupKey]*Group{},
		unk:      map[groupKey]*Group{},
		sessions: map[string]string{},
		tokens:   map[string]tokenCall{},
	}
	changed := map[string]bool{}
	for _, c := range changes {
		// A new reason or approval timeout cannot change an effect.
		if c.Change != "changed" || slices.ContainsFunc(c.Fields, func(f string) bool { return f != "reason" && f != "approval" }) {
			changed[c.Rule] = true
		}
	}
	for _, p := range []*rules.Policy{base, cand} {
		for _, r := range p.Rules {
			if !changed[r.Name] || r.When == "" {
				continue
			}
			if ps := paramsRead(r.When); len(ps) > 0 {
				rd.watch = append(rd.watch, watchedRule{name: r.Name, actions: r.Actions, params: ps})
			}
		}
	}
	return rd
}

func (rd *replayer) add(rec *audit.Record) {
	switch rec.Kind {
	case audit.KindEvent:
		if rec.Event == audit.EventGatewayStarted {
			rd.sessions[rec.Gateway] = rec.Time.UTC().Format(time.RFC3339Nano)
		}
		return
	case audit.KindOutcome:
		if c, ok := rd.tokens[rec.RequestID]; ok {
			delete(rd.tokens, rec.RequestID)
			if rec.Usage != nil && rec.Usage.Unknown == "" {
				n := usage.Tokens(c.a.Connector, rec.Usage)
				rd.base.AddTokens(c.a, &c.base, rec.Time, n)
				rd.cand.AddTokens(c.a, &c.cand, rec.Time, n)
			}
		}
		return
	case audit.KindDecision:
	default:
		return
	}
	a := rec.Action
	if a.Time.IsZero() {
		// Conditions read the time of the action; a record always has one.
		a.Time = rec.Time
	}
	if a.Gateway == "" {
		a.Gateway = rec.Gateway
	}
	rd.counts.Replayed++
	rd.base.Session, rd.cand.Session = rd.sessions[a.Gateway], rd.sessions[a.Gateway]
	cur := rd.base.Decide(a)
	switch {
	case rec.Decision.KillSwitch:
		rd.counts.KillSwitch++
	case rec.Decision.Effect != cur.Effect && rec.Decision.Revision != rd.base.Policy.Revision:
		// Only a decision made under another revision: one the pinned
		// revision made differently was shaped by the gateway (--mode
		// monitor, a person's answer), not by another policy.
		rd.counts.RecordedDiffers++
	}
	if rule, ok := rd.unknown(a); ok {
		rd.counts.Unknown++
		addExample(rd.unk, groupKey{rule, a.Type}, rec)
		return
	}
	next := rd.cand.Decide(a)
	if len(cur.Counted) > 0 || len(next.Counted) > 0 {
		rd.tokens[rec.RequestID] = tokenCall{a, cur, next}
	}
	if next.Effect == cur.Effect {
		rd.counts.Unchanged++
		return
	}
	switch next.Effect {
	case rules.Deny:
		rd.counts.NewlyDenied++
	case rules.Allow:
		rd.counts.NewlyAllowed++
	case rules.RequireApproval:
		rd.counts.NewlyHeld++
	}
	k := transKey{cur.Effect, next.Effect}
	m := rd.trans[k]
	if m == nil {
		m = map[groupKey]*Group{}
		rd.trans[k] = m
	}
	addExample(m, groupKey{next.Rule, a.Type}, rec)
}

// unknown reports the first changed rule that applies to a and reads a
// parameter whose recorded value was redacted.
func (rd *replayer) unknown(a *rules.Action) (string, bool) {
	if len(rd.watch) == 0 || len(a.Params) == 0 {
		return "", false
	}
	var redacted []string
	for k, v := range a.Params {
		if hasRedacted(v, 0) {
			redacted = append(redacted, k)
		}
	}
	if len(redacted) == 0 {
		return "", false
	}
	for _, w := range rd.watch {
		if !slices.ContainsFunc(w.actions, func(g string) bool { return rules.GlobMatch(g, a.Type) }) {
			continue
		}
		if w.params["*"] {
			return w.name, true
		}
		for _, k := range redacted {
			if w.params[k] {
				return w.name, true
			}
		}
	}
	return "", false
}

// hasRedacted reports whether v is, or holds, the redaction marker.
func hasRedacted(v any, depth int) bool {
	if depth > 32 {
		return true // too deep to tell: do not guess
	}
	switch v := v.(type) {
	case string:
		return v == Redacted
	case map[string]any:
		for _, x := range v {
			if hasRedacted(x, depth+1) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if hasRedacted(x, depth+1) {
				return true
			}
		}
	}
	return false
}

var (
	paramDot   = regexp.MustCompile(`\bparams\s*(?:\?\.|\.)\s*([A-Za-z_][A-Za-z0-9_]*)`)
	paramIndex = regexp.MustCompile(`\bparams\s*(?:\?\.)?\[\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\]`)
	paramAny   = regexp.MustCompile(`\bparams\b`)
)

// paramsRead lists the parameter names a condition reads. A use of params
// that is neither params.name nor params["name"] (params[k], "x" in
// params, len(params)) could read any of them, and is "*".
func paramsRead(when string) map[string]bool {
	out := map[string]bool{}
	for _, m := range paramDot.FindAllStringSubmatch(when, -1) {
		out[m[1]] = true
	}
	for _, m := range paramIndex.FindAllStringSubmatch(when, -1) {
		out[m[1][1:len(m[1])-1]] = true
	}
	rest := paramIndex.ReplaceAllString(paramDot.ReplaceAllString(when, ""), "")
	if paramAny.MatchString(rest) {
		out["*"] = true
	}
	return out
}

func addExample(m map[groupKey]*Group, k groupKey, rec *audit.Record) {
	g := m[k]
	if g == nil {
		g = &Group{Rule: k.rule, Action: k.action}
		m[k] = g
	}
	g.Count++
	if len(g.Examples) < maxExamples {
		g.Examples = append(g.Examples, Example{
			Time: rec.Time, Gateway: rec.Gateway, Action: rec.Action.Type,
			Summary: summarize(rec.Action), RequestID: rec.RequestID,
		})
	}
}

func (rd *replayer) finish(pl *Plan) {
	pl.Counts = rd.counts
	for k, m := range rd.trans {
		t := &Transition{From: k.from, To: k.to, Groups: sortedGroups(m)}
		for _, g := range t.Groups {
			t.Count += g.Count
		}
		pl.Changes = append(pl.Changes, t)
	}
	// Most severe first: what becomes denied, then held, then allowed.
	sort.Slice(pl.Changes, func(i, j int) bool {
		a, b := pl.Changes[i], pl.Changes[j]
		if sa, sb := severity(a.To), severity(b.To); sa != sb {
			return sa > sb
		}
		return severity(a.From) < severity(b.From)
	})
	pl.Unknown = sortedGroups(rd.unk)
}

func severity(e rules.Effect) int {
	switch e {
	case rules.Deny:
		return 3
	case rules.RequireApproval:
		return 2
	case rules.Allow:
		return 1
	}
	return 0
}

func sortedGroups(m map[groupKey]*Group) []*Group {
	out := make([]*Group, 0, len(m))
	for _, g := range m {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Action < b.Action
	})
	return out
}

// summarize describes an action's resource and scalar params in one short
// line: "owner=acme repo=app branch=release/1".
func summarize(a *rules.Action) string {
	var parts []string
	for _, k := range sortedKeys(a.Resource) {
		parts = append(parts, k+"="+clip(a.Resource[k]))
	}
	for _, k := range sortedKeys(a.Params) {
		switch v := a.Params[k].(type) {
		case string:
			parts = append(parts, k+"="+clip(v))
		case float64, bool, int, int64, json.Number:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	s := strings.Join(parts, " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 48 {
		return s[:45] + "..."
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// diffPolicies compares two policies rule by rule (by name) and setting by
// setting.
func diffPolicies(base, cand *rules.Policy) []RuleChange {
	var out []RuleChange
	var fields []string
	var diffs []FieldDiff
	if base.Mode != cand.Mode {
		fields = append(fields, fmt.Sprintf("mode %s → %s", base.Mode, cand.Mode))
		diffs = append(diffs, FieldDiff{"mode", quote(string(base.Mode)), quote(string(cand.Mode))})
	}
	if base.Default != cand.Default {
		fields = append(fields, fmt.Sprintf("default %s → %s", base.Default, cand.Default))
		diffs = append(diffs, FieldDiff{"default", quote(string(base.Default)), quote(string(cand.Default))})
	}
	if !slices.Equal(base.Passthrough, cand.Passthrough) {
		fields = append(fields, "passthrough")
		diffs = append(diffs, FieldDiff{"passthrough", list(base.Passthrough), list(cand.Passthrough)})
	}
	if !slices.Equal(base.PrivateHosts, cand.PrivateHosts) {
		fields = append(fields, "private_hosts")
		diffs = append(diffs, FieldDiff{"private_hosts", list(base.PrivateHosts), list(cand.PrivateHosts)})
	}
	if len(fields) > 0 {
		out = append(out, RuleChange{Rule: "(policy)", Change: "changed", Fields: fields, Diffs: diffs})
	}
	old := map[string]*rules.CompiledRule{}
	for _, r := range base.Rules {
		old[r.Name] = r
	}
	seen := map[string]bool{}
	for _, r := range cand.Rules {
		seen[r.Name] = true
		o, ok := old[r.Name]
		if !ok {
			out = append(out, RuleChange{Rule: r.Name, Change: "added", Where: where(cand, r), Diffs: ruleDiffs(nil, &r.Rule)})
			continue
		}
		if f := ruleFields(&o.Rule, &r.Rule); len(f) > 0 {
			out = append(out, RuleChange{Rule: r.Name, Change: "changed", Fields: f, Where: where(cand, r), Diffs: ruleDiffs(&o.Rule, &r.Rule)})
		}
	}
	for _, r := range base.Rules {
		if !seen[r.Name] {
			out = append(out, RuleChange{Rule: r.Name, Change: "removed", Where: where(base, r), Diffs: ruleDiffs(&r.Rule, nil)})
		}
	}
	return out
}

// ruleDiffs lists the fields of a rule that differ between a and b, with
// their values; a nil side lists every field the other sets.
func ruleDiffs(a, b *rules.Rule) []FieldDiff {
	var out []FieldDiff
	for _, f := range []struct {
		name string
		val  func(*rules.Rule) string
	}{
		{"actions", func(r *rules.Rule) string { return list(r.Actions) }},
		{"when", func(r *rules.Rule) string { return quote(r.When) }},
		{"decision", func(r *rules.Rule) string { return quote(string(r.Decision)) }},
		{"reason", func(r *rules.Rule) string { return quote(r.Reason) }},
		{"mode", func(r *rules.Rule) string {
			if r.Mode == "" {
				return ""
			}
			return quote(string(r.Mode))
		}},
		{"approval.timeout", func(r *rules.Rule) string { return quote(approvalTimeout(r)) }},
		{"limit", func(r *rules.Rule) string { return limitText(r) }},
	} {
		var before, after string
		if a != nil {
			before = f.val(a)
		}
		if b != nil {
			after = f.val(b)
		}
		if before != after {
			out = append(out, FieldDiff{f.name, before, after})
		}
	}
	return out
}

// quote is a string value as the plan prints it; empty stays empty.
func quote(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

func list(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// where is a rule's file:line relative to its policy's directory.
func where(p *rules.Policy, r *rules.CompiledRule) string {
	f := strings.TrimPrefix(r.File, filepath.ToSlash(p.Source)+"/")
	return fmt.Sprintf("%s:%d", f, r.Line)
}

// ruleFields names the fields in which two versions of a rule differ.
func ruleFields(a, b *rules.Rule) []string {
	var f []string
	if !slices.Equal(a.Actions, b.Actions) {
		f = append(f, "actions")
	}
	if a.When != b.When {
		f = append(f, "when")
	}
	if a.Decision != b.Decision {
		f = append(f, "decision")
	}
	if a.Reason != b.Reason {
		f = append(f, "reason")
	}
	if effMode(a.Mode) != effMode(b.Mode) {
		f = append(f, "mode")
	}
	if approvalTimeout(a) != approvalTimeout(b) {
		f = append(f, "approval")
	}
	if limitText(a) != limitText(b) {
		f = append(f, "limit")
	}
	return f
}

func effMode(m rules.Mode) rules.Mode {
	if m == "" {
		return rules.Enforce
	}
	return m
}

func approvalTimeout(r *rules.Rule) string {
	if r.Approval == nil {
		return ""
	}
	return r.Approval.Timeout
}

// LatestPlanPath is where tf policy plan keeps the last plan it computed,
// for the dashboard and for people who forgot --out.
func LatestPlanPath(home string) string { return filepath.Join(home, "plans", "latest") }

// WritePlanFile saves a plan for tf policy apply, atomically.
func WritePlanFile(path string, pl *Plan) error {
	b, err := json.MarshalIndent(pl, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding plan: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

// maxPlanBytes bounds a saved plan: counts and a few examples per group.
const maxPlanBytes = 64 << 20

// ReadPlanFile reads a saved plan, refusing another format version.
func ReadPlanFile(path string) (*Plan, error) {
	data, err := tfhome.ReadFile(path, maxPlanBytes)
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	return ParsePlan(data)
}

// ParsePlan decodes a plan's JSON form.
func ParsePlan(data []byte) (*Plan, error) {
	var pl Plan
	if err := json.Unmarshal(data, &pl); err != nil {
		return nil, fmt.Errorf("decoding plan: %w", err)
	}
	if pl.FormatVersion != PlanFormatVersion {
		return nil, fmt.Errorf("plan format_version %d: this tf reads %d", pl.FormatVersion, PlanFormatVersion)
	}
	if !isHexHash(pl.Base.Commit) {
		return nil, errors.New("plan names no base commit")
	}
	if pl.Candidate.Commit != "" && !isHexHash(pl.Candidate.Commit) {
		return nil, fmt.Errorf("plan candidate %q is not a commit hash", pl.Candidate.Commit)
	}
	return &pl, nil
}

// WriteText prints the plan for people, Terraform-style.
func (p *Plan) WriteText(w io.Writer) error { return p.WriteTextColor(w, false) }

// ANSI colours of the text form: additions and what becomes allowed green,
// removals and denials red, changes and holds yellow.
const (
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

// WriteTextColor is WriteText, with ANSI colours when color is set.
func (p *Plan) WriteTextColor(w io.Writer, color bool) error {
	// paint's result is an argument of ew.printf, which makes strings
	// terminal-safe: a styled value makes its text safe and keeps its own
	// escape sequences.
	paint := func(code, s string) any {
		if !color || s == "" {
			return s
		}
		return styled{code, s}
	}
	markColor := map[string]string{"+": ansiGreen, "-": ansiRed, "~": ansiYellow}
	effColor := func(e rules.Effect) any {
		switch e {
		case rules.Deny:
			return paint(ansiRed, string(e))
		case rules.Allow:
			return paint(ansiGreen, string(e))
		case rules.RequireApproval:
			return paint(ansiYellow, string(e))
		}
		return string(e)
	}
	ew := &errWriter{w: w}
	ew.printf("Policy %s: pinned %s → candidate %s\n", repoLabel(p.Repository), p.Base.Label(), p.Candidate.Label())
	window := "in the whole audit log"
	if len(p.Audit) > 0 {
		window = "in " + plural(len(p.Audit), "the audit source", fmt.Sprintf("%d audit sources", len(p.Audit)))
	}
	if !p.Since.IsZero() {
		window += " since " + p.Since.UTC().Format(time.RFC3339)
		if len(p.Audit) == 0 {
			window = "since " + p.Since.UTC().Format(time.RFC3339)
		}
	}
	ew.printf("Replayed %s recorded %s %s.\n", thousands(p.Counts.Replayed), plural(p.Counts.Replayed, "decision", "decisions"), window)
	switch {
	case p.Tests.Error != "":
		ew.printf("\nCandidate tests could not run:\n")
		for _, l := range strings.Split(p.Tests.Error, "\n") {
			ew.printf("  %s\n", l)
		}
	case p.Tests.Failed > 0:
		ew.printf("\nCandidate tests %s: %d passed, %d failed\n", paint(ansiRed, "FAILED"), p.Tests.Passed, p.Tests.Failed)
		for _, f := range p.Tests.Failures {
			ew.printf("  %s\n", f)
		}
	default:
		ew.printf("Candidate tests: %d passed.\n", p.Tests.Passed)
	}

	ew.printf("\n%s\n", paint(ansiBold, "Rule changes:"))
	if len(p.Policy) == 0 {
		ew.printf("  (none)\n")
	}
	for _, c := range p.Policy {
		mark := map[string]string{"added": "+", "removed": "-", "changed": "~"}[c.Change]
		line := c.Rule
		if len(c.Fields) > 0 {
			line += ": " + strings.Join(c.Fields, ", ")
		}
		if c.Where != "" {
			line += "  (" + c.Where + ")"
		}
		ew.printf("  %s %s\n", paint(markColor[mark], mark), line)
		width := 0
		for _, d := range c.Diffs {
			width = max(width, len(d.Field))
		}
		for _, d := range c.Diffs {
			switch {
			case d.Before == "":
				ew.printf("      %s %-*s = %s\n", paint(markColor["+"], "+"), width, d.Field, paint(ansiGreen, d.After))
			case d.After == "":
				ew.printf("      %s %-*s = %s\n", paint(markColor["-"], "-"), width, d.Field, paint(ansiRed, d.Before))
			default:
				ew.printf("      %s %-*s = %s -> %s\n", paint(markColor["~"], "~"), width, d.Field, paint(ansiRed, d.Before), paint(ansiGreen, d.After))
			}
		}
	}

	ew.printf("\n%s\n", paint(ansiBold, "Decision changes:"))
	if len(p.Changes) == 0 {
		ew.printf("  (none)\n")
	}
	for _, t := range p.Changes {
		ew.printf("  %s → %s: %s\n", effColor(t.From), effColor(t.To), actions(t.Count))
		writeGroups(ew, t.Groups, func(g *Group) string {
			if g.Rule == "" {
				return "the default"
			}
			return "rule " + g.Rule
		})
	}
	if len(p.Unknown) > 0 {
		ew.printf("\nUnknown (a changed rule reads a parameter that was redacted when recorded): %s\n", actions(p.Counts.Unknown))
		writeGroups(ew, p.Unknown, func(g *Group) string { return "rule " + g.Rule })
	}
	if p.Counts.RecordedDiffers > 0 || p.Counts.KillSwitch > 0 {
		ew.printf("\n")
	}
	if n := p.Counts.RecordedDiffers; n > 0 {
		ew.printf("Note: %s recorded %s from the pinned policy's replay (made under another revision).\n",
			thousands(n), plural(n, "decision differs", "decisions differ"))
	}
	if n := p.Counts.KillSwitch; n > 0 {
		ew.printf("Note: %s recorded %s refused by the kill switch; the replay decides them by policy alone.\n",
			thousands(n), plural(n, "decision was", "decisions were"))
	}
	ew.printf("\n%s\n", p.Summary())
	return ew.err
}

func writeGroups(ew *errWriter, groups []*Group, name func(*Group) string) {
	for _, g := range groups {
		ew.printf("    %s, %s: %s\n", name(g), g.Action, thousands(g.Count))
		for _, e := range g.Examples {
			parts := []string{e.Time.UTC().Format(time.RFC3339), orDash(e.Gateway), e.Action, orDash(e.Summary), orDash(e.RequestID)}
			ew.printf("      %s\n", strings.Join(parts, "  "))
		}
	}
}

// styled is text printed in an ANSI style: the text is made
// terminal-safe, the style's own sequences are kept. It formats itself
// (not a Stringer), so that termtext.Args passes it through.
type styled struct{ code, s string }

func (v styled) Format(f fmt.State, _ rune) {
	io.WriteString(f, v.code+termtext.Safe(v.s)+ansiReset)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Summary is the last line of the plan:
// "Plan: 3 actions newly denied, 1 newly allowed, 12 newly held; 48,211 unchanged."
func (p *Plan) Summary() string {
	c := p.Counts
	s := fmt.Sprintf("Plan: %s newly denied, %s newly allowed, %s newly held; %s unchanged",
		actions(c.NewlyDenied), thousands(c.NewlyAllowed), thousands(c.NewlyHeld), thousands(c.Unchanged))
	if c.Unknown > 0 {
		s += "; " + thousands(c.Unknown) + " unknown"
	}
	return s + "."
}

func actions(n int) string { return thousands(n) + " " + plural(n, "action", "actions") }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// thousands formats n with comma separators: 48211 → "48,211".
func thousands(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

type errWriter struct {
	w   io.Writer
	err error
}

// printf prints with the plan's own format; its arguments (rule names,
// recorded actions and params an agent chose) go through termtext, so that
// none acts on the terminal.
func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, termtext.Args(args)...)
	}
}

// limitText is a rule's limit as the policy spells it, empty for none.
func limitText(r *rules.Rule) string {
	l := r.Limit
	if l == nil {
		return ""
	}
	var parts []string
	if l.Count != nil {
		parts = append(parts, "count: "+strconv.FormatInt(*l.Count, 10))
	}
	if l.Tokens != nil {
		parts = append(parts, "tokens: "+strconv.FormatInt(*l.Tokens, 10))
	}
	return "{" + strings.Join(append(parts, "per: "+l.Per), ", ") + "}"
}
