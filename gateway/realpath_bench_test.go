package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

// The test binary doubles as the load generator of BenchmarkRealPath and
// as the MCP server of BenchmarkMCPWrapToolCall (see TestMain).
const (
	loadgenEnv   = "TF_BENCH_LOADGEN"    // JSON-free: "target proxy|- cas clients duration"
	mcpEchoEnv   = "TF_BENCH_MCP_ECHO"   // answer every JSON-RPC line at once
	benchHomeEnv = "TF_BENCH_HOME"       // parent directory for TF_HOME (default: the test temp dir)
	benchSyncEnv = "TF_BENCH_AUDIT_SYNC" // group (default) or always
	benchDurEnv  = "TF_BENCH_ROUND"      // duration of one measured round (default 2s)
)

// benchChild runs the child modes; it reports whether it was one.
func benchChild() (int, bool) {
	if spec := os.Getenv(loadgenEnv); spec != "" {
		return loadgen(spec), true
	}
	if os.Getenv(mcpEchoEnv) != "" {
		echoJSONRPC(os.Stdin, os.Stdout)
		return 0, true
	}
	return 0, false
}

// loadgen runs keep-alive GETs from `clients` goroutines for a duration
// (after a short warm-up) and prints "rps p50_us ok errors".
func loadgen(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 6 {
		fmt.Fprintln(os.Stderr, "loadgen: bad spec")
		return 2
	}
	target, proxy, dial, cas := f[0], f[1], f[2], strings.Split(f[3], ",")
	clients, _ := strconv.Atoi(f[4])
	dur, _ := time.ParseDuration(f[5])
	roots := x509.NewCertPool()
	for _, ca := range cas {
		pem, err := os.ReadFile(ca)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "loadgen: CA", ca, err)
			return 2
		}
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: clients, DisableCompression: true}
	if proxy != "-" {
		pu, err := url.Parse(proxy)
		if err != nil {
			return 2
		}
		tr.Proxy = http.ProxyURL(pu)
	} else {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dial)
		}
	}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func() error {
		res, err := c.Get(target)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err == nil && res.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		return err
	}
	run := func(d time.Duration, record bool) ([]time.Duration, int) {
		var mu sync.Mutex
		var all []time.Duration
		errs := 0
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lat []time.Duration
				e := 0
				for time.Now().Before(end) {
					t0 := time.Now()
					if err := get(); err != nil {
						e++
						continue
					}
					lat = append(lat, time.Since(t0))
				}
				mu.Lock()
				all = append(all, lat...)
				errs += e
				mu.Unlock()
			}()
		}
		wg.Wait()
		return all, errs
	}
	run(300*time.Millisecond, false)
	start := time.Now()
	lat, errs := run(dur, true)
	elapsed := time.Since(start)
	if len(lat) == 0 {
		fmt.Println("0 0 0", errs)
		return 1
	}
	slices.Sort(lat)
	fmt.Printf("%.0f %d %d %d\n", float64(len(lat))/elapsed.Seconds(), lat[len(lat)/2].Microseconds(), len(lat), errs)
	return 0
}

type loadResult struct {
	rps   float64
	p50us float64
}

func runLoadgen(b *testing.B, target, proxy, dial string, cas []string, clients int, d time.Duration) loadResult {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %s %d %s", loadgenEnv, target, proxy, dial, strings.Join(cas, ","), clients, d))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("load generator: %v", err)
	}
	var r loadResult
	var ok, errs int
	if _, err := fmt.Sscan(string(out), &r.rps, &r.p50us, &ok, &errs); err != nil || errs > 0 {
		b.Fatalf("load generator said %q (%v)", out, err)
	}
	return r
}

