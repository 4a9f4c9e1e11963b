package rules_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/rules"
)

// policyFS builds a policy directory in memory from name → content.
func policyFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, content := range files {
		m[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return m
}

func mustLoad(t testing.TB, files map[string]string) *rules.Policy {
	t.Helper()
	p, err := rules.LoadFS(policyFS(files), "p")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

func TestLoadErrorsHavePositions(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string // each must appear in the error text
	}{
		{"missing file", map[string]string{}, []string{"p/tameflare.yaml: no policy here"}},
		{"unknown top-level key", map[string]string{"tameflare.yaml": "version: 1\ndefualt: deny\n"},
			[]string{`p/tameflare.yaml:2:1: unknown field "defualt"`}},
		{"unknown rule key", map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    decison: deny\n"},
			[]string{`p/tameflare.yaml:5:5: unknown field "decison"`}},
		{"missing version", map[string]string{"tameflare.yaml": "rules: []\n"},
			[]string{"p/tameflare.yaml:1:1: version is missing"}},
		{"unknown version", map[string]string{"tameflare.yaml": "version: 3\n"},
			[]string{"p/tameflare.yaml:1:10: unknown policy version 3"}},
		{"bad mode and default", map[string]string{"tameflare.yaml": "version: 1\nmode: loud\ndefault: maybe\n"},
			[]string{`p/tameflare.yaml:2:7: mode "loud"`, `p/tameflare.yaml:3:10: default "maybe"`}},
		{"syntax error", map[string]string{"tameflare.yaml": "version: 1\nrules: [\n"},
			[]string{"p/tameflare.yaml:2:"}},
		{"wrong type", map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: github.x\n    decision: deny\n"},
			[]string{"p/tameflare.yaml:4:14:"}},
		{"misspelt field in condition", map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    when: request.pth == \"/\"\n    decision: deny\n"},
			[]string{"p/tameflare.yaml:5:19: rule a: condition: request has no field pth"}},
		{"quoted condition", map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    when: \"reqest.path == '/'\"\n    decision: deny\n"},
			[]string{"p/tameflare.yaml:5:12: rule a: condition: unknown name reqest"}},
		{"condition not boolean", map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    when: request.port + 1\n    decision: deny\n"},
			[]string{"p/tameflare.yaml:5:11: rule a: condition:"}},
		{"duplicate across files", map[string]string{
			"tameflare.yaml":    "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    decision: deny\n",
			"policies/x.yaml":   "rules:\n  - name: a\n    actions: [a.c]\n    decision: allow\n",
			"policies/bad.yaml": "version: 1\nmode: enforce\n",
		}, []string{`p/policies/x.yaml:2:11: duplicate rule name "a" (first defined at p/tameflare.yaml:3:11)`,
			`p/policies/bad.yaml:2:1: unknown field "mode"`}},
		{"rule problems", map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - actions: [Github.PR]\n    decision: maybe\n  - name: b\n    decision: require_approval\n    approval: {timeout: 5x}\n"},
			[]string{"p/tameflare.yaml:3:5: rule 1 has no name", `p/tameflare.yaml:3:15: rule 1: action pattern "Github.PR"`,
				`p/tameflare.yaml:4:15: rule 1: decision "maybe"`, "p/tameflare.yaml:5:5: rule b: actions is missing",
				`p/tameflare.yaml:7:25: rule b: approval timeout "5x"`}},
		{"approval on a deny", map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    decision: deny\n    approval: {timeout: 5m}\n"},
			[]string{"p/tameflare.yaml:6:16: rule a: approval settings apply only to decision: require_approval"}},
		{"aliases refused", map[string]string{"tameflare.yaml": "version: 1\nx: &a [1]\nrules: *a\n"},
			[]string{"anchors and aliases are not supported"}},
		{"two documents", map[string]string{"tameflare.yaml": "version: 1\n---\nversion: 1\n"},
			[]string{"more than one YAML document"}},
		{"not a mapping", map[string]string{"tameflare.yaml": "- 1\n"}, []string{"p/tameflare.yaml:1:1: want a mapping"}},
		{"empty", map[string]string{"tameflare.yaml": "# nothing\n"}, []string{"p/tameflare.yaml: empty file"}},
		{"bad passthrough host", map[string]string{"tameflare.yaml": "version: 1\npassthrough: [\"a b\"]\n"},
			[]string{`p/tameflare.yaml:2:15: passthrough: "a b" is not a host name`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := rules.LoadFS(policyFS(c.files), "p")
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			errs, ok := err.(rules.Errors)
			if !ok {
				t.Fatalf("error is %T, want rules.Errors", err)
			}
			for _, e := range errs {
				if e.File == "" {
					t.Errorf("error without a file: %v", e)
				}
			}
		})
	}
}

