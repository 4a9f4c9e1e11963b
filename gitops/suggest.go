package gitops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing/fstest"
	"time"
	"unicode/utf8"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// SuggestedTests is the test file tf policy suggest writes under tests/.
const SuggestedTests = "tests/suggested.yaml"

// The patterns the policy loader accepts in actions: (rules/load.go). A
// type outside them, or one with a *, which would be a glob matching more
// than what was seen, gets no rule, only a comment.
var (
	suggestPattern    = regexp.MustCompile(`^[a-z0-9_.@/:\-]+$`)
	suggestMCPPattern = regexp.MustCompile(`^mcp\.[A-Za-z0-9_.@/:\-()%]*$`)
	suggestHost       = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)
)

const (
	maxSuggestPattern = 256 // the loader's maxGlobLength
	maxSuggestHost    = 253
	maxSuggestBranch  = 200
	maxCommentValue   = 80
	suggestApproval   = "15m"
)

// defaultBranches are the branches a push to which is held for a person.
var defaultBranches = []string{"main", "master"}

// The heuristic of tf policy suggest, by the verb of an action type (its
// last segment; for an MCP tool its name's first word). The table in the
// README says the same.
var (
	readVerbs = words("get list pull read search view query head options count_tokens fetch clone download describe " +
		"check evaluate show find lookup status info whoami compare history results profile roles test ping audit " +
		"@initialize @tools/list @resources/list @prompts/list")
	writeVerbs = words("create update edit comment post put patch send add set upload review close reopen label " +
		"unlabel assign unassign request submit write append rerun cancel star fork lock unlock pin unpin draft ready " +
		"request_reviewers remove_reviewers dismiss_review update_branch revert disable_auto_merge post_ephemeral " +
		"schedule invite join share generate_content stream_generate_content embed_content batch_embed_contents")
	humanVerbs = words("merge delete publish unpublish admin transfer archive unarchive destroy remove revoke deprecate " +
		"drop purge erase force rename owner collaborator dispatch kick enable disable create_api_key")
	// humanSegments make any action under them one for a person:
	// settings, secrets and access (also as the end of a segment:
	// branch_protection, deploy_key).
	humanSegments = words("admin secret secrets collaborator collaborators permission permissions key keys " +
		"hook hooks webhook webhooks ruleset rulesets protection dist_tag token tokens")
	// humanWriteSegments make the writes under them one for a person:
	// releases, tags, workflows and their variables.
	humanWriteSegments = words("release release_asset variable variables tag tags workflow workflows")
	// humanWriteConnectors: every write moves money.
	humanWriteConnectors = words("stripe")
	// exactClasses name what a verb alone says wrongly: a model call,
	// a token refresh the agent's session needs, a settings change.
	exactClasses = map[string]verbClass{
		"anthropic.oauth.token": classWrite, "openai.oauth.token": classWrite,
		"github.repo.update": classHuman, "github.ref.update": classHuman, "github.graphql.mutation": classUnknown,
		"slack.search.messages": classRead,
	}
)

