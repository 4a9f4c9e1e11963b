package rules

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var nativeExprs = []string{
	`params.branch matches "^(main|release/.*)$"`,
	`params.branch matches "^(main|staging|feature/x-wip)$"`, `params.branch matches "^(?:tmp|release/1\\.0)$"`,
	`params.branch startsWith "feature/"`,
	`params.branch endsWith "-wip"`,
	`params.branch contains "tmp"`,
	`params.branch == "main"`,
	`params.branch != "main"`,
	`params.branch in ["main", "staging"]`,
	`params.number > 10`, `params.number >= 10`, `params.number < 10.5`, `params.number <= 10`,
	`params.number == 10`, `params.flag == true`, `params.missing == nil`, `params.branch == nil`,
	`resource.owner == "acme" && resource.repo != "secret"`,
	`resource.owner == "acme" || request.method == "DELETE"`,
	`!(params.branch startsWith "feature/")`,
	`not (request.path startsWith "/repos/")`,
	`request.headers.accept == "application/json"`,
	`request.port == 443 and request.scheme == "https"`,
	`action.gateway == "ci" or action.connector == "npm"`, `action.agent == "ci-runner"`,
	`action.type endsWith ".merge"`,
	`request.host matches "(^|\\.)github\\.com$"`,
	`true`, `false && params.number > 1`,
	`resource.missing == ""`,
	`now.Hour() >= 9 && now.Hour() < 17`, `now.Year() == 2026`, `now.YearDay() > 0 || now.Day() == 1`,
	`len(params.branch) > 4`, `len(resource.owner) == 4`, `len(params.number) >= 0`,
}

func nativeActions() []*Action {
	params := []map[string]any{
		nil,
		{"branch": "main", "number": 10, "flag": true},
		{"branch": "feature/x-wip", "number": 10.5},
		{"branch": "release/1", "number": int64(3)},
		{"branch": 7, "number": "10"},            // wrong types: expr errors or compares
		{"branch": []any{"a"}, "number": nil},    // more wrong types
		{"branch": "tmp", "number": uint8(200)},  // other integer kinds
		{"branch": nil, "number": float32(9.75)}, // explicit nil
	}
	var out []*Action
	for i, p := range params {
		out = append(out, &Action{
			ID: fmt.Sprint(i), Type: []string{"github.pr.merge", "npm.package.publish"}[i%2],
			Connector: []string{"github", "npm"}[i%2], Gateway: []string{"ci", "dev"}[i%2], Agent: []string{"ci-runner", ""}[i%2],
			Resource: map[string]string{"owner": []string{"acme", "other"}[i%2], "repo": "app"},
			Params:   p,
			Request: Request{Method: []string{"PUT", "DELETE"}[i%2], Scheme: "https", Host: "api.github.com", Port: 443,
				Path: "/repos/acme/app", Headers: map[string]string{"accept": "application/json"}},
			Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		})
	}
	return out
}

