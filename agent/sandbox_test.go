package agent

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func testSandbox(t *testing.T) *Sandbox {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"home/.local/state/tf", "home/proj", "repo", "ro"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &Sandbox{
		Home: filepath.Join(root, "home/.local/state/tf"), Handoff: "/tmp/s/handoff.sock", ProxyAddr: "127.0.0.1:4000",
		CABundle: filepath.Join(root, "home/.local/state/tf/ca/bundle.pem"), Exe: "/usr/local/bin/tf",
		Dir: filepath.Join(root, "home/proj"), UserHome: filepath.Join(root, "home"),
		RO: []string{filepath.Join(root, "ro")}, PolicyRepo: filepath.Join(root, "repo"),
	}
}

// $TF_HOME is hidden after every bind that could show it (the agent's
// home holds it by default), and the command runs under tf's init.
func TestBwrapArgsOrder(t *testing.T) {
	s := testSandbox(t)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	a := s.BwrapArgs([]string{"/usr/bin/claude", "-p", "hi"}, 3, 4)
	idx := func(flag, val string) int {
		for i := 0; i+1 < len(a); i++ {
			if a[i] == flag && a[i+1] == val {
				return i
			}
		}
		t.Fatalf("no %s %s in %v", flag, val, a)
		return -1
	}
	hide := idx("--tmpfs", s.Home)
	for _, bind := range [][2]string{{"--bind-try", s.UserHome}, {"--bind", s.Dir}, {"--ro-bind", s.RO[0]}, {"--ro-bind-try", s.PolicyRepo}, {"--ro-bind", "/"}} {
		if i := idx(bind[0], bind[1]); i > hide {
			t.Errorf("%s %s comes after $TF_HOME is hidden", bind[0], bind[1])
		}
	}
	for _, f := range []string{"--unshare-all", "--die-with-parent", "--seccomp", "--as-pid-1"} {
		if !slices.Contains(a, f) {
			t.Errorf("missing %s", f)
		}
	}
	// Without a seccomp filter, a session of its own keeps TIOCSTI away.
	if b := s.BwrapArgs([]string{"/bin/true"}, 3, -1); !slices.Contains(b, "--new-session") || slices.Contains(b, "--seccomp") {
		t.Errorf("no filter: %v", b)
	}
	idx("--ro-bind", s.CABundle)
	idx("--tmpfs", "/tmp")
	tail := strings.Join(a[slices.Index(a, "--chdir"):], " ")
	want := "--chdir " + s.Dir + " -- /run/tf/bin/tf sandbox-init --handoff /run/tf/handoff.sock -- /usr/bin/claude -p hi"
	if tail != want {
		t.Errorf("tail\n%s\nwant\n%s", tail, want)
	}
}

func TestSandboxCheck(t *testing.T) {
	s := testSandbox(t)
	s.RW = []string{"/no/such/dir"}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "/no/such/dir does not exist") {
		t.Errorf("missing --rw: %v", err)
	}
	s = testSandbox(t)
	s.Dir = s.Home
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "inside $TF_HOME") {
		t.Errorf("cwd in $TF_HOME: %v", err)
	}
	s = testSandbox(t)
	s.Dir = "/"
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "whole filesystem writable") {
		t.Errorf("cwd /: %v", err)
	}
	s = testSandbox(t)
	s.RO = []string{filepath.Dir(s.Home)}
	if err := s.Check(); err != nil {
		t.Errorf("a parent of $TF_HOME may be bound (it is hidden after): %v", err)
	}
}

func TestSandboxVisible(t *testing.T) {
	s := testSandbox(t)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"/usr/bin/git":                          true,
		filepath.Join(s.Dir, "bin/tool"):        true,
		filepath.Join(s.Home, "bin/tool"):       false,
		"/tmp/elsewhere/tool":                   false,
		"/run/user/0/bus":                       false,
		filepath.Join(s.UserHome, ".npm/x/bin"): true,
	} {
		if got := s.Visible(p); got != want {
			t.Errorf("Visible(%s) = %v, want %v", p, got, want)
		}
	}
}

// The macOS profile cannot run here; its text is what is tested.
func TestSeatbeltProfile(t *testing.T) {
	s := testSandbox(t)
	p := SeatbeltProfile(s, 4000)
	for _, want := range []string{
		"(version 1)", "(deny network*)",
		`(allow network-outbound (remote ip "localhost:4000"))`,
		`(deny file-read* file-write* (subpath "` + s.Home + `"))`,
		`(deny file-write* (subpath "` + s.PolicyRepo + `"))`,
		`(allow file-read* (literal "` + s.CABundle + `"))`,
	} {
		if !strings.Contains(p, want) {
			t.Errorf("profile lacks %s:\n%s", want, p)
		}
	}
	// Later rules win: the bundle's exception follows the denial of $TF_HOME.
	if strings.Index(p, "(allow file-read* (literal") < strings.Index(p, "(deny file-read* file-write*") {
		t.Error("the bundle's exception comes before the denial it relaxes")
	}
	if strings.Count(p, "(allow network") != 1 {
		t.Errorf("more than the proxy's port is allowed:\n%s", p)
	}
}

