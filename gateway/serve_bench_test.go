package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/agents"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

// BenchmarkServeAgents compares a shared gateway (tf serve) whose 100
// agents each send with their own token against a gateway of one session
// (tf run) whose clients share its token, on the same path as
// BenchmarkRealPath (default connectors, the built-in example policy, the
// audit log on disk, a local TLS upstream): keep-alive GETs of
// api.github.com/repos/acme/app through an intercepted tunnel per client,
// one client at a time (median latency) and 100 at once (throughput).
// The load runs in this process, the same for both gateways. Rounds last
// TF_BENCH_ROUND (default 1s).
// Run: go test ./gateway -run '^$' -bench ServeAgents -benchtime 3x
func BenchmarkServeAgents(b *testing.B) {
	const nAgents = 100
	round := time.Second
	if s := os.Getenv(benchDurEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		round = d
	}
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
	start := func(name string, shared bool) (*Gateway, string) {
		home := b.TempDir()
		g, err := Start(Config{Name: name, Home: home, Policy: p, Agents: shared,
			Upstreams: map[string]string{"api.github.com": upAddr}, UpstreamCAs: [][]byte{upCA}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { g.Close() })
		return g, home
	}
	run, _ := start("run", false)
	serve, serveHome := start("serve", true)
	var serveURLs []string
	for i := range nAgents {
		name := fmt.Sprintf("agent-%03d", i)
		tok, err := agents.Add(serveHome, name, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		serveURLs = append(serveURLs, serve.AgentProxyURL(serve.Addr(), name, tok))
	}
	serve.agents.Reload()
	if serve.agents.Table().Len() != nAgents {
		b.Fatalf("the shared gateway knows %d agents", serve.agents.Table().Len())
	}
	runURLs := slices.Repeat([]string{run.ProxyURL()}, nAgents)

	clients := func(g *Gateway, proxies []string) []*http.Client {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(g.CA().CertPEM())
		var cs []*http.Client
		for _, pu := range proxies {
			u, _ := url.Parse(pu)
			tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: roots}, DisableCompression: true}
			b.Cleanup(tr.CloseIdleConnections)
			cs = append(cs, &http.Client{Transport: tr, Timeout: 30 * time.Second})
		}
		return cs
	}
	runC, serveC := clients(run, runURLs), clients(serve, serveURLs)
	target := "https://api.github.com/repos/acme/app"
	measure := func(cs []*http.Client, d time.Duration) (rps, p50us float64) {
		var mu sync.Mutex
		var all []time.Duration
		var failed error
		var wg sync.WaitGroup
		t0 := time.Now()
		end := t0.Add(d)
		for _, c := range cs {
			wg.Go(func() {
				var lat []time.Duration
				for time.Now().Before(end) {
					s := time.Now()
					res, err := c.Get(target)
					if err == nil {
						_, err = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if err == nil && res.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", res.StatusCode)
						}
					}
					if err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
						return
					}
					lat = append(lat, time.Since(s))
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if failed != nil {
			b.Fatal(failed)
		}
		slices.Sort(all)
		return float64(len(all)) / time.Since(t0).Seconds(), float64(all[len(all)/2].Microseconds())
	}
	// Warm up: every client opens its tunnel once.
	measure(runC, 200*time.Millisecond)
	measure(serveC, 200*time.Millisecond)
	var r1, s1, r100, s100 float64
	n := 0
	for b.Loop() {
		// The order alternates: a round can leave work behind (audit
		// writes, collections) that slows the next.
		first, second := runC, serveC
		fp, sp, fr, sr := &r1, &s1, &r100, &s100
		if n%2 == 1 {
			first, second, fp, sp, fr, sr = serveC, runC, &s1, &r1, &s100, &r100
		}
		_, p := measure(first[:1], round)
		*fp += p
		_, p = measure(second[:1], round)
		*sp += p
		rps, _ := measure(first, round)
		*fr += rps
		rps, _ = measure(second, round)
		*sr += rps
		n++
	}
	f := float64(n)
	b.ReportMetric(r1/f, "run-c1-p50-µs")
	b.ReportMetric(s1/f, "serve-c1-p50-µs")
	b.ReportMetric(r100/f, "run-c100-req/s")
	b.ReportMetric(s100/f, "serve-c100-req/s")
	b.ReportMetric(100*s100/r100, "serve/run-c100-%")
}