// The native form must agree with the expr VM wherever it answers.
func TestNativeAgreesWithVM(t *testing.T) {
	answered := 0
	for _, src := range nativeExprs {
		prog, err := compileWhen(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		nat := compileNative(prog.Node())
		if nat == nil {
			t.Errorf("%s has no native form", src)
			continue
		}
		for _, a := range nativeActions() {
			got, ok := nat(&evalCtx{a: a})
			want, err := runProgram(prog, newEnv(a, a.Time))
			if !ok {
				continue
			}
			answered++
			if err != nil {
				t.Errorf("%s on action %s: native answered %v, expr failed: %v", src, a.ID, got, err)
			} else if want != got {
				t.Errorf("%s on action %s: native %v, expr %v", src, a.ID, got, want)
			}
		}
	}
	if answered < len(nativeExprs)*len(nativeActions())/2 {
		t.Errorf("native answered only %d evaluations", answered)
	}
}

func TestNativeDeclinesUnsupportedShapes(t *testing.T) {
	for _, src := range []string{
		`len(params.branch + "x") > 3`, `params.a.b == 1`, `params.n + 1 > 2`, `params.branch matches params.pattern`,
		`now.Unix() > 1`, `params?.branch == "x"`, `params.list[0] == "x"`, `resource.owner == resource.repo`,
	} {
		prog, err := compileWhen(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if compileNative(prog.Node()) != nil {
			t.Errorf("%s got a native form", src)
		}
	}
}

// FuzzWhen compiles arbitrary conditions: no panic, errors are plain, and
// where both forms answer they agree.
func FuzzWhen(f *testing.F) {
	for _, s := range nativeExprs {
		f.Add(s)
	}
	f.Add(`params.x.y[0] matches "("`)
	f.Add(strings.Repeat("(", 100))
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > MaxExprBytes {
			return
		}
		prog, err := compileWhen(src)
		if err != nil {
			if exprMessage(err) == "" {
				t.Errorf("empty error message for %q", src)
			}
			return
		}
		nat := compileNative(prog.Node())
		for _, a := range nativeActions() {
			want, err := runProgram(prog, newEnv(a, a.Time))
			if nat == nil {
				continue
			}
			if got, ok := nat(&evalCtx{a: a}); ok && (err != nil || want != got) {
				t.Errorf("%q on action %s: native %v, expr %v (%v)", src, a.ID, got, want, err)
			}
		}
	})
}

// FuzzLoad loads arbitrary policy files: no panic, and every error has a
// file and, unless it concerns the whole file, a position.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(ExampleForFuzz))
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    when: params.x ==\n    decision: deny\n"))
	f.Add([]byte("version: 1\nx: &a [1]\nrules: *a\n"))
	f.Add([]byte("{version: 1, rules: [{name: a, actions: ['*'], decision: allow}]}"))
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    actions: [a.*]\n    decision: allow\n    limit: {count: 2, per: 1d12h}\n  - name: b\n    actions: [openai.*]\n    decision: require_approval\n    limit: {tokens: 9, per: session}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstestMap(map[string][]byte{PolicyFile: data})
		p, err := LoadFS(fsys, "p")
		if err != nil {
			errs, ok := err.(Errors)
			if !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, e := range errs {
				if e.File == "" || e.Msg == "" {
					t.Fatalf("error without file or message: %#v", e)
				}
			}
			return
		}
		limited := &Decider{Policy: p, Counters: NewMemCounters()}
		for _, a := range nativeActions() {
			if d := p.Decide(a); !d.Effect.Valid() {
				t.Fatalf("invalid decision %+v", d)
			}
			for range 3 {
				if d := limited.Decide(a); !d.Effect.Valid() {
					t.Fatalf("invalid decision with limits %+v", d)
				}
			}
		}
	})
}

const ExampleForFuzz = `version: 1
default: deny
rules:
  - name: protect-main
    actions: [github.repo.push]
    when: params.branch matches "^(main|staging)$"
    decision: deny
  - name: merges
    actions: [github.pr.merge]
    decision: require_approval
    approval: {timeout: 15m}
`

func TestLiteralAlternation(t *testing.T) {
	for _, c := range []struct {
		re   string
		want string // names joined by ",", or "-" when not a literal set
	}{
		{`^(main|staging|production)$`, "main,production,staging"},
		{`^(?:main|master)$`, "main,master"},
		{`^main$`, "main"},
		{`^release/1\.0$`, "release/1.0"},
		{`^(main|)$`, ",main"},
		{`^(main|staging)`, "-"},
		{`(main|staging)$`, "-"},
		{`^(ma.n)$`, "-"},
		{`^\d+$`, "-"},
		{`^(a|b)|c$`, "-"},
		{`^(a(b)|c)$`, "-"},
		{`^é$`, "-"},
		{`^a\$`, "-"},
	} {
		set, ok := literalAlternation(c.re)
		got := "-"
		if ok {
			var names []string
			for n := range set {
				names = append(names, n)
			}
			slices.Sort(names)
			got = strings.Join(names, ",")
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.re, got, c.want)
		}
	}
}
