package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// A Sandbox is the boundary between the governed agent and tf: on Linux a
// bubblewrap sandbox with its own network, PID and mount namespaces, in
// which the only way out is tf's proxy. tf itself, first inside, opens the
// loopback listener the proxy variables name and hands it to the gateway
// over a unix socket: the gateway then accepts the agent's connections
// directly, with no relay in between.
type Sandbox struct {
	// Home is $TF_HOME: not visible inside at all.
	Home string
	// Handoff is the host path of the handoff socket (Launch creates
	// it): inside, tf listens on the sandbox's loopback and hands the
	// listener over through it.
	Handoff string
	// ProxyAddr is the gateway's own address, which the macOS profile
	// lets the agent reach (there is no network namespace there).
	ProxyAddr string
	// AgentAPI is the host path of the gateway's agent API socket, which
	// tf mcp wrap uses from inside; empty when there is none.
	AgentAPI string
	// CABundle is the host path of the PEM bundle the agent trusts; it is
	// bound in read-only on its own at BundlePath.
	CABundle string
	// Exe is tf's own binary, which runs first inside.
	Exe string
	// Dir is the working directory and UserHome the agent's home: both
	// writable, as agents write their state and caches there.
	Dir      string
	UserHome string
	// Repo is the git repository the working directory is in, when that
	// is above it: writable too, so that the agent can commit. Check
	// finds it.
	Repo string
	// RO and RW are further directories the user names (--ro, --rw);
	// PolicyRepo is bound read-only when it lies outside Home.
	RO, RW     []string
	PolicyRepo string
}

// Paths inside the sandbox.
const (
	BundlePath  = "/run/tf/ca-bundle.pem"
	handoffPath = "/run/tf/handoff.sock"
	// AgentAPIPath is where tf inside the sandbox finds the gateway's
	// agent API; EnvAgentAPI names it in the agent's environment.
	AgentAPIPath = "/run/tf/agent.sock"
	EnvAgentAPI  = "TF_AGENT_API"
	// binDir holds tf itself, first on the agent's PATH, so that the
	// agent's tools (an MCP client's tf mcp wrap) find it.
	binDir  = "/run/tf/bin"
	exePath = binDir + "/tf"
)

// InitCommand is the hidden tf command that runs inside the sandbox as its
// first process: it hands the proxy's loopback listener to the gateway,
// then starts the agent and reaps its processes.
const InitCommand = "sandbox-init"

// ErrSandbox marks a sandbox that cannot be set up or started here.
var ErrSandbox = errors.New("the sandbox cannot start")

// Remedies is what a user can do when the sandbox cannot start.
const Remedies = "install bubblewrap (apt-get install bubblewrap) and allow user namespaces " +
	"(sysctl kernel.unprivileged_userns_clone=1; in a container, run it with --privileged or a seccomp profile that allows unshare), " +
	"or run with --isolate=off, under which the agent can bypass tf"

// Check refuses, before anything starts, a sandbox that cannot be what the
// user asked for: a path to bind that does not exist, or a working
// directory inside $TF_HOME.
func (s *Sandbox) Check() error {
	for _, p := range []*string{&s.Home, &s.Dir, &s.UserHome, &s.PolicyRepo} {
		if *p != "" {
			*p = cleanAbs(*p)
		}
	}
	for _, list := range [][]string{s.RO, s.RW} {
		for i, p := range list {
			fi, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("%w: %s does not exist", ErrSandbox, p)
			}
			if !fi.IsDir() {
				return fmt.Errorf("%w: %s is not a directory", ErrSandbox, p)
			}
			list[i] = cleanAbs(p)
		}
	}
	for _, p := range append([]string{s.Dir}, s.RW...) {
		if p == string(filepath.Separator) {
			return fmt.Errorf("%w: %s would make the whole filesystem writable to the agent; run it from a project directory", ErrSandbox, p)
		}
	}
	for _, p := range append([]string{s.Dir}, append(s.RO, s.RW...)...) {
		if within(p, s.Home) {
			return fmt.Errorf("%w: %s is inside $TF_HOME (%s), which the agent must not see; run it from another directory", ErrSandbox, p, s.Home)
		}
	}
	if r := repoRoot(s.Dir); r != s.Dir && r != string(filepath.Separator) && !within(s.Home, r) {
		s.Repo = r
	}
	if s.UserHome != "" && within(s.UserHome, s.Home) {
		return fmt.Errorf("%w: the agent's HOME (%s) is inside $TF_HOME", ErrSandbox, s.UserHome)
	}
	return nil
}

