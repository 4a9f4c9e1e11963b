//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tameflare/tf/agent"
	"github.com/tameflare/tf/audit"
	"golang.org/x/sys/unix"
)

func requireSandbox(t *testing.T) {
	t.Helper()
	if err := agent.SandboxAvailable(); err != nil {
		t.Fatalf("%v (.ci/run installs bubblewrap)", err)
	}
}

// The attacks an agent could make from inside tf run, scripted as the
// agent: each must fail, while the governed path keeps working.
func TestSandboxDefeatsBypass(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	shared := t.TempDir() // where the agent reports, --rw
	const secret = "tf-isolation-known-secret-8d1f"

	// A UDP listener on the host: nothing may reach it from inside.
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, _, err := udp.ReadFrom(b)
		if err == nil {
			got <- string(b[:n])
		}
	}()

	// The operator's kill switch, before the agent starts.
	if r := runTF(t, home, nil, "kill", "--connector", "npm", "--reason", "operator's own"); r.code != 0 {
		t.Fatalf("tf kill: %s", r.stderr)
	}
	killBefore, _ := os.ReadFile(filepath.Join(home, "killswitch"))

	script := `
report() { echo "$1=$2" >> ` + shared + `/report; }
# 1. ignore the proxy: direct TCP to the upstream, and a raw socket.
curl -sS -m 3 --noproxy '*' -k https://` + up.addr() + `/repos/acme/app >/dev/null 2>&1; report direct $?
curl -sS -m 3 --noproxy '*' telnet://` + up.addr() + ` </dev/null >/dev/null 2>&1; report raw $?
# UDP and DNS.
printf leak > /dev/udp/127.0.0.1/` + fmt.Sprint(udp.LocalAddr().(*net.UDPAddr).Port) + ` 2>/dev/null
python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"leak", ("127.0.0.1", ` + fmt.Sprint(udp.LocalAddr().(*net.UDPAddr).Port) + `))' 2>/dev/null; report udp $?
getent hosts github.com >/dev/null 2>&1; report dns $?
# 2. the admin sockets, also from a double-forked child.
ls "$TF_HOME"/gateways/*.sock >/dev/null 2>&1; report adminsock $?
( setsid sh -c 'curl -sS -m 3 --unix-socket "$TF_HOME"/gateways/iso.sock http://tf/v1/status >/dev/null 2>&1; echo "doublefork=$?" >> ` + shared + `/report' & ) ; sleep 1
# the handoff socket takes one listener, the first process's, then closes.
python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect("/run/tf/handoff.sock")' 2>/dev/null; report handoff $?
# 3. the kill switch: tf kill --off, the file, the lock.
/run/tf/tf kill --off >/dev/null 2>&1; report killoff $?
echo '{"version":1,"switches":[]}' > "$TF_HOME"/killswitch 2>/dev/null
# 4. the pin and the audit log.
echo '{"version":1,"repository":"/evil","commit":"0000000000000000000000000000000000000000"}' > "$TF_HOME"/pin 2>/dev/null
rm -rf "$TF_HOME"/audit 2>/dev/null
# 5. tf's environment and memory: its process is not in this /proc.
# (the pattern is built here so that this script's own text does not hold it)
a=` + secret[:12] + `; b=` + secret[12:] + `
found=0; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline /proc/[0-9]*/mem; do grep -qa "$a$b" "$f" 2>/dev/null && found=1; done; report procsecret $found
ls /proc | grep -c '^[0-9]' > ` + shared + `/nproc
env | grep -c "$a$b" > ` + shared + `/envsecret
# 6. the CA key.
cat "$TF_HOME"/ca/*key* >/dev/null 2>&1; report cakey $?
# The governed path still works.
curl -sS -o /dev/null -w '%{http_code}' https://api.github.com/repos/acme/app > ` + shared + `/governed
`
	// The agent's HOME holds a real credential, as a developer's does.
	agentHome := t.TempDir()
	os.MkdirAll(filepath.Join(agentHome, ".config", "gh"), 0o700)
	os.WriteFile(filepath.Join(agentHome, ".config", "gh", "hosts.yml"), []byte("github.com:\n    oauth_token: "+secret+"\n"), 0o600)
	os.WriteFile(filepath.Join(agentHome, ".bashrc"), []byte("# the user's\n"), 0o644)
	if out, err := exec.Command("git", "init", "-q", filepath.Join(shared, "repo")).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	script += `cat ~/.config/gh/hosts.yml >/dev/null 2>&1; report ghconfig $?
# What would run outside the sandbox later: the user's shell start-up, a repository's hooks.
echo '/run/tf/bin/tf kill --off' >> ~/.bashrc 2>/dev/null; report bashrc $?
printf '#!/bin/sh\ntf kill --off\n' > ` + shared + `/repo/.git/hooks/pre-commit 2>/dev/null; report githook $?
# .git/config stays writable (push -u writes it); what git would run from it is removed afterwards.
git -C ` + shared + `/repo config core.fsmonitor 'tf kill --off'
git -C ` + shared + `/repo config alias.st '!tf kill --off'
git -C ` + shared + `/repo config branch.main.remote origin
`
	args := append([]string{"run", "--name", "iso", "--policy", absPath(t, examplePolicy), "--rw", shared}, up.args()...)
	r := runTF(t, home, []string{"TF_SECRET_GH_TOKEN=" + secret, "HOME=" + agentHome}, append(args, "--", "bash", "-c", script)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	report := map[string]string{}
	b, _ := os.ReadFile(filepath.Join(shared, "report"))
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		report[k] = v
	}
	for _, k := range []string{"direct", "raw", "dns", "adminsock", "doublefork", "handoff", "killoff", "cakey", "ghconfig", "bashrc", "githook"} {
		if v, ok := report[k]; !ok || v == "0" {
			t.Errorf("%s: the agent succeeded (exit %q); report:\n%s", k, v, b)
		}
	}
	if report["procsecret"] != "0" {
		t.Errorf("the agent found the secret in /proc")
	}
	select {
	case m := <-got:
		t.Errorf("a UDP datagram left the sandbox: %q", m)
	case <-time.After(200 * time.Millisecond):
	}
	if n, _ := os.ReadFile(filepath.Join(shared, "nproc")); strings.TrimSpace(string(n)) == "" || len(strings.TrimSpace(string(n))) > 1 {
		t.Errorf("the agent sees %s processes; want only the sandbox's few", n)
	}
	if n, _ := os.ReadFile(filepath.Join(shared, "envsecret")); strings.TrimSpace(string(n)) != "0" {
		t.Errorf("the secret is in the agent's environment")
	}
	if g, _ := os.ReadFile(filepath.Join(shared, "governed")); string(g) != "200" {
		t.Errorf("a governed request from inside got %q, want 200", g)
	}
	if up.hits.Load() != 1 {
		t.Errorf("upstream hits %d, want 1 (the governed request only)", up.hits.Load())
	}

	// Outside, nothing the agent did took effect.
	if b, _ := os.ReadFile(filepath.Join(agentHome, ".bashrc")); string(b) != "# the user's\n" {
		t.Errorf("the agent changed ~/.bashrc:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(shared, "repo", ".git", "hooks", "pre-commit")); err == nil {
		t.Error("the agent wrote a git hook")
	}
	cfg, _ := exec.Command("git", "config", "--file", filepath.Join(shared, "repo", ".git", "config"), "--list").Output()
	if strings.Contains(string(cfg), "fsmonitor") || strings.Contains(string(cfg), "alias.st") || !strings.Contains(string(cfg), "branch.main.remote=origin") {
		t.Errorf("the repository's config after the session:\n%s", cfg)
	}
	if !strings.Contains(r.stderr, "core.fsmonitor=tf kill --off") || !strings.Contains(r.stderr, "tf removed it") {
		t.Errorf("tf did not say it removed the agent's git settings:\n%s", r.stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(home, "killswitch")); string(after) != string(killBefore) {
		t.Errorf("the kill switch changed:\n%s", after)
	}
	if _, err := os.Stat(filepath.Join(home, "pin")); err == nil {
		t.Error("the agent wrote a pin")
	}
	if r := runTF(t, home, nil, "audit", "verify"); r.code != 0 {
		t.Errorf("tf audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	recs := decisions(t, home)
	if len(recs) == 0 {
		t.Fatal("no decision records: the audit log was lost")
	}
	var started *audit.Record
	for _, rec := range readAll(t, home) {
		if rec.Event == audit.EventGatewayStarted && rec.Gateway == "iso" {
			started = rec
		}
	}
	if started == nil || started.Details["isolated"] != true {
		t.Errorf("gateway.started does not record isolation: %+v", started)
	}
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Error("the secret appears in tf's output")
	}
}

func readAll(t *testing.T, home string) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{}, func(r *audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The operator's tf kill from outside takes effect while the agent holds
// every lock it can reach, and reaches the running gateway.
func TestSandboxOperatorKillWhileAgentHoldsLocks(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	shared := t.TempDir()
	script := `
exec 9>"$TF_HOME"/killswitch.lock; flock 9
mkdir -p "$TF_HOME"/audit; exec 8>"$TF_HOME"/audit/lock; flock 8
touch ` + shared + `/holding
while [ ! -e ` + shared + `/go ]; do sleep 0.05; done
curl -sS -i https://api.github.com/repos/acme/app > ` + shared + `/after
`
	args := append([]string{"run", "--name", "locks", "--policy", absPath(t, examplePolicy), "--rw", shared}, up.args()...)
	p := startTF(t, t.TempDir(), home, nil, append(args, "--", "bash", "-c", script)...)
	waitFile(t, p, filepath.Join(shared, "holding"))

	start := time.Now()
	if r := runTF(t, home, nil, "kill", "--reason", "stop now"); r.code != 0 {
		t.Fatalf("tf kill: exit %d\n%s", r.code, r.stderr)
	}
	t.Logf("tf kill took %v while the agent held its locks", time.Since(start))
	os.WriteFile(filepath.Join(shared, "go"), nil, 0o644)
	if r := p.wait(t); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	after, _ := os.ReadFile(filepath.Join(shared, "after"))
	if !strings.Contains(string(after), "403") || !strings.Contains(string(after), "stop now") {
		t.Errorf("a request after tf kill:\n%s", after)
	}
	if up.hits.Load() != 0 {
		t.Error("a request reached the upstream under the kill switch")
	}
}

func waitFile(t *testing.T, p *tfProc, path string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			r := p.wait(t)
			t.Fatalf("%s never appeared (exit %d)\n%s\n%s", path, r.code, r.stdout, r.stderr)
		}
	}
}

// The policy directory is read-only inside; --ro paths too.
func TestSandboxReadOnlyPaths(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	policy := t.TempDir()
	b, err := os.ReadFile(filepath.Join(examplePolicy, "tameflare.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(policy, "tameflare.yaml"), b, 0o644)
	ro := t.TempDir()
	os.WriteFile(filepath.Join(ro, "data"), []byte("readable"), 0o644)
	r := runTF(t, home, nil, "run", "--policy", policy, "--ro", ro, "--", "sh", "-c",
		`cat `+ro+`/data; touch `+ro+`/x 2>/dev/null && echo wrote-ro; echo evil >> `+policy+`/tameflare.yaml 2>/dev/null && echo wrote-policy; true`)
	if r.code != 0 || r.stdout != "readable" {
		t.Fatalf("exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(policy, "tameflare.yaml")); string(after) != string(b) {
		t.Error("the agent changed the policy")
	}
}

// Bad input is refused before anything starts, with the reason.
func TestSandboxBadInput(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	for _, c := range []struct {
		dir  string
		args []string
		want string
	}{
		{"", []string{"--ro", "/no/such/dir", "--", "true"}, "/no/such/dir does not exist"},
		{"", []string{"--rw", "/no/such/dir", "--", "true"}, "/no/such/dir does not exist"},
		{"", []string{"--", "no-such-command-tf"}, "no-such-command-tf: command not found"},
		{home, []string{"--", "true"}, "inside $TF_HOME"},
		{"", []string{"--isolate", "maybe", "--", "true"}, `--isolate "maybe"`},
	} {
		dir := c.dir
		if dir == "" {
			dir = t.TempDir()
		}
		r := runTFIn(t, dir, home, nil, append([]string{"run", "--policy", absPath(t, examplePolicy)}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr:\n%s\nwant %q", c.args, r.code, r.stderr, c.want)
		}
		if strings.Contains(r.stderr, "governing with") {
			t.Errorf("%v: the gateway started before the check", c.args)
		}
	}
}

// Where the sandbox cannot start, tf run refuses and names both remedies;
// it never falls back to running the agent unisolated.
func TestSandboxMissingRefuses(t *testing.T) {
	home := t.TempDir()
	bin := t.TempDir() // a PATH with sh and the agent's tools but no bwrap
	for _, tool := range []string{"sh", "true"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(p, filepath.Join(bin, tool))
	}
	marker := filepath.Join(t.TempDir(), "ran")
	r := runTF(t, home, []string{"PATH=" + bin}, "run", "--policy", absPath(t, examplePolicy), "--", "sh", "-c", "echo > "+marker)
	if r.code == 0 || !strings.Contains(r.stderr, "bubblewrap") || !strings.Contains(r.stderr, "--isolate=off") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the agent ran without the sandbox")
	}
}

// --isolate=off runs as before, and says plainly that governance is
// advisory: on tf run's stderr, in tf status, in tf status --json.
func TestIsolateOffWarns(t *testing.T) {
	home := t.TempDir()
	shared := t.TempDir()
	p := startTF(t, t.TempDir(), home, nil, "run", "--name", "loose", "--isolate=off", "--policy", absPath(t, examplePolicy),
		"--", "sh", "-c", "touch "+shared+"/up; while [ ! -e "+shared+"/go ]; do sleep 0.05; done")
	waitFile(t, p, filepath.Join(shared, "up"))
	st := runTF(t, home, nil, "status", "--json")
	var o struct {
		Gateways []struct {
			Name     string   `json:"name"`
			Isolated *bool    `json:"isolated"`
			Notes    []string `json:"notes"`
		} `json:"gateways"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &o); err != nil || len(o.Gateways) != 1 {
		t.Fatalf("tf status --json: %v\n%s", err, st.stdout)
	}
	if g := o.Gateways[0]; g.Isolated == nil || *g.Isolated || !strings.Contains(strings.Join(g.Notes, "\n"), "could bypass tf") {
		t.Errorf("status: %+v", g)
	}
	if st := runTF(t, home, nil, "status"); !strings.Contains(st.stdout, "could bypass tf") {
		t.Errorf("tf status does not warn:\n%s", st.stdout)
	}
	os.WriteFile(filepath.Join(shared, "go"), nil, 0o644)
	r := p.wait(t)
	if !strings.Contains(r.stderr, "warning: not isolated") {
		t.Errorf("tf run does not warn:\n%s", r.stderr)
	}
}

// The same boundary for an unprivileged user (the usual case on a laptop):
// the sandbox starts without root, nothing but the proxy is reachable, and
// with --isolate=off tf's own environment and memory are closed to the
// agent (non-dumpable), which runs as the same user.
func TestSandboxAsUnprivilegedUser(t *testing.T) {
	requireSandbox(t)
	if os.Geteuid() != 0 {
		t.Skip("creating a user needs root; run as root (CI does) to test the unprivileged path")
	}
	const name = "tf-sandbox-test"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "-M", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
	}
	u, _ := user.Lookup(name)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	up := newUpstream(t, t.TempDir())
	base, err := os.MkdirTemp("", "tf-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	for _, d := range []string{"home", "work", "shared"} {
		os.Mkdir(filepath.Join(base, d), 0o755)
	}
	bin := filepath.Join(base, "tf")
	for src, dst := range map[string]string{tfBin: bin, up.caFile: filepath.Join(base, "up-ca.pem")} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dst, b, 0o755)
	}
	filepath.WalkDir(base, func(p string, _ os.DirEntry, _ error) error { return os.Chown(p, uid, gid) })

	run := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = filepath.Join(base, "work")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(base, "home"),
			"TF_HOME=" + filepath.Join(base, "home", ".tf"), "TF_SECRET_GH_TOKEN=unpriv-known-secret"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{out.String(), errb.String(), code}
	}
	// The built-in example policy: nothing of the checkout need be readable.
	upArgs := []string{"--upstream-ca", filepath.Join(base, "up-ca.pem")}
	for _, h := range []string{"api.github.com", "github.com"} {
		upArgs = append(upArgs, "--upstream", h+"="+up.addr())
	}
	shared := filepath.Join(base, "shared")
	r := run(append(append([]string{"run", "--rw", shared}, upArgs...), "--", "sh", "-c",
		`id -u > `+shared+`/uid; curl -sS -m 3 --noproxy '*' -k https://`+up.addr()+`/ >/dev/null 2>&1; echo $? > `+shared+`/direct;`+
			` curl -sS -o /dev/null -w '%{http_code}' https://api.github.com/repos/acme/app > `+shared+`/governed`)...)
	if r.code != 0 {
		t.Fatalf("sandboxed run as %s: exit %d\n%s", name, r.code, r.stderr)
	}
	for file, want := range map[string]string{"uid": u.Uid, "direct": "7", "governed": "200"} {
		if b, _ := os.ReadFile(filepath.Join(shared, file)); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want %q", file, b, want)
		}
	}

	r = run(append(append([]string{"run", "--isolate=off"}, upArgs...), "--", "sh", "-c",
		`cat /proc/$PPID/environ >/dev/null 2>&1 && echo environ-readable; (exec 3</proc/$PPID/mem) 2>/dev/null && echo mem-readable; true`)...)
	if r.code != 0 || strings.Contains(r.stdout, "readable") {
		t.Errorf("--isolate=off as %s: exit %d, the agent could read tf's process: %q\n%s", name, r.code, r.stdout, r.stderr)
	}
}

// SSH cannot leave the sandbox; GitHub's SSH remotes keep working because
// the agent's git rewrites them to HTTPS, through the proxy.
func TestSandboxSSHRemotes(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	g := newGitRepo(t)
	up := newUpstream(t, g.root)
	// A listener standing in for an SSH server on this machine.
	ssh, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ssh.Close()
	reached := make(chan struct{}, 1)
	go func() {
		if c, err := ssh.Accept(); err == nil {
			reached <- struct{}{}
			c.Close()
		}
	}()
	args := append([]string{"run", "--policy", absPath(t, examplePolicy)}, up.args()...)
	r := runTF(t, home, g.env, append(args, "--", "git", "ls-remote", "git@github.com:acme/app.git")...)
	if r.code != 0 || !strings.Contains(r.stdout, "refs/heads/main") {
		t.Errorf("git ls-remote of a GitHub SSH remote: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, port, _ := net.SplitHostPort(ssh.Addr().String())
	r = runTF(t, home, append(g.env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes -o ConnectTimeout=3"), append(args, "--", "sh", "-c",
		"git ls-remote ssh://git@127.0.0.1:"+port+"/acme/app.git; curl -sS -m 3 --noproxy '*' telnet://127.0.0.1:"+port+" </dev/null")...)
	if r.code == 0 {
		t.Errorf("an SSH remote outside GitHub was reached:\n%s%s", r.stdout, r.stderr)
	}
	select {
	case <-reached:
		t.Error("a connection reached the SSH listener from inside the sandbox")
	case <-time.After(100 * time.Millisecond):
	}
}

// Signals reach the sandboxed agent: SIGINT as a terminal sends it, to the
// whole foreground process group (bubblewrap must not end the sandbox
// before the agent has handled it); SIGTERM and SIGHUP sent to tf alone,
// which passes them on. The agent's exit code comes back.
func TestSandboxSignalsAndExitCode(t *testing.T) {
	requireSandbox(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		home, shared := t.TempDir(), t.TempDir()
		p := startTF(t, t.TempDir(), home, nil, "run", "--policy", absPath(t, examplePolicy), "--rw", shared, "--", "sh", "-c",
			`trap 'echo got > `+shared+`/sig; exit 7' `+strings.TrimPrefix(unix.SignalName(sig), "SIG")+`; touch `+shared+`/up; while :; do sleep 0.05; done`)
		waitFile(t, p, filepath.Join(shared, "up"))
		target := p.cmd.Process.Pid
		if sig == syscall.SIGINT {
			target = -target // startTF makes tf the leader of its group
		}
		if err := syscall.Kill(target, sig); err != nil {
			t.Fatal(err)
		}
		r := p.wait(t)
		if b, _ := os.ReadFile(filepath.Join(shared, "sig")); r.code != 7 || string(b) != "got\n" {
			t.Errorf("%v: exit %d, agent saw %q\n%s", sig, r.code, b, r.stderr)
		}
	}
}

// On a terminal, the agent reads and writes it as before, but it is not
// the agent's controlling terminal: TIOCSTI, which would type commands
// into the operator's shell after tf exits, fails.
func TestSandboxTerminal(t *testing.T) {
	requireSandbox(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatal("script (util-linux) is needed to give tf a terminal")
	}
	home := t.TempDir()
	inner := tfBin + " run --policy " + absPath(t, examplePolicy) + ` -- python3 -c '
import fcntl, os, sys, termios
print("tty" if os.isatty(0) and os.isatty(1) else "no-tty")
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
    print("tiocsti-worked")
except OSError as e:
    print("tiocsti-refused")
'`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qec", inner, "/dev/null")
	cmd.Env = append(os.Environ(), "TF_HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "tty") || strings.Contains(string(out), "no-tty") {
		t.Errorf("the agent has no terminal:\n%s", out)
	}
	if !strings.Contains(string(out), "tiocsti-refused") {
		t.Errorf("TIOCSTI from inside the sandbox:\n%s", out)
	}
}