// Inside, tf is first on PATH and the agent API is named; a TF_AGENT_API
// from outside never survives.
func TestSandboxEnv(t *testing.T) {
	s := testSandbox(t)
	s.AgentAPI = "/tmp/x/agent.sock"
	env := s.Env([]string{"PATH=/usr/bin:/bin", "TF_AGENT_API=/evil.sock", "HOME=/h", "TMPDIR=/tmp/user-0", "XDG_RUNTIME_DIR=/run/user/0"})
	want := []string{"PATH=/run/tf/bin:/usr/bin:/bin", "HOME=/h", "TMPDIR=/tmp", "TF_AGENT_API=/run/tf/agent.sock"}
	if strings.Join(env, "\n") != strings.Join(want, "\n") {
		t.Errorf("env %q, want %q", env, want)
	}
}

// Real credentials under HOME are hidden from the agent (it gets tf's
// placeholders), unless the user names one; the agent's own state stays.
func TestBwrapHidesHomeCredentials(t *testing.T) {
	s := testSandbox(t)
	for _, p := range []string{".ssh", ".config/gh", ".claude"} {
		os.MkdirAll(filepath.Join(s.UserHome, p), 0o700)
	}
	os.WriteFile(filepath.Join(s.UserHome, ".npmrc"), []byte("//registry.npmjs.org/:_authToken=npm_real\n"), 0o600)
	s.RO = append(s.RO, filepath.Join(s.UserHome, ".ssh"))
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	a := strings.Join(s.BwrapArgs([]string{"/bin/true"}, 3, 4), " ")
	for _, want := range []string{"--tmpfs " + filepath.Join(s.UserHome, ".config/gh"), "--ro-bind /dev/null " + filepath.Join(s.UserHome, ".npmrc")} {
		if !strings.Contains(a, want) {
			t.Errorf("missing %q in %s", want, a)
		}
	}
	for _, kept := range []string{"--tmpfs " + filepath.Join(s.UserHome, ".ssh"), filepath.Join(s.UserHome, ".claude")} {
		if strings.Contains(a, kept) {
			t.Errorf("%q hidden, but the user named it or it is the agent's own", kept)
		}
	}
}

// What runs outside the sandbox later (shell start-up files, git's config
// and a repository's hooks) is read-only inside.
func TestBwrapProtectsStartupFiles(t *testing.T) {
	s := testSandbox(t)
	os.WriteFile(filepath.Join(s.UserHome, ".bashrc"), []byte("# rc\n"), 0o644)
	os.MkdirAll(filepath.Join(s.Dir, ".git", "hooks"), 0o755)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	a := strings.Join(s.BwrapArgs([]string{"/bin/true"}, 3, 4), " ")
	for _, p := range []string{filepath.Join(s.UserHome, ".bashrc"), filepath.Join(s.Dir, ".git", "hooks")} {
		if !strings.Contains(a, "--ro-bind "+p+" "+p) {
			t.Errorf("%s is writable inside: %s", p, a)
		}
	}
	if strings.Contains(a, filepath.Join(s.UserHome, ".zshrc")) {
		t.Error("a start-up file that does not exist was bound")
	}
}

// Run from a subdirectory of a repository, the agent can still commit:
// the repository is writable, its hooks are not.
func TestSandboxRepositoryAboveWorkingDirectory(t *testing.T) {
	s := testSandbox(t)
	repo := filepath.Dir(s.Dir) // home/, which holds home/proj
	os.MkdirAll(filepath.Join(repo, ".git", "hooks"), 0o755)
	s.Home = t.TempDir() // a repository that holds $TF_HOME is never made writable
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if s.Repo != repo {
		t.Fatalf("Repo = %q, want %q", s.Repo, repo)
	}
	a := strings.Join(s.BwrapArgs([]string{"/bin/true"}, 3, 4), " ")
	hooks := filepath.Join(repo, ".git", "hooks")
	if !strings.Contains(a, "--bind "+repo+" "+repo) || !strings.Contains(a, "--ro-bind "+hooks+" "+hooks) {
		t.Errorf("repository or hooks: %s", a)
	}
}

// Under a $TMPDIR too long for a socket address, the sockets' directory
// moves to /tmp, and a socket listens there.
func TestSocketDirUnderLongTMPDIR(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix sockets in a sandbox are for Linux and macOS")
	}
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tmp := range []string{long, t.TempDir()} {
		t.Setenv("TMPDIR", tmp)
		dir, err := SocketDir("tf-sandbox-", "handoff.sock")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, %v", dir, st.Mode(), err)
		}
		if inTmp := strings.HasPrefix(dir, tmp); inTmp != (tmp != long) {
			t.Errorf("TMPDIR %d bytes: sockets in %s", len(tmp), dir)
		}
		ln, err := ListenUnix(filepath.Join(dir, "handoff.sock"))
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
}