func words(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// A verb class is what the heuristic makes of an action type.
type verbClass int

const (
	classRead verbClass = iota
	classWrite
	classHuman
	classUnknown
	classHTTPRead
	classHTTPWrite
	classPush
	classNone // no rule: tf.unclassified, net.connect
)

func classify(typ string) verbClass {
	segs := strings.Split(typ, ".")
	conn, verb := segs[0], segs[len(segs)-1]
	switch {
	case typ == "tf.unclassified" || conn == "net":
		return classNone
	case conn == "http":
		if verb == "get" || verb == "head" || verb == "options" {
			return classHTTPRead
		}
		return classHTTPWrite
	case typ == "github.repo.push":
		return classPush
	}
	if c, ok := exactClasses[typ]; ok {
		return c
	}
	if conn == "mcp" && len(segs) >= 3 {
		tool := strings.Join(segs[2:], ".")
		if strings.HasPrefix(tool, "@") {
			verb = tool
		} else {
			verb = strings.ToLower(firstWord(tool))
		}
	}
	for i := 1; i < len(segs)-1; i++ {
		seg := segs[i]
		if humanSegments[seg] || humanSegments[seg[strings.LastIndexByte(seg, '_')+1:]] {
			return classHuman
		}
	}
	c := verbClassOf(verb)
	if c == classWrite {
		if humanWriteConnectors[conn] {
			return classHuman
		}
		for i := 1; i < len(segs)-1; i++ {
			if humanWriteSegments[segs[i]] {
				return classHuman
			}
		}
	}
	return c
}

// verbClassOf looks a verb up, then its first word (list_members).
func verbClassOf(verb string) verbClass {
	for _, v := range []string{verb, firstWord(verb)} {
		switch {
		case humanVerbs[v]:
			return classHuman
		case readVerbs[v]:
			return classRead
		case writeVerbs[v]:
			return classWrite
		}
	}
	return classUnknown
}

// firstWord is the first word of a tool name: get_issue, list-files,
// listFiles and ListFiles all start with list.
func firstWord(tool string) string {
	for i, r := range tool {
		if i > 0 && (strings.ContainsRune("_-./:", r) || (r >= 'A' && r <= 'Z')) {
			return tool[:i]
		}
	}
	return tool
}

// seenType is what the records say of one action type.
type seenType struct {
	typ       string
	class     verbClass
	connector string
	count     uint64
	hosts     map[string]uint64 // http.*: request hosts
	badHosts  map[string]uint64
	pushes    map[bool]string // github.repo.push: to a default branch → an example branch
	pushCount map[bool]uint64
	noBranch  uint64
}

// SuggestOptions configure Suggest.
type SuggestOptions struct {
	Home string
	// Since and Gateway select the records, as tf logs does.
	Since   time.Time
	Gateway string
	// Catalog is the action types tf policy validate knows (with declared
	// connectors); nil means the built-in ones. A type outside it gets no
	// rule, since validate would refuse the rule.
	Catalog connectors.Catalog
}

// A Suggestion is a policy directory written from recorded traffic: a
// tameflare.yaml and its tests, both already loaded and run.
type Suggestion struct {
	Policy []byte
	Tests  []byte
	// Decisions is how many decision records were read, Refused how many
	// of them were left out (refused when recorded), Types how many action
	// types the rest held, Skipped how many of those got no rule.
	Decisions uint64
	Refused   uint64
	Types     int
	Skipped   int
	From, To  time.Time
}

// Suggest reads the decision records of the audit log and writes a policy
// that allows the reads seen, allows ordinary writes, holds what a person
// should decide, refuses HTTP writes to unknown APIs, and denies the rest
// by default; see the README's table. The policy and its tests are loaded
// and run before they are returned: a suggestion never fails
// tf policy validate or tf policy test.
func Suggest(ctx context.Context, opts SuggestOptions) (*Suggestion, error) {
	cat := opts.Catalog
	if cat == nil {
		var err error
		if cat, err = connectors.BuiltinCatalog(); err != nil {
			return nil, err
		}
	}
	s := newSuggester(cat)
	f := audit.Filter{Kind: audit.KindDecision, Since: opts.Since, Gateway: opts.Gateway}
	err := audit.Scan(audit.Dir(opts.Home), f, func(r *audit.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.Decision != nil && r.Decision.Effect == rules.Deny {
			// What the policy in force refused never happened: the agent
			// tried it. Suggesting to allow it would let the agent write
			// its own policy by trying.
			s.refused++
			return nil
		}
		s.add(r.Time, r.Action)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading recorded traffic: %w", err)
	}
	return s.build(opts.Gateway)
}

type suggester struct {
	cat       connectors.Catalog
	seen      map[string]*seenType
	decisions uint64
	refused   uint64
	from, to  time.Time
}

func newSuggester(cat connectors.Catalog) *suggester {
	return &suggester{cat: cat, seen: map[string]*seenType{}}
}

func (s *suggester) add(t time.Time, a *rules.Action) {
	if a == nil || a.Type == "" {
		return
	}
	s.decisions++
	if s.from.IsZero() || t.Before(s.from) {
		s.from = t
	}
	if t.After(s.to) {
		s.to = t
	}
	st := s.seen[a.Type]
	if st == nil {
		st = &seenType{typ: a.Type, class: classify(a.Type), connector: a.Connector, hosts: map[string]uint64{}, badHosts: map[string]uint64{},
			pushes: map[bool]string{}, pushCount: map[bool]uint64{}}
		s.seen[a.Type] = st
	}
	st.count++
	switch st.class {
	case classHTTPRead, classHTTPWrite:
		h := a.Request.Host
		if suggestHost.MatchString(h) && len(h) <= maxSuggestHost {
			st.hosts[h]++
		} else {
			st.badHosts[h]++
		}
	case classPush:
		b, _ := a.Params["branch"].(string)
		if b == "" {
			st.noBranch++
			return
		}
		def := isDefaultBranch(b)
		st.pushCount[def]++
		if _, ok := st.pushes[def]; !ok && len(b) <= maxSuggestBranch && utf8.ValidString(b) {
			st.pushes[def] = b
		}
	}
}

func isDefaultBranch(b string) bool {
	for _, d := range defaultBranches {
		if b == d {
			return true
		}
	}
	return false
}

// patternOK reports whether an action type can be written as an exact
// pattern of actions:.
func patternOK(typ string) bool {
	return len(typ) <= maxSuggestPattern && !strings.Contains(typ, "*") &&
		(suggestPattern.MatchString(typ) || suggestMCPPattern.MatchString(typ))
}

// q writes s as a YAML double-quoted scalar: JSON's escapes, ASCII only,
// are YAML's, so no value from the records can end a line or a scalar.
func q(s string) string { return strconv.QuoteToASCII(s) }

// commentValue is s shortened and quoted for a comment on one line.
func commentValue(s string) string {
	if len(s) > maxCommentValue {
		s = s[:maxCommentValue] + "…"
	}
	return q(s)
}

// group is one rule of the suggestion.
type group struct {
	conn     string
	name     string
	class    verbClass
	types    []*seenType
	when     string
	decision rules.Effect
	reason   string
}

func (s *suggester) build(gateway string) (*Suggestion, error) {
	types := make([]*seenType, 0, len(s.seen))
	for _, st := range s.seen {
		types = append(types, st)
	}
	sort.Slice(types, func(i, j int) bool { return types[i].typ < types[j].typ })

	var skipped []*seenType
	groups := map[string]*group{}
	var order []string
	names := map[string]bool{}
	addTo := func(key, base string, class verbClass, st *seenType) *group {
		g := groups[key]
		if g == nil {
			name := ruleName(base)
			for i := 2; names[name]; i++ {
				name = fmt.Sprintf("%s-%d", ruleName(base), i)
			}
			names[name] = true
			g = &group{name: name, class: class, conn: connectorOf(st.typ)}
			groups[key] = g
			order = append(order, key)
		}
		g.types = append(g.types, st)
		return g
	}
	for _, st := range types {
		c := st.class
		if c == classNone || !patternOK(st.typ) || !s.cat.Matches(st.typ) {
			skipped = append(skipped, st)
			continue
		}
		conn := connectorOf(st.typ)
		switch c {
		case classHTTPRead:
			if len(st.hosts) == 0 {
				skipped = append(skipped, st)
				continue
			}
			addTo("http-read "+st.typ, st.typ+"-seen-hosts", c, st)
		case classHTTPWrite:
			addTo("http-write", "http-writes", c, st)
		case classPush:
			addTo("push", conn+"-push-branches", c, st)
		default:
			addTo(fmt.Sprint(c)+" "+conn, conn+"-"+classWord[c], c, st)
		}
	}

	// Rules by connector (MCP by server, HTTP last), then reads, writes,
	// pushes, what a person decides, and unknown verbs.
	sort.SliceStable(order, func(i, j int) bool {
		gi, gj := groups[order[i]], groups[order[j]]
		hi, hj := gi.conn == "http", gj.conn == "http"
		if hi != hj {
			return hj
		}
		if gi.conn != gj.conn {
			return gi.conn < gj.conn
		}
		return classRank[gi.class] < classRank[gj.class]
	})

	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# yaml-language-server: $schema=https://tameflare.dev/schema/tameflare.schema.json\n#\n")
	w("# Suggested by tf policy suggest from %d recorded decisions", s.decisions)
	if s.decisions > 0 {
		w(" (%s to %s", s.from.UTC().Format(time.RFC3339), s.to.UTC().Format(time.RFC3339))
		if gateway != "" {
			w(", gateway %s", commentValue(gateway))
		}
		w(")")
	}
	w(".\n")
	if s.refused > 0 {
		w("# Left out: %d decisions that the policy in force refused (tried, never done).\n", s.refused)
	}
	w("# A starting point: read every rule, narrow what is too wide, then\n")
	w("# tf policy test and tf policy apply. Reads are allowed, ordinary writes\n")
	w("# allowed, merges, deletions, publishing and settings held for a person,\n")
	w("# HTTP writes to unknown APIs refused, and anything not seen denied.\n")
	w("version: 1\nmode: enforce\ndefault: deny\n")
	if len(order) > 0 {
		w("\nrules:\n")
	} else {
		w("rules: []\n")
	}
	for _, key := range order {
		g := groups[key]
		switch g.class {
		case classPush:
			st := g.types[0]
			w("  # %s: %d seen: %d to other branches, %d to %s, %d without a branch\n", q(st.typ), st.count,
				st.pushCount[false], st.pushCount[true], strings.Join(defaultBranches, "/"), st.noBranch)
			held := g.name + "-default"
			for i := 2; names[held]; i++ {
				held = fmt.Sprintf("%s-default-%d", g.name, i)
			}
			names[held] = true
			w("  - name: %s\n    actions: [%s]\n", q(held), q(st.typ))
			w("    when: %s\n", q(`params.branch == nil || params.branch == "" || params.branch in ["`+strings.Join(defaultBranches, `", "`)+`"]`))
			w("    decision: require_approval\n    reason: %s\n    approval: {timeout: %s}\n\n", q("A push to a default branch, or to no known branch, is for a person to allow."), suggestApproval)
			w("  - name: %s\n    actions: [%s]\n", q(g.name), q(st.typ))
			w("    when: %s\n", q(`params.branch != nil && params.branch != ""`))
			w("    decision: allow\n    reason: %s\n\n", q("Agents push their working branches (seen in recorded traffic)."))
			continue
		case classHTTPRead:
			st := g.types[0]
			hosts := make([]string, 0, len(st.hosts))
			for h := range st.hosts {
				hosts = append(hosts, h)
			}
			sort.Strings(hosts)
			quoted := make([]string, len(hosts))
			for i, h := range hosts {
				quoted[i] = strconv.Quote(h)
			}
			w("  # %s: %d seen on %d hosts\n", q(st.typ), st.count, len(hosts))
			for _, h := range hosts {
				w("  #   %s: %d\n", h, st.hosts[h])
			}
			writeBadHosts(w, st)
			g.when = "request.host in [" + strings.Join(quoted, ", ") + "]"
			g.decision, g.reason = rules.Allow, "A read of a host seen in recorded traffic."
		case classHTTPWrite:
			g.decision, g.reason = rules.Deny, "An HTTP write to an API tf has no connector for; name the API in a connector, or allow the host here."
		case classRead:
			g.decision, g.reason = rules.Allow, "Reads seen in recorded traffic."
		case classWrite:
			g.decision, g.reason = rules.Allow, "Ordinary writes seen in recorded traffic; narrow them with when: conditions."
		case classHuman:
			g.decision, g.reason = rules.RequireApproval, "Merges, deletions, publishing and settings are for a person to allow."
		case classUnknown:
			g.decision, g.reason = rules.RequireApproval, "tf's heuristic does not know this verb; a person decides until the rule is edited."
		}
		if g.class != classHTTPRead {
			w("  # %s\n", classComment[g.class])
		}
		w("  - name: %s\n    actions:\n", q(g.name))
		for _, st := range g.types {
			w("      - %s  # %d seen\n", q(st.typ), st.count)
			if g.class == classHTTPWrite {
				writeBadHosts(func(format string, args ...any) { w("    "+format, args...) }, st)
			}
		}
		if g.when != "" {
			w("    when: %s\n", q(g.when))
		}
		w("    decision: %s\n    reason: %s\n", g.decision, q(g.reason))
		if g.decision == rules.RequireApproval {
			w("    approval: {timeout: %s}\n", suggestApproval)
		}
		w("\n")
	}
	if len(skipped) > 0 {
		w("# Seen, and given no rule (the default denies them):\n")
		for _, st := range skipped {
			why := "not writable as an action pattern"
			switch {
			case st.typ == "tf.unclassified":
				why = "requests tf could not classify stay refused"
			case connectorOf(st.typ) == "net":
				why = "tunnels are decided by passthrough:, not suggested"
			case patternOK(st.typ) && !s.cat.Matches(st.typ):
				why = "no connector tf knows makes this type (declare it: --declared)"
			case classify(st.typ) == classHTTPRead && patternOK(st.typ):
				why = "no host that can be written in a rule"
			}
			w("#   %s: %d seen; %s\n", commentValue(st.typ), st.count, why)
		}
	}
	sug := &Suggestion{Policy: b.Bytes(), Decisions: s.decisions, Refused: s.refused, Types: len(types), Skipped: len(skipped), From: s.from, To: s.to}

	// The tests: one case per action type given a rule, and per class of
	// push, with the decision the policy gives it, checked below.
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: sug.Policy}}, "suggested")
	if err != nil {
		return nil, fmt.Errorf("the suggested policy does not load (a bug in tf policy suggest): %w", err)
	}
	if errs := s.cat.UnknownActions(p); len(errs) > 0 {
		return nil, fmt.Errorf("the suggested policy names unknown action types (a bug in tf policy suggest): %w", errs)
	}
	var tb bytes.Buffer
	tb.WriteString("# yaml-language-server: $schema=https://tameflare.dev/schema/tameflare-tests.schema.json\n")
	tb.WriteString("# Written by tf policy suggest: one case per action type seen, as the suggested policy decides it.\ncases:\n")
	d := &rules.Decider{Policy: p, EnforceAll: true, Baseline: mcp.Baseline}
	addCase := func(name string, a *rules.Action) error {
		js, err := json.Marshal(a)
		if err != nil {
			return err
		}
		dec := d.Decide(a)
		fmt.Fprintf(&tb, "  - name: %s\n    action: %s\n    expect: %s\n", q(name), asciiJSON(js), dec.Effect)
		if dec.Rule != "" {
			fmt.Fprintf(&tb, "    rule: %s\n", q(dec.Rule))
		}
		return nil
	}
	for _, key := range order {
		g := groups[key]
		for _, st := range g.types {
			a := &rules.Action{Type: st.typ, Connector: st.connector}
			switch g.class {
			case classPush:
				for _, def := range []bool{false, true} {
					if br, ok := st.pushes[def]; ok {
						pa := *a
						pa.Params = map[string]any{"branch": br}
						if err := addCase(fmt.Sprintf("%s to %s", st.typ, br), &pa); err != nil {
							return nil, err
						}
					}
				}
				if st.noBranch > 0 {
					if err := addCase(st.typ+" without a branch", a); err != nil {
						return nil, err
					}
				}
				continue
			case classHTTPRead, classHTTPWrite:
				a.Request.Host = firstKey(st.hosts)
			}
			if err := addCase(st.typ+" as seen", a); err != nil {
				return nil, err
			}
		}
	}
	// What was not seen is denied: the default, tested.
	if err := addCase("an action type not seen", &rules.Action{Type: "tf.not_seen"}); err != nil {
		return nil, err
	}
	sug.Tests = tb.Bytes()
	fsys := fstest.MapFS{"tameflare.yaml": {Data: sug.Policy}, SuggestedTests: {Data: sug.Tests}}
	if _, err := runTests(p, fsys); err != nil {
		return nil, fmt.Errorf("the suggested policy fails its own tests (a bug in tf policy suggest): %w", err)
	}
	return sug, nil
}

