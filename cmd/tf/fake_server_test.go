package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/agent"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/testdata"
)

// The helpers below serve the end-to-end tests of real clients (gh, npm):
// a local TLS server standing in for a public host, and a tf runner that
// isolates the client from the machine's configuration.

// clientRunLimit bounds one tf run of a real client; the test's own
// deadline, when sooner, wins.
const clientRunLimit = 90 * time.Second

// startFakeTLS serves h over TLS with a certificate for hosts, from a CA
// of its own, until the test ends. It returns the listening address and a
// PEM file of that CA, for tf's --upstream and --upstream-ca.
func startFakeTLS(t *testing.T, h http.Handler, hosts ...string) (addr, caFile string) {
	t.Helper()
	cert, caPEM, err := testdata.ServerCert(hosts...)
	if err != nil {
		t.Fatalf("issuing the fake's certificate: %v", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "fake-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(srv.URL, "https://"), caFile
}

// upstreamArgs maps each host to addr and trusts caFile, as tf run flags.
func upstreamArgs(addr, caFile string, hosts ...string) []string {
	var args []string
	for _, h := range hosts {
		args = append(args, "--upstream", h+"="+addr)
	}
	return append(args, "--upstream-ca", caFile)
}

// clientEnv returns the variables that keep a client away from the real
// home directory, its caches and configuration: HOME, TMPDIR and the XDG
// directories all point into the test's temporary directory. gh caches
// API answers under TMPDIR, npm reads ~/.npmrc, git reads ~/.gitconfig.
func clientEnv(t *testing.T) []string {
	t.Helper()
	root := t.TempDir()
	var env []string
	for _, name := range []string{"HOME", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"} {
		dir := filepath.Join(root, strings.ToLower(name))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		env = append(env, name+"="+dir)
	}
	return append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "NO_COLOR=1")
}

// inheritedClientVars are the prefixes of variables from the test's own
// environment that could steer gh or npm (a GH_HOST, a registry, a token,
// a CI's OIDC endpoint that npm publish would try): they are not passed
// on, so the test sees only what it sets.
var inheritedClientVars = []string{"GH_", "GITHUB_", "NPM_", "NODE_", "ACTIONS_", "GITLAB_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}

// runTFIn runs the tf binary in dir with TF_HOME set to home, and waits
// for it (see startTF).
func runTFIn(t *testing.T, dir, home string, env []string, args ...string) result {
	t.Helper()
	return startTF(t, dir, home, env, args...).wait(t)
}

// tfProc is a tf process started by startTF.
type tfProc struct {
	cmd       *exec.Cmd
	args      []string
	limit     time.Duration
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed when cmd.Wait returns
	err       error
	out, errb bytes.Buffer
}

// startTF starts the tf binary in dir with TF_HOME set to home and env
// added to a copy of the test's environment without inheritedClientVars.
// tf and everything it starts share a process group, killed when the run
// outlives clientRunLimit or the test's deadline, or when the test ends
// with the process still running.
func startTF(t *testing.T, dir, home string, env []string, args ...string) *tfProc {
	t.Helper()
	return startTFWithin(t, clientRunLimit, dir, home, env, args...)
}

// startTFWithin is startTF with a limit of its own.
func startTFWithin(t *testing.T, limit time.Duration, dir, home string, env []string, args ...string) *tfProc {
	t.Helper()
	if d, ok := t.Deadline(); ok {
		if left := time.Until(d) - 5*time.Second; left < limit {
			limit = left
		}
	}
	p := &tfProc{args: args, limit: limit, done: make(chan struct{})}
	p.ctx, p.cancel = context.WithTimeout(context.Background(), limit)
	cmd := exec.CommandContext(p.ctx, tfBin, args...)
	cmd.Dir = dir
	var base []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !hasPrefixFold(name, inheritedClientVars) {
			base = append(base, kv)
		}
	}
	cmd.Env = append(append(base, "TF_HOME="+home), env...)
	agent.SetOwnGroup(cmd)
	cmd.Cancel = func() error { return agent.StopGroup(cmd.Process, true) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout, cmd.Stderr = &p.out, &p.errb
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		p.cancel()
		t.Fatalf("starting tf %v: %v", args, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cancel() // kills the group if it still runs
		<-p.done
	})
	return p
}

// exited reports whether the process has ended.
func (p *tfProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process and returns its output and exit code; a run
// stopped by its time limit fails the test.
func (p *tfProc) wait(t *testing.T) result {
	t.Helper()
	<-p.done
	defer p.cancel()
	if p.ctx.Err() != nil {
		t.Fatalf("tf %v: stopped after %v\nstdout:\n%s\nstderr:\n%s", p.args, p.limit, p.out.String(), p.errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		code = ee.ExitCode()
	} else if p.err != nil {
		t.Fatalf("tf %v: %v", p.args, p.err)
	}
	return result{p.out.String(), p.errb.String(), code}
}

// absPath makes a path relative to the package directory usable from the
// client's working directory.
func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func hasPrefixFold(name string, prefixes []string) bool {
	up := strings.ToUpper(name)
	for _, p := range prefixes {
		if strings.HasPrefix(up, p) {
			return true
		}
	}
	return false
}

// outcomeStatuses maps each request ID of the audit log in home to the
// HTTP status its outcome record gives.
func outcomeStatuses(t *testing.T, home string) map[string]int {
	t.Helper()
	st := map[string]int{}
	err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindOutcome}, func(r *audit.Record) error {
		st[r.RequestID] = r.Status
		return nil
	})
	if err != nil {
		t.Fatalf("reading outcomes: %v", err)
	}
	return st
}

// recordsOf returns the decision records whose action type is typ.
func recordsOf(recs []*audit.Record, typ string) []*audit.Record {
	var out []*audit.Record
	for _, r := range recs {
		if r.Action != nil && r.Action.Type == typ {
			out = append(out, r)
		}
	}
	return out
}
