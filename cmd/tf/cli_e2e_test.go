package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Usage errors are one line with the closest command or flag and exit 2;
// failures exit 1; the whole help is never dumped for a typo.
func TestUsageErrorsAndExitCodes(t *testing.T) {
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"polcy"}, 2, `tf: unknown command "polcy" (did you mean "policy"?) (see tf --help)`},
		{[]string{"foo"}, 2, `tf: unknown command "foo" (see tf --help)`},
		{[]string{"policy", "tst"}, 2, `tf policy: unknown command "tst" (did you mean "test"?) (see tf policy --help)`},
		{[]string{"logs", "--decison", "deny"}, 2, `tf logs: unknown flag --decison (did you mean --decision?) (see tf logs --help)`},
		{[]string{"--colr=never", "status"}, 2, `tf: unknown flag --colr (did you mean --color?)`},
		{[]string{"--color=sometimes", "status"}, 2, `--color "sometimes": want auto, always or never`},
		{[]string{"run"}, 2, "tf run: give the command to govern after --"},
		{[]string{"completion", "bsh"}, 2, `no completion for shell "bsh" (did you mean "bash"?)`},
		{[]string{"policy", "validate", filepath.Join(home, "missing")}, 1, ""},
	} {
		r := runTF(t, home, nil, tc.args...)
		if r.code != tc.code {
			t.Errorf("tf %v: exit %d, want %d\n%s", tc.args, r.code, tc.code, r.stderr)
		}
		if tc.want != "" && !strings.Contains(r.stderr, tc.want) {
			t.Errorf("tf %v: stderr lacks %q:\n%s", tc.args, tc.want, r.stderr)
		}
		if tc.code == 2 && (strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 || strings.Contains(r.stderr, "USAGE:")) {
			t.Errorf("tf %v: want one line, got:\n%s", tc.args, r.stderr)
		}
	}
}

// tf --version and tf version name the build; the completion scripts are
// printed for each shell, and bash's completes a command.
func TestVersionAndCompletion(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := runTF(t, home, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "tf ") || !strings.Contains(r.stdout, "go:       go1.") || !strings.Contains(r.stdout, "platform: ") {
			t.Errorf("tf %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := runTF(t, home, nil, "version", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"go": "go1.`) {
		t.Errorf("tf version --json: %s%s", r.stdout, r.stderr)
	}
	for shell, want := range map[string]string{"bash": "complete -o bashdefault", "zsh": "#compdef tf", "fish": "complete -c tf"} {
		if r := runTF(t, home, nil, "completion", shell); r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("tf completion %s: exit %d, lacks %q\n%s", shell, r.code, want, r.stderr)
		}
	}
	bin := t.TempDir()
	if err := os.Symlink(tfBin, filepath.Join(bin, "tf")); err != nil {
		t.Fatal(err)
	}
	script := `eval "$(tf completion bash)"
COMP_WORDS=(tf pol); COMP_CWORD=1; _tf_complete; echo "1:${COMPREPLY[*]}"
COMP_WORDS=(tf policy te); COMP_CWORD=2; _tf_complete; echo "2:${COMPREPLY[*]}"
COMP_WORDS=(tf logs --deci); COMP_CWORD=2; _tf_complete; echo "3:${COMPREPLY[*]}"
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "TF_HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"1:policy\n", "2:test\n", "3:--decision\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bash completion lacks %q:\n%s", want, out)
		}
	}
}

// The zsh and fish scripts complete in their own shells. fish runs its
// completion engine (complete -C); zsh runs the completion function with
// compsys's _describe (which keeps the candidates that fit the word) and
// _files standing in, since compsys needs a line editor on a terminal.
func TestCompletionInZshAndFish(t *testing.T) {
	requireTool(t, "zsh", "zsh")
	requireTool(t, "fish", "fish")
	home := t.TempDir()
	bin := t.TempDir()
	if err := os.Symlink(tfBin, filepath.Join(bin, "tf")); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "TF_HOME="+home, "HOME="+home, "XDG_CONFIG_HOME="+home)
	shells := []struct {
		shell, script string
	}{
		{"zsh", `eval "$(tf completion zsh)"
_describe() { local -a c=("${(@P)2}"); print -r -- "${(j: :)${(@M)c:#${words[CURRENT]}*}}" }
_files() { print -r -- FILES }
words=(tf pol); CURRENT=2; print -n "1:"; _tf
words=(tf policy te); CURRENT=3; print -n "2:"; _tf
words=(tf logs --deci); CURRENT=3; print -n "3:"; _tf
`},
		{"fish", `tf completion fish | source
echo "1:"(complete -C "tf pol" | string split -f 1 \t)
echo "2:"(complete -C "tf policy te" | string split -f 1 \t | string match -v '*/')
echo "3:"(complete -C "tf logs --deci" | string split -f 1 \t)
`},
	}
	for _, sh := range shells {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, sh.shell, "-c", sh.script)
		cmd.Env, cmd.Dir = env, home
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s", sh.shell, err, out)
		}
		for _, want := range []string{"1:policy\n", "2:test\n", "3:--decision\n"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s completion lacks %q:\n%s", sh.shell, want, out)
			}
		}
	}
}

// Colour: off when piped (auto) or with --color=never, on with
// --color=always; the flag may sit anywhere on the line. On a terminal
// NO_COLOR turns auto off (TestSetColor).
func TestColorOnAndOff(t *testing.T) {
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  []string
		want bool
	}{
		{[]string{"actions", "npm"}, nil, false},
		{[]string{"actions", "npm", "--color=never"}, nil, false},
		{[]string{"actions", "npm", "--color=always"}, nil, true},
		{[]string{"--color", "always", "actions", "npm"}, []string{"NO_COLOR=1"}, true},
		{[]string{"policy", "test", "../../testdata/policy", "-v", "--color=always"}, nil, true},
	} {
		r := runTF(t, home, tc.env, tc.args...)
		if r.code != 0 || strings.Contains(r.stdout, "\x1b[") != tc.want {
			t.Errorf("tf %v (%v): exit %d, colour %v, want %v\n%s%s", tc.args, tc.env, r.code, !tc.want, tc.want, r.stdout, r.stderr)
		}
	}
}

// On a terminal (script(1) gives tf one) colour is on unless NO_COLOR is
// set.
func TestColorOnATerminal(t *testing.T) {
	requireTool(t, "script", "bsdutils")
	for _, tc := range []struct {
		env  string
		want bool
	}{{"", true}, {"1", false}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "script", "-qec", tfBin+" actions npm", os.DevNull)
		cmd.Env = append(os.Environ(), "TF_HOME="+t.TempDir(), "NO_COLOR="+tc.env, "TERM=xterm")
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("script: %v\n%s", err, out)
		}
		if got := strings.Contains(string(out), "\x1b[36mnpm.audit"); got != tc.want {
			t.Errorf("NO_COLOR=%q on a terminal: colour %v, want %v\n%q", tc.env, got, tc.want, out)
		}
	}
}

func TestSetColor(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv("NO_COLOR", "")
	if err := setColor("auto", f); err != nil || colorOn {
		t.Errorf("auto on a non-terminal: %v %v", colorOn, err)
	}
	if err := setColor("always", f); err != nil || !colorOn {
		t.Errorf("always: %v %v", colorOn, err)
	}
	if err := setColor("never", f); err != nil || colorOn {
		t.Errorf("never: %v %v", colorOn, err)
	}
	if err := setColor("rainbow", f); err == nil {
		t.Error("rainbow accepted")
	}
}