// asciiJSON makes JSON (valid YAML flow) ASCII-only, so that no line or
// paragraph separator in a recorded value can break the YAML.
func asciiJSON(js []byte) string {
	var b strings.Builder
	for _, r := range string(js) {
		if r < 0x80 {
			b.WriteRune(r)
			continue
		}
		if r > 0xFFFF {
			r1, r2 := utf16Pair(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF
}

func firstKey(m map[string]uint64) string {
	first := ""
	for k := range m {
		if first == "" || k < first {
			first = k
		}
	}
	return first
}

func writeBadHosts(w func(string, ...any), st *seenType) {
	keys := make([]string, 0, len(st.badHosts))
	for h := range st.badHosts {
		keys = append(keys, h)
	}
	sort.Strings(keys)
	for _, h := range keys {
		w("  #   %s: %d (not a host name; not listed)\n", commentValue(h), st.badHosts[h])
	}
}

var classRank = map[verbClass]int{
	classRead: 0, classHTTPRead: 0, classWrite: 1, classPush: 2, classHuman: 3, classUnknown: 4, classHTTPWrite: 5,
}

var classWord = map[verbClass]string{
	classRead: "reads", classWrite: "writes", classHuman: "needs-a-person", classUnknown: "unknown-verbs",
}

var classComment = map[verbClass]string{
	classRead:      "Reads: allowed.",
	classWrite:     "Ordinary writes (create, update, comment, ...): allowed.",
	classHuman:     "Merges, deletions, publishing, settings and access: held for a person.",
	classUnknown:   "Verbs the heuristic does not know: held for a person.",
	classHTTPWrite: "HTTP writes to APIs tf has no connector for: refused.",
}

// connectorOf is an action type's first segment, and for MCP the server
// too (mcp.docs), so that each server gets rules of its own.
func connectorOf(typ string) string {
	segs := strings.SplitN(typ, ".", 3)
	if segs[0] == "mcp" && len(segs) == 3 {
		return "mcp." + segs[1]
	}
	return segs[0]
}

// ruleName makes a rule name of lower-case letters, digits and dashes.
func ruleName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	n := strings.TrimRight(b.String(), "-")
	if len(n) > 60 {
		n = strings.TrimRight(n[:60], "-")
	}
	if n == "" {
		n = "rule"
	}
	return n
}

// ErrNotEmpty is returned by WriteDir for a directory that holds files.
var ErrNotEmpty = errors.New("directory is not empty")

// WriteDir writes the suggestion as a policy directory: tameflare.yaml and
// tests/suggested.yaml. A directory that holds anything is refused unless
// force; then those two files are replaced and the rest left alone.
func (s *Suggestion) WriteDir(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case len(ents) > 0 && !force:
		return fmt.Errorf("%s: %w (use --force to replace tameflare.yaml and %s in it)", dir, ErrNotEmpty, SuggestedTests)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tests"), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "tameflare.yaml"), s.Policy, 0o644); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, filepath.FromSlash(SuggestedTests)), s.Tests, 0o644)
}