func TestLoadMergesFragmentsInOrder(t *testing.T) {
	p := mustLoad(t, map[string]string{
		"tameflare.yaml":  "version: 1\nmode: monitor\ndefault: allow\npassthrough: [pinned.example.com]\nrules:\n  - name: a\n    actions: [a.b]\n    decision: deny\n",
		"policies/b.yaml": "rules:\n  - name: c\n    actions: [a.c]\n    decision: deny\n",
		"policies/a.yaml": "version: 1\npassthrough: [Other.Example.com]\nrules:\n  - name: b\n    actions: [a.d]\n    decision: deny\n",
		"policies/x.yml":  "not: loaded\n",
	})
	var names []string
	for _, r := range p.Rules {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "a,b,c" {
		t.Errorf("rule order %s, want a,b,c", got)
	}
	if p.Mode != rules.Monitor || p.Default != rules.Allow {
		t.Errorf("mode %s default %s", p.Mode, p.Default)
	}
	if got := strings.Join(p.Passthrough, ","); got != "pinned.example.com,other.example.com" {
		t.Errorf("passthrough %s", got)
	}
	if !strings.HasPrefix(p.Revision, "sha256:") {
		t.Errorf("revision %q", p.Revision)
	}
	if r := p.Rules[1]; r.File != "p/policies/a.yaml" || r.Line != 4 || r.Col != 5 {
		t.Errorf("rule b at %s:%d:%d", r.File, r.Line, r.Col)
	}
}

func TestLoadDefaults(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\n"})
	if p.Mode != rules.Enforce || p.Default != rules.Deny {
		t.Errorf("defaults: mode %s default %s, want enforce and deny (fail closed)", p.Mode, p.Default)
	}
}

func TestRevisionFollowsContent(t *testing.T) {
	a := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\n"})
	b := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\n"})
	c := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\ndefault: allow\n"})
	if a.Revision != b.Revision || a.Revision == c.Revision {
		t.Errorf("revisions %s %s %s", a.Revision, b.Revision, c.Revision)
	}
}

func TestLimits(t *testing.T) {
	t.Run("10,000 rules", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("version: 1\nrules:\n")
		for i := range 10000 {
			fmt.Fprintf(&b, "  - {name: r%d, actions: [a.b%d], decision: deny}\n", i, i)
		}
		start := time.Now()
		_, err := rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": b.String()}), "p")
		if err == nil || !strings.Contains(err.Error(), "too many rules: 10000 in all, the limit is 5000") {
			t.Fatalf("got %v", err)
		}
		t.Logf("refused in %v", time.Since(start))
	})
	t.Run("1 MiB expression", func(t *testing.T) {
		cond := strings.Repeat("params.a == 1 || ", 1<<20/17) + "true"
		_, err := rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    decision: deny\n    when: " + cond + "\n"}), "p")
		if err == nil || !strings.Contains(err.Error(), "p/tameflare.yaml:6:11: rule a: condition is") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("deep expression", func(t *testing.T) {
		cond := strings.Repeat("(", 3000) + "true" + strings.Repeat(")", 3000)
		_, err := rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: a\n    actions: [a.b]\n    decision: deny\n    when: " + cond + "\n"}), "p")
		t.Logf("%v", err) // must not panic or hang; either outcome is bounded
	})
	t.Run("oversized file", func(t *testing.T) {
		_, err := rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": "version: 1\n#" + strings.Repeat("x", rules.MaxFileBytes)}), "p")
		if err == nil || !strings.Contains(err.Error(), "p/tameflare.yaml: file larger than 4 MiB") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestLoadCredentials(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\ncredentials:\n  github: {secret: gh-token}\n  mcp:\n    docs: {secret: docs-token, header: X-Api-Key, format: \"{}\"}\n"})
	if p.Credentials == nil || p.Credentials.GitHub.Secret != "gh-token" || p.Credentials.MCP["docs"].Header != "X-Api-Key" {
		t.Fatalf("credentials %+v", p.Credentials)
	}
	_, err := rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": "version: 1\ncredentials:\n  github: {secret: \"bad name!\"}\n"}), "p")
	if err == nil || !strings.Contains(err.Error(), "p/tameflare.yaml:3:3: credentials:") {
		t.Fatalf("got %v", err)
	}
	_, err = rules.LoadFS(policyFS(map[string]string{"tameflare.yaml": "version: 1\ncredentials:\n  gitlab: {secret: x}\n"}), "p")
	if err == nil || !strings.Contains(err.Error(), `unknown field "gitlab"`) {
		t.Fatalf("got %v", err)
	}
}
