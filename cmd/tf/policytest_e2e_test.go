package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tf policy test --run selects cases, -v prints each with its deciding
// rule, --json gives the same as data, and a failing case exits 1.
func TestPolicyTestRunVerboseJSON(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	files := map[string]string{
		"tameflare.yaml": "version: 1\ndefault: deny\nrules:\n  - name: reads\n    actions: [github.*.get]\n    decision: allow\n",
		"tests/a.yaml": `cases:
  - name: a read passes
    action: {type: github.repo.get}
    expect: allow
  - name: a delete is refused
    action: {type: github.repo.delete}
    expect: deny
  - name: a merge is wrongly expected
    action: {type: github.pr.merge}
    expect: allow
`,
	}
	for name, body := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := runTF(t, home, nil, "policy", "test", dir)
	if r.code != 1 || !strings.Contains(r.stdout, `tests/a.yaml:8:5: "a merge is wrongly expected": want allow, got deny`) || !strings.Contains(r.stdout, "2 passed, 1 failed") || strings.Contains(r.stdout, "PASS") || !strings.HasPrefix(r.stdout, "FAIL ") {
		t.Errorf("plain: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runTF(t, home, nil, "policy", "test", dir, "-v", "--run", "read|delete")
	if r.code != 0 || !strings.Contains(r.stdout, `tests/a.yaml:2:5: "a read passes": allow by rule reads`) ||
		!strings.Contains(r.stdout, `tests/a.yaml:5:5: "a delete is refused": deny by the default`) || !strings.Contains(r.stdout, "2 passed, 0 failed") {
		t.Errorf("-v --run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runTF(t, home, nil, "policy", "test", "--json", dir)
	var res struct {
		Passed, Failed int
		Cases          []struct {
			Name    string
			Passed  bool
			Failure string
			Got     struct {
				Decision string
				Rule     string
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 1 || res.Passed != 2 || res.Failed != 1 || len(res.Cases) != 3 ||
		res.Cases[0].Got.Rule != "reads" || res.Cases[2].Passed || res.Cases[2].Got.Decision != "deny" {
		t.Errorf("--json: exit %d %v %+v\n%s", r.code, err, res, r.stdout)
	}
	if r := runTF(t, home, nil, "policy", "test", dir, "--run", "nothing-matches"); r.code != 1 || !strings.Contains(r.stderr, "no case matches") {
		t.Errorf("--run matching nothing: exit %d\n%s", r.code, r.stderr)
	}
	if r := runTF(t, home, nil, "policy", "test", dir, "--run", "("); r.code != 2 {
		t.Errorf("--run with a bad pattern: exit %d\n%s", r.code, r.stderr)
	}
}
