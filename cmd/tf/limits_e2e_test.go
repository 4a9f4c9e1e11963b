package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Limits with curl inside tf run: the third pull request of the hour is
// refused with the limit's reason and never reaches GitHub; a second run
// of the same gateway still refuses it (the counter was rebuilt from the
// audit log), while its limit per session starts afresh. tf policy test
// runs a sequence case.
func TestRunLimits(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	files := map[string]string{
		"tameflare.yaml": `version: 1
default: deny
rules:
  - name: pr-rate
    actions: [github.pr.create]
    decision: allow
    limit: {count: 2, per: 1h}
  - name: one-read-a-session
    actions: [github.repo.get]
    decision: allow
    limit: {count: 1, per: session}
`,
		"tests/limits.yaml": `cases:
  - name: two pull requests an hour
    action: {type: github.pr.create, resource: {owner: acme, repo: app}}
    sequence:
      - {repeat: 2, expect: allow}
      - {expect: deny, rule: pr-rate}
      - {after: 1h, expect: allow}
`,
	}
	for name, body := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if r := runTF(t, home, nil, "policy", "test", dir); r.code != 0 || !strings.Contains(r.stdout, "1 passed, 0 failed") {
		t.Fatalf("policy test: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	up := newUpstream(t, t.TempDir())
	base := append([]string{"run", "--name", "e2e-limits", "--policy", dir}, up.args()...)
	const script = `for i in 1 2 3; do curl -sS -w 'code %{http_code}\n' -X POST -d '{"title":"x","head":"f","base":"main"}' https://api.github.com/repos/acme/app/pulls; done
curl -sS -o /dev/null -w 'read %{http_code}\n' https://api.github.com/repos/acme/app
curl -sS -o /dev/null -w 'read %{http_code}\n' https://api.github.com/repos/acme/app`
	r := runTF(t, home, nil, append(base, "--", "sh", "-c", script)...)
	if got := codes(r.stdout); r.code != 0 || got != "200 200 403 read:200 read:403" ||
		!strings.Contains(r.stdout, `"reason":"limit reached: 2 per 1h (rule pr-rate); the next is allowed at `) {
		t.Fatalf("first run: exit %d, codes %q\n%s\n%s", r.code, got, r.stdout, r.stderr)
	}
	if n := up.hits.Load(); n != 3 {
		t.Fatalf("upstream hits %d, want 3 (two pull requests, one read)", n)
	}
	r = runTF(t, home, nil, append(base, "--", "sh", "-c", `curl -sS -w 'code %{http_code}\n' -X POST -d '{}' https://api.github.com/repos/acme/app/pulls
curl -sS -o /dev/null -w 'read %{http_code}\n' https://api.github.com/repos/acme/app`)...)
	if got := codes(r.stdout); r.code != 0 || got != "403 read:200" || !strings.Contains(r.stdout, `"reason":"limit reached: 2 per 1h (rule pr-rate)`) {
		t.Fatalf("second run: exit %d, codes %q\n%s\n%s", r.code, got, r.stdout, r.stderr)
	}
	if n := up.hits.Load(); n != 4 {
		t.Fatalf("upstream hits %d, want 4", n)
	}
}

// codes picks the status codes curl printed ("code 200", "read 200").
func codes(out string) string {
	var cs []string
	for _, l := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(l, "code "); ok {
			cs = append(cs, c)
		} else if c, ok := strings.CutPrefix(l, "read "); ok {
			cs = append(cs, "read:"+c)
		}
	}
	return strings.Join(cs, " ")
}
