package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/testdata"
)

// tfBin is the tf binary built once for the end-to-end tests.
var tfBin string

func TestMain(m *testing.M) {
	if os.Getenv("TF_E2E_CHILD") != "" {
		os.Exit(e2eChild())
	}
	dir, err := os.MkdirTemp("", "tf-e2e-")
	if err != nil {
		panic(err)
	}
	tfBin = filepath.Join(dir, "tf")
	out, err := exec.Command("go", "build", "-o", tfBin, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// upstream is a local TLS server standing in for api.github.com and
// github.com: a fake REST API and a real git http-backend.
type upstream struct {
	srv    *httptest.Server
	caFile string
	hits   atomic.Int64
	mu     sync.Mutex
	paths  []string
	auth   map[string]string // "host path" → the Authorization it carried
}

func newUpstream(t *testing.T, gitRoot string) *upstream {
	t.Helper()
	u := &upstream{auth: map[string]string{}}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + gitRoot, "GIT_HTTP_EXPORT_ALL=1"},
	}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.paths = append(u.paths, r.Method+" "+r.Host+r.URL.RequestURI())
		u.auth[r.Host+" "+r.URL.Path] = r.Header.Get("Authorization")
		u.mu.Unlock()
		if r.URL.Path == "/redirect-me" {
			http.Redirect(w, r, "https://other.example.test/landing", http.StatusFound)
			return
		}
		if strings.HasPrefix(r.Host, "github.com") {
			backend.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"full_name":"acme/app","served_by":"fake-github"}` + "\n"))
	}))
	cert, caPEM, err := testdata.ServerCert("api.github.com", "github.com", "uploads.github.com", "registry.npmjs.org", "other.example.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	u.caFile = filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(u.caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "https://") }

// args returns the tf run flags that route GitHub's hosts to u.
func (u *upstream) args() []string {
	return []string{"--upstream", "api.github.com=" + u.addr(), "--upstream", "github.com=" + u.addr(),
		"--upstream", "registry.npmjs.org=" + u.addr(), "--upstream", "other.example.test=" + u.addr(), "--upstream-ca", u.caFile}
}

type result struct {
	stdout, stderr string
	code           int
}

// runTF runs the tf binary with TF_HOME set to home, bounded in time.
func runTF(t *testing.T, home string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tfBin, args...)
	cmd.Env = append(append(os.Environ(), "TF_HOME="+home), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("tf %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// decisions reads the decision records of the audit log in home.
func decisions(t *testing.T, home string) []*audit.Record {
	t.Helper()
	var recs []*audit.Record
	err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (u *upstream) authFor(hostPath string) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	a, ok := u.auth[hostPath]
	return a, ok
}
