package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

// killChildEnv makes the test binary a gateway process that runs until it
// is killed (see TestSIGKILLUnderLoad).
const killChildEnv = "TF_GATEWAY_KILL_CHILD"

func TestMain(m *testing.M) {
	if home := os.Getenv(killChildEnv); home != "" {
		os.Exit(killChild(home))
	}
	if code, ok := benchChild(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

const killPolicy = `version: 1
default: deny
rules:
  - name: reads
    actions: [http.get]
    decision: allow
`

// killChild starts a gateway on home with killPolicy and the upstream
// named in the environment, prints its proxy URL and waits to be killed.
func killChild(home string) int {
	p, err := loadPolicy(killPolicy)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	caPEM, err := os.ReadFile(os.Getenv("TF_KILL_UPSTREAM_CA"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, err := Start(Config{Name: "kill", Home: home, Policy: p,
		Upstreams:   map[string]string{"example.test": os.Getenv("TF_KILL_UPSTREAM")},
		UpstreamCAs: [][]byte{caPEM}, AuditSync: audit.SyncMode(os.Getenv("TF_KILL_SYNC"))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := os.WriteFile(filepath.Join(home, "kill-ca.pem"), g.CA().CertPEM(), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println(g.ProxyURL())
	select {}
}

// TestSIGKILLUnderLoad kills a gateway process with SIGKILL while 16
// clients send requests through it (allowed reads, refused writes), three
// times on one TF_HOME, in each durability mode. Every request a client
// saw answered has its decision record, and the log verifies after the
// next start has repaired what the kill left.
func TestSIGKILLUnderLoad(t *testing.T) {
	for _, mode := range []audit.SyncMode{audit.SyncGroup, audit.SyncAlways} {
		t.Run(string(mode), func(t *testing.T) { testSIGKILL(t, mode) })
	}
}

func testSIGKILL(t *testing.T, mode audit.SyncMode) {
	cert, caPEM, err := testdata.ServerCert("example.test")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	upCA := filepath.Join(t.TempDir(), "up.pem")
	if err := os.WriteFile(upCA, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	answered := map[string]int{} // path -> status
	for round := range 3 {
		got := killRound(t, home, mode, strings.TrimPrefix(up.URL, "https://"), upCA, round)
		for p, s := range got {
			answered[p] = s
		}
		dir := audit.Dir(home)
		// The next start repairs the tail; then the chain must verify.
		l, err := audit.Open(dir, audit.Options{})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		rep, err := audit.Verify(dir)
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: verify after restart: %+v, %v", round, rep, err)
		}
		recorded := map[string]string{}
		if err := audit.Scan(dir, audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
			recorded[r.Action.Request.Path] = string(r.Decision.Effect)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var allowed, refused int
		for p, s := range answered {
			eff, ok := recorded[p]
			if !ok {
				t.Fatalf("round %d: %s was answered %d but has no decision record", round, p, s)
			}
			if (s == http.StatusOK) != (eff == "allow") {
				t.Fatalf("round %d: %s answered %d, recorded %s", round, p, s, eff)
			}
			if s == http.StatusOK {
				allowed++
			} else {
				refused++
			}
		}
		if allowed == 0 || refused == 0 {
			t.Fatalf("round %d: %d allowed and %d refused answers: the load did not mix both", round, allowed, refused)
		}
		t.Logf("round %d: %d answers so far (%d allowed, %d refused), %d decisions, verify notes %v", round, len(answered), allowed, refused, len(recorded), rep.Notes)
	}
}

// killRound starts the gateway process, runs 16 clients through it until
// they have 300 answers, kills it, and returns every answer seen.
func killRound(t *testing.T, home string, mode audit.SyncMode, upAddr, upCA string, round int) map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+home, "TF_KILL_UPSTREAM="+upAddr,
		"TF_KILL_UPSTREAM_CA="+upCA, "TF_KILL_SYNC="+string(mode))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("gateway process did not start: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(home, "kill-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := testdata.ProxyTransport(strings.TrimSpace(line), caPEM)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	var mu sync.Mutex
	answers := map[string]int{}
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				path := fmt.Sprintf("/r%d/c%d/%d", round, c, i)
				method := http.MethodGet
				if i%3 == 2 {
					method = http.MethodPost // refused by the default
				}
				req, _ := http.NewRequestWithContext(ctx, method, "https://example.test"+path, strings.NewReader("x"))
				res, err := client.Do(req)
				if err != nil {
					return // the gateway is gone
				}
				_, err = io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil {
					return // cut mid-body: not an answer
				}
				mu.Lock()
				answers[path] = res.StatusCode
				if len(answers) >= 300 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatal("no 300 answers within a minute")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("gateway process was not killed: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for p, s := range answers {
		if s != http.StatusOK && s != http.StatusForbidden {
			t.Fatalf("%s answered %d", p, s)
		}
	}
	return answers
}

func loadPolicy(src string) (*rules.Policy, error) {
	return rules.LoadFS(fstestPolicy(src), "p")
}

func fstestPolicy(src string) fstest.MapFS {
	return fstest.MapFS{"tameflare.yaml": {Data: []byte(src)}}
}