// Prepare checks the sandbox (see Check) and resolves argv[0] as the
// agent will (with tf's PATH, which the agent's environment keeps),
// refusing a command the sandbox does not show.
func (s *Sandbox) Prepare(argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errNoCommand
	}
	if err := s.Check(); err != nil {
		return "", err
	}
	p, err := exec.LookPath(argv[0])
	if err != nil {
		return "", fmt.Errorf("%s: command not found", argv[0])
	}
	if p = cleanAbs(p); !s.shows(p) {
		return "", fmt.Errorf("%s is %s, which the sandbox does not show (it shows the working directory, HOME, --ro and --rw paths, and the system outside /tmp, /run and $TF_HOME)", argv[0], p)
	}
	return p, nil
}

// Writable are the directories the agent may write: its repository, the
// working directory and the --rw paths.
func (s *Sandbox) Writable() []string {
	w := append([]string{s.Dir}, s.RW...)
	if s.Repo != "" {
		w = append(w, s.Repo)
	}
	return w
}

// repoRoot is the nearest directory at or above dir that holds .git, or "".
func repoRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Visible reports whether a host path can be seen inside the sandbox:
// under a bound directory, or elsewhere on the read-only root but not in
// $TF_HOME or the directories replaced by empty ones.
func (s *Sandbox) Visible(path string) bool {
	path = cleanAbs(path)
	if within(path, s.Home) {
		return false
	}
	for _, d := range append([]string{s.Dir, s.UserHome, s.Repo}, append(s.RO, s.RW...)...) {
		if d != "" && within(path, d) {
			return true
		}
	}
	for _, d := range hiddenRoots {
		if within(path, d) {
			return false
		}
	}
	return true
}

// homeCredentials are where tools keep real credentials under HOME: the
// agent gets tf's placeholders and injected credentials instead, so these
// are hidden (an empty directory, or an empty file) unless the user names
// one with --ro or --rw. The agent's own files (~/.claude) stay.
var homeCredentials = []string{
	".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker/config.json",
	".config/gh", ".git-credentials", ".netrc", ".npmrc", ".yarnrc.yml", ".pypirc",
	".cargo/credentials.toml", ".config/hub", ".local/share/keyrings", ".password-store",
}

// hideCredentials are the bubblewrap arguments that hide homeCredentials.
func (s *Sandbox) hideCredentials() []string {
	if s.UserHome == "" || s.UserHome == "/" {
		return nil
	}
	var a []string
	for _, rel := range homeCredentials {
		p := filepath.Join(s.UserHome, rel)
		if slices.Contains(s.RO, p) || slices.Contains(s.RW, p) {
			continue
		}
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
		case fi.IsDir():
			a = append(a, "--tmpfs", p)
		default:
			a = append(a, "--ro-bind", os.DevNull, p)
		}
	}
	return a
}

// homeStartup are files and directories under HOME whose contents run, or
// decide what runs, outside the sandbox the next time the user opens a
// shell, logs in or runs git: an agent that could write them would leave
// the sandbox by proxy. They are read-only inside (when they exist; a
// missing one cannot be bound without creating it).
var homeStartup = []string{
	".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".bashrc.d",
	".zshrc", ".zshenv", ".zprofile", ".zlogin", ".zlogout", ".config/fish",
	".gitconfig", ".config/git", ".config/autostart", ".config/systemd", ".config/environment.d",
	".pam_environment", ".xprofile", ".xinitrc", ".xsessionrc",
}

// workStartup are, in the working directory and --rw paths, what git runs
// from a repository on the user's next git command outside the sandbox.
var workStartup = []string{".git/hooks"}

// protectStartup are the bubblewrap arguments that make homeStartup and
// workStartup read-only, unless the user names one with --rw.
func (s *Sandbox) protectStartup() []string {
	var paths []string
	if s.UserHome != "" && s.UserHome != "/" {
		for _, rel := range homeStartup {
			paths = append(paths, filepath.Join(s.UserHome, rel))
		}
	}
	for _, d := range s.Writable() {
		// The directory's own repository, and those one level down (a
		// folder of checkouts).
		dirs := []string{d}
		if ents, err := os.ReadDir(d); err == nil {
			for _, e := range ents {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					dirs = append(dirs, filepath.Join(d, e.Name()))
				}
			}
		}
		for _, dd := range dirs {
			for _, rel := range workStartup {
				paths = append(paths, filepath.Join(dd, rel))
			}
		}
	}
	var a []string
	for _, p := range paths {
		if slices.Contains(s.RW, p) {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			a = append(a, "--ro-bind", p, p)
		}
	}
	return a
}

// hiddenRoots are replaced by empty directories: /tmp is private to the
// sandbox, and /run holds the sockets of the user's session (D-Bus, the
// Secret Service that may hold tf's keyring, ssh-agent, Docker).
var hiddenRoots = []string{"/tmp", "/run", "/var/run", "/var/tmp", "/dev/shm"}

