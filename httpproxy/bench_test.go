package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
)

// benchGovernor allows everything after a token amount of work, like a
// connector lookup and a rule match.
type benchGovernor struct{ hosts map[string]bool }

func (g benchGovernor) Govern(ctx context.Context, r *connectors.Request) Verdict {
	host := strings.ToLower(r.HTTP.URL.Hostname())
	return Verdict{Allow: g.hosts[host] && strings.HasPrefix(r.HTTP.URL.Path, "/")}
}

func (benchGovernor) GovernTunnel(context.Context, string, int) Verdict { return Verdict{} }

type benchClients struct {
	direct, proxied *http.Client
	get             func(*http.Client) error
}

// newBenchClients starts a small-body TLS upstream and an intercepting
// proxy in front of it, with a client for each path, both warmed up.
func newBenchClients(b *testing.B) benchClients {
	body := []byte("small response body\n")
	up := newTLSUpstream(b, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	tp := startProxy(b, Config{
		Governor:  benchGovernor{hosts: map[string]bool{apiHost: true}},
		Upstreams: map[string]string{apiHost: up.addr()},
		RootCAs:   up.roots,
	})
	direct := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, up.addr())
		},
		TLSClientConfig:     &tls.Config{RootCAs: up.roots},
		MaxIdleConnsPerHost: 64,
	}}
	b.Cleanup(direct.CloseIdleConnections)
	url := "https://" + apiHost + "/bench"
	bc := benchClients{direct: direct, proxied: tp.client(b), get: func(c *http.Client) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = &statusError{resp.StatusCode}
		}
		return err
	}}
	for _, c := range []*http.Client{bc.direct, bc.proxied} {
		if err := bc.get(c); err != nil { // connections, leaf
			b.Fatal(err)
		}
	}
	return bc
}

// BenchmarkProxyCoreStub compares keep-alive GETs against the same local
// TLS upstream directly and through the intercepting proxy, with 1 and 16
// concurrent clients. It reports the median latency and requests per
// second. It measures the proxy core only: a stub governor (no
// connectors, rules or audit log), client and proxy in one process. The
// path users run is measured by gateway.BenchmarkRealPath.
func BenchmarkProxyCoreStub(b *testing.B) {
	bc := newBenchClients(b)
	for _, mode := range []struct {
		name   string
		client *http.Client
	}{{"direct", bc.direct}, {"proxy", bc.proxied}} {
		b.Run(mode.name+"/clients=1", func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if err := bc.get(mode.client); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "median-ns")
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		})
		b.Run(mode.name+"/clients=16", func(b *testing.B) {
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((16 + procs - 1) / procs)
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.get(mode.client); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkProxyCoreStubInterleaved alternates short rounds of direct and
// proxied traffic (16 clients, and 1 client for latency), so that both
// paths see the same background load of a shared machine; it reports the
// throughput ratio and the median latency added by the proxy core (stub
// governor, one process; see BenchmarkProxyCoreStub).
func BenchmarkProxyCoreStubInterleaved(b *testing.B) {
	bc := newBenchClients(b)
	const clients, perClient = 16, 25
	var directTime, proxyTime time.Duration
	var directLat, proxyLat []time.Duration
	burst := func(c *http.Client) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perClient {
					if err := bc.get(c); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	single := func(c *http.Client, lat *[]time.Duration) {
		for range 50 {
			t0 := time.Now()
			if err := bc.get(c); err != nil {
				b.Fatal(err)
			}
			*lat = append(*lat, time.Since(t0))
		}
	}
	for b.Loop() {
		directTime += burst(bc.direct)
		proxyTime += burst(bc.proxied)
		single(bc.direct, &directLat)
		single(bc.proxied, &proxyLat)
	}
	n := float64(b.N * clients * perClient)
	slices.Sort(directLat)
	slices.Sort(proxyLat)
	dMed, pMed := directLat[len(directLat)/2], proxyLat[len(proxyLat)/2]
	b.ReportMetric(n/directTime.Seconds(), "direct-req/s")
	b.ReportMetric(n/proxyTime.Seconds(), "proxy-req/s")
	b.ReportMetric(100*directTime.Seconds()/proxyTime.Seconds(), "throughput-%")
	b.ReportMetric(float64(dMed.Microseconds()), "direct-median-µs")
	b.ReportMetric(float64(pMed.Microseconds()), "proxy-median-µs")
	b.ReportMetric(float64((pMed - dMed).Microseconds()), "added-median-µs")
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + strconv.Itoa(e.code) }

// BenchmarkIdleTunnels holds 1,000 intercepted keep-alive connections open
// (each has served one request) and reports the growth of resident memory
// and of the Go heap. Client and proxy share the process, so the figures
// cover both ends. Run with -benchtime=1x.
func BenchmarkIdleTunnels(b *testing.B) {
	const n = 1000
	up := newTLSUpstream(b, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	tp := startProxy(b, Config{
		Governor:  benchGovernor{hosts: map[string]bool{apiHost: true}},
		Upstreams: map[string]string{apiHost: up.addr()},
		RootCAs:   up.roots,
	})
	for b.Loop() {
		runtime.GC()
		rss0, heap0 := vmRSS(b), heapInuse()
		conns := make([]net.Conn, 0, n)
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				tc, br := tp.dialTunnel(b, apiHost+":443")
				io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				tc.NetConn().SetDeadline(time.Time{})
				mu.Lock()
				conns = append(conns, tc)
				mu.Unlock()
			}()
		}
		wg.Wait()
		time.Sleep(200 * time.Millisecond) // let the servers settle into idle reads
		runtime.GC()
		rss1, heap1 := vmRSS(b), heapInuse()
		b.ReportMetric(float64(len(conns)), "conns")
		b.ReportMetric(float64(rss1-rss0)/(1<<20), "rss-MB")
		b.ReportMetric(float64(int64(heap1)-int64(heap0))/(1<<20), "heap-MB")
		b.ReportMetric(float64(rss1-rss0)/float64(len(conns))/1024, "rss-KB/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}

func vmRSS(tb testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
