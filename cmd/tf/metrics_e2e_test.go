//go:build linux

package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tameflare/tf/metrics/metricstest"
)

// freeAddr is a loopback address nothing listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// /metrics is on the host's loopback: the host scrapes it while the
// sandboxed agent, in its own network namespace, can neither connect to
// it directly nor reach it through the proxy.
func TestMetricsUnreachableFromSandbox(t *testing.T) {
	requireSandbox(t)
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	shared := t.TempDir()
	addr := freeAddr(t)
	script := `
curl -sS -m 5 -o /dev/null -w '%{http_code}' https://api.github.com/repos/acme/app > ` + shared + `/governed
curl -sS -m 3 --noproxy '*' http://` + addr + `/metrics > ` + shared + `/direct 2>&1; echo $? > ` + shared + `/direct.code
curl -sS -m 3 http://` + addr + `/metrics > ` + shared + `/proxied 2>&1; echo $? > ` + shared + `/proxied.code
touch ` + shared + `/ready
while [ ! -e ` + shared + `/go ]; do sleep 0.05; done
`
	args := append([]string{"run", "--name", "metered", "--policy", absPath(t, examplePolicy), "--rw", shared, "--metrics", addr}, up.args()...)
	p := startTF(t, t.TempDir(), home, nil, append(args, "--", "bash", "-c", script)...)
	waitFile(t, p, filepath.Join(shared, "ready"))

	m, err := metricstest.Scrape("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("the host cannot scrape /metrics: %v", err)
	}
	if n := m.Counter("tf_decisions_total", metricstest.Labels{"connector": "github"}); n != 1 {
		t.Errorf("tf_decisions_total{connector=github} = %v, want 1 (the agent's one request)", n)
	}
	if v, ok := m.Gauge("tf_gateway_info", metricstest.Labels{"gateway": "metered"}); !ok || v != 1 {
		t.Errorf("tf_gateway_info: %v", m["tf_gateway_info"])
	}
	os.WriteFile(filepath.Join(shared, "go"), nil, 0o644)
	r := p.wait(t)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "tf: metrics on http://"+addr+"/metrics") {
		t.Errorf("tf run does not say where metrics are:\n%s", r.stderr)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(shared, name))
		return strings.TrimSpace(string(b))
	}
	if g := read("governed"); g != "200" {
		t.Errorf("the governed request: %q", g)
	}
	if code := read("direct.code"); code == "0" || code == "" || strings.Contains(read("direct"), "tf_decisions_total") {
		t.Errorf("the agent reached /metrics directly (curl exit %q):\n%s", code, read("direct"))
	}
	if strings.Contains(read("proxied"), "tf_decisions_total") {
		t.Errorf("the agent reached /metrics through the proxy:\n%s", read("proxied"))
	}
	t.Logf("direct: exit %s (%s); proxied: %s", read("direct.code"), read("direct"), read("proxied"))
}

// tf gateway start passes --metrics to the gateway it starts; a
// non-loopback address is refused with the reason.
func TestMetricsGatewayStartAndBadAddress(t *testing.T) {
	home := t.TempDir()
	addr := freeAddr(t)
	r := runTF(t, home, nil, "gateway", "start", "scraped", "--policy", examplePolicy, "--metrics", addr)
	if r.code != 0 {
		t.Fatalf("gateway start: exit %d\n%s", r.code, r.stderr)
	}
	t.Cleanup(func() { runTF(t, home, nil, "gateway", "stop", "scraped") })
	m, err := metricstest.Scrape("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Gauge("tf_gateway_info", metricstest.Labels{"gateway": "scraped"}); !ok {
		t.Errorf("no tf_gateway_info for the started gateway")
	}
	st := runTF(t, home, nil, "status")
	if !strings.Contains(st.stdout+st.stderr, "http://"+addr+"/metrics") {
		t.Errorf("tf status does not say where metrics are:\n%s%s", st.stdout, st.stderr)
	}

	r = runTF(t, t.TempDir(), nil, "run", "--isolate=off", "--policy", examplePolicy, "--metrics", "0.0.0.0:9464", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "not loopback") || !strings.Contains(r.stderr, "no authentication") {
		t.Errorf("--metrics 0.0.0.0:9464: exit %d\n%s", r.code, r.stderr)
	}
}