// BwrapArgs are bubblewrap's arguments for running argv in the sandbox
// (argv[0] resolved already). infoFD is the descriptor bwrap reports the
// sandbox's first process on; seccompFD, when not negative, holds the
// filter that keeps the agent from pushing input into the terminal
// (ttyFilter). Without one, the agent gets a session of its own instead:
// the terminal is then not its controlling terminal, and tf passes the
// terminal's signals on.
func (s *Sandbox) BwrapArgs(argv []string, infoFD, seccompFD int) []string {
	a := []string{
		"--unshare-all", // user (where possible), ipc, pid, net, uts, cgroup
		"--die-with-parent",
	}
	if seccompFD >= 0 {
		a = append(a, "--seccomp", fmt.Sprint(seccompFD))
	} else {
		a = append(a, "--new-session")
	}
	a = append(a,
		"--as-pid-1",
		"--info-fd", fmt.Sprint(infoFD),
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		"--proc", "/proc",
	)
	for _, d := range hiddenRoots {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
			a = append(a, "--tmpfs", d)
		}
	}
	bind := func(flag, p string) { a = append(a, flag, p, p) }
	if s.UserHome != "" && s.UserHome != "/" {
		bind("--bind-try", s.UserHome)
	}
	if s.Repo != "" {
		bind("--bind", s.Repo)
	}
	bind("--bind", s.Dir)
	for _, p := range s.RW {
		bind("--bind", p)
	}
	if s.PolicyRepo != "" && !within(s.PolicyRepo, s.Home) {
		bind("--ro-bind-try", s.PolicyRepo)
	}
	for _, p := range s.RO {
		bind("--ro-bind", p)
	}
	a = append(a, s.hideCredentials()...)
	a = append(a, s.protectStartup()...)
	// Last, so that no bind above can show it again; empty and read-only,
	// so that tf commands run inside fail rather than seem to work.
	a = append(a, "--tmpfs", s.Home, "--remount-ro", s.Home,
		"--ro-bind", s.CABundle, BundlePath,
		"--ro-bind", s.Exe, exePath,
		"--bind", s.Handoff, handoffPath)
	if s.AgentAPI != "" {
		a = append(a, "--bind", s.AgentAPI, AgentAPIPath)
	}
	a = append(a, "--chdir", s.Dir,
		"--", exePath, InitCommand, "--handoff", handoffPath, "--")
	return append(a, argv...)
}

func cleanAbs(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return filepath.Clean(p)
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	if dir == "" {
		return false
	}
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// Env is the agent's environment inside the sandbox: tf's own directory
// first on PATH, where tf finds the gateway's agent API, and no directory
// the sandbox replaced (a TMPDIR under the host's /tmp becomes the
// sandbox's /tmp; XDG_RUNTIME_DIR, under /run, goes).
func (s *Sandbox) Env(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH":
			kv = "PATH=" + binDir + string(filepath.ListSeparator) + v
		case k == EnvAgentAPI:
			continue
		case k == "TMPDIR" && !s.Visible(v):
			kv = "TMPDIR=/tmp"
		case k == "XDG_RUNTIME_DIR" && !s.Visible(v):
			continue
		}
		out = append(out, kv)
	}
	if s.AgentAPI != "" {
		out = append(out, EnvAgentAPI+"="+AgentAPIPath)
	}
	return out
}

// maxSocketPath is the longest unix socket path every platform takes:
// sockaddr_un holds 108 bytes on Linux and 104 on macOS, the terminating
// NUL included.
const maxSocketPath = 103

// SocketDir makes a private (0700) directory for the unix sockets tf
// binds into a sandbox, whose longest name is longest: in the temporary
// directory, or in /tmp when $TMPDIR is so long that a socket path in it
// would not fit in a socket address (macOS's per-user $TMPDIR is long
// already; a test's or a CI job's can be much longer).
func SocketDir(prefix, longest string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil || len(filepath.Join(dir, longest)) <= maxSocketPath || runtime.GOOS == "windows" {
		return dir, err
	}
	os.Remove(dir)
	if dir, err = os.MkdirTemp("/tmp", prefix); err != nil {
		return "", err
	}
	if p := filepath.Join(dir, longest); len(p) > maxSocketPath {
		os.Remove(dir)
		return "", fmt.Errorf("no directory for tf's sockets: %s is %d bytes, more than a socket address holds", p, len(p))
	}
	return dir, nil
}

// ListenUnix listens on a new unix socket at path, 0600, replacing a stale
// one. The sockets tf binds into a sandbox live in a private 0700
// directory, so the mode is a second fence, not the first.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