// BenchmarkRealPath measures the path a user runs: a gateway with the
// default connectors, the built-in example policy and its audit log in a
// TF_HOME on the machine's disk (TF_BENCH_HOME picks the parent directory;
// the file system is logged), in front of a local TLS upstream that offers
// HTTP/2, driven by a load generator in another process (this test binary
// re-executed). Each iteration runs, interleaved, direct and proxied
// rounds of 1 client (median latency) and 16 clients (throughput) of
// keep-alive GETs of api.github.com/repos/acme/app (github.repo.get,
// allowed by the policy, one decision and one outcome record each).
// TF_BENCH_AUDIT_SYNC=always measures the audit log with sync: always.
// Run: go test ./gateway -run '^$' -bench RealPath -benchtime 2x
func BenchmarkRealPath(b *testing.B) {
	round := 2 * time.Second
	if s := os.Getenv(benchDurEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		round = d
	}
	parent := os.Getenv(benchHomeEnv)
	if parent == "" {
		parent = b.TempDir()
	}
	home, err := os.MkdirTemp(parent, "tf-bench-home-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(home) })
	cert, upCA, err := testdata.ServerCert("api.github.com")
	if err != nil {
		b.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":1,"name":"app","full_name":"acme/app"}`)
	}))
	up.EnableHTTP2 = true
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	b.Cleanup(up.Close)
	upAddr := strings.TrimPrefix(up.URL, "https://")
	p, err := rules.LoadFS(testdata.ExamplePolicy(), "(built-in example)")
	if err != nil {
		b.Fatal(err)
	}
	g, err := Start(Config{Name: "bench", Home: home, Policy: p,
		Upstreams:   map[string]string{"api.github.com": upAddr},
		UpstreamCAs: [][]byte{upCA}, AuditSync: audit.SyncMode(os.Getenv(benchSyncEnv))})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	upCAFile, gwCAFile := filepath.Join(home, "up-ca.pem"), filepath.Join(home, "gw-ca.pem")
	if err := errors.Join(os.WriteFile(upCAFile, upCA, 0o600), os.WriteFile(gwCAFile, g.CA().CertPEM(), 0o600)); err != nil {
		b.Fatal(err)
	}
	b.Logf("TF_HOME %s on %s, audit sync %q, rounds of %v", home, fsType(home), os.Getenv(benchSyncEnv), round)
	target := "https://api.github.com/repos/acme/app"
	var d1, p1, d16, p16 []loadResult
	for b.Loop() {
		d1 = append(d1, runLoadgen(b, target, "-", upAddr, []string{upCAFile}, 1, round))
		p1 = append(p1, runLoadgen(b, target, g.ProxyURL(), "-", []string{upCAFile, gwCAFile}, 1, round))
		p16 = append(p16, runLoadgen(b, target, g.ProxyURL(), "-", []string{upCAFile, gwCAFile}, 16, round))
		d16 = append(d16, runLoadgen(b, target, "-", upAddr, []string{upCAFile}, 16, round))
	}
	mean := func(rs []loadResult, f func(loadResult) float64) float64 {
		s := 0.0
		for _, r := range rs {
			s += f(r)
		}
		return s / float64(len(rs))
	}
	p50 := func(r loadResult) float64 { return r.p50us }
	rps := func(r loadResult) float64 { return r.rps }
	b.ReportMetric(mean(d1, p50), "direct-c1-p50-µs")
	b.ReportMetric(mean(p1, p50), "proxy-c1-p50-µs")
	b.ReportMetric(mean(p1, p50)-mean(d1, p50), "added-c1-p50-µs")
	b.ReportMetric(mean(d16, rps), "direct-c16-req/s")
	b.ReportMetric(mean(p16, rps), "proxy-c16-req/s")
	b.ReportMetric(100*mean(p16, rps)/mean(d16, rps), "c16-share-%")
}

// echoJSONRPC answers every request line with an empty tool result.
func echoJSONRPC(in io.Reader, out io.Writer) {
	br := bufio.NewReader(in)
	w := bufio.NewWriter(out)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		i := strings.Index(line, `"id":`)
		if i < 0 {
			continue
		}
		j := strings.IndexByte(line[i:], ',')
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"ok"}]}}`+"\n", line[i+5:i+j])
		if br.Buffered() == 0 {
			w.Flush()
		}
	}
	w.Flush()
}

const mcpBenchPolicy = `version: 1
default: deny
rules:
  - {name: files, actions: [mcp.docs.write_file], decision: allow}
`

// BenchmarkMCPWrapToolCall measures what tf mcp wrap adds to a tool call:
// one call at a time to an MCP server process (this test binary
// re-executed), first directly over its stdio, then through the relay of
// a gateway with its audit log in a TF_HOME on disk (TF_BENCH_HOME,
// TF_BENCH_AUDIT_SYNC as for BenchmarkRealPath). Each call is decided
// and recorded (decision and outcome). Reports the median of each and the
// difference.
func BenchmarkMCPWrapToolCall(b *testing.B) {
	parent := os.Getenv(benchHomeEnv)
	if parent == "" {
		parent = b.TempDir()
	}
	home, err := os.MkdirTemp(parent, "tf-bench-home-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(home) })
	p, err := rules.LoadFS(fstestPolicy(mcpBenchPolicy), "p")
	if err != nil {
		b.Fatal(err)
	}
	g, err := Start(Config{Name: "bench-mcp", Home: home, Policy: p, AuditSync: audit.SyncMode(os.Getenv(benchSyncEnv))})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	b.Logf("TF_HOME %s on %s, audit sync %q", home, fsType(home), os.Getenv(benchSyncEnv))
	argv := []string{os.Args[0], "-test.run=^$", "-test.bench=^$"}
	env := append(os.Environ(), mcpEchoEnv+"=1")
	const calls = 2000

	// Direct: the client talks to the server's stdio.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	sin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	sout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	direct := callLoop(b, sin, bufio.NewReader(sout), calls)
	sin.Close()
	cmd.Wait()

	// Through tf mcp wrap's relay, the same server command.
	cin, cw := io.Pipe()
	cr, cout := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := mcp.Wrap(context.Background(), mcp.WrapOptions{
			Server: "docs", Governor: g.MCPGovernor("docs"), Argv: argv, Env: env,
			Stdin: cin, Stdout: cout, Stderr: os.Stderr,
		})
		cout.Close()
		done <- err
	}()
	var wrapped []time.Duration
	for b.Loop() {
		wrapped = append(wrapped, callLoop(b, cw, bufio.NewReader(cr), calls)...)
	}
	cw.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	dm, wm := median(direct), median(wrapped)
	b.ReportMetric(float64(dm.Microseconds()), "direct-median-µs")
	b.ReportMetric(float64(wm.Microseconds()), "wrapped-median-µs")
	b.ReportMetric(float64((wm - dm).Microseconds()), "added-median-µs")
}

func callLoop(b *testing.B, w io.Writer, r *bufio.Reader, n int) []time.Duration {
	lat := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		if _, err := fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/tmp/a","content":"x"}}}`+"\n", i+1); err != nil {
			b.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if !strings.Contains(line, `"result"`) {
			b.Fatalf("call %d: %s", i, line)
		}
		lat = append(lat, time.Since(t0))
	}
	return lat
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
