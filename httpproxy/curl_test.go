package httpproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
)

// TestCurlThroughProxy drives the real curl binary through the proxy: it
// trusts only the proxy's CA file and reaches a fake host name mapped with
// Upstreams (no --resolve).
func TestCurlThroughProxy(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is required for this test: %v", err)
	}
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b)+" "+r.Header.Get("Proxy-Authorization"))
	}))
	plain := newPlainUpstream(t, echoHandler())
	_, port, _ := net.SplitHostPort(plain.addr())
	gov := newStubGovernor()
	gov.decide = func(r *connectors.Request) Verdict {
		if r.HTTP.URL.Path == "/forbidden" {
			return Verdict{Refusal: &Response{Status: 403, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"denied":true}`)}}
		}
		return Verdict{Allow: true}
	}
	tp := startProxy(t, Config{
		Governor:  gov,
		Upstreams: map[string]string{apiHost: up.addr(), "plain.example.test": plain.addr()},
		RootCAs:   up.roots,
	})
	home := t.TempDir()
	run := func(token string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		base := []string{"-q", "-sS", "--max-time", "15", "-w", " %{http_code}",
			"--proxy", "http://" + ProxyUser + ":" + token + "@" + tp.addr,
			"--cacert", tp.ca.CertPath()}
		cmd := exec.CommandContext(ctx, curl, append(base, args...)...)
		// No proxy variables or curlrc from the real environment.
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	for _, c := range []struct {
		name  string
		token string
		args  []string
		want  string
	}{
		{"https post", testToken, []string{"-d", "payload", "https://" + apiHost + "/repos"}, "POST /repos payload  200"},
		{"https refused", testToken, []string{"https://" + apiHost + "/forbidden"}, `{"denied":true} 403`},
		{"plain http", testToken, []string{"http://plain.example.test/x"}, "GET /x 200"},
		{"wrong token", "nope", []string{"http://plain.example.test/x"}, "407"},
		// Loopback written as an IPv4-compatible, a NAT64 and a 6to4
		// IPv6 address is loopback.
		{"ipv4-compatible loopback", testToken, []string{"-g", "http://[::127.0.0.1]:" + port + "/x"}, "403"},
		{"nat64 loopback", testToken, []string{"-g", "http://[64:ff9b::7f00:1]:" + port + "/x"}, "403"},
		{"6to4 loopback", testToken, []string{"-g", "http://[2002:7f00:1::1]:" + port + "/x"}, "403"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(c.token, c.args...)
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			if !strings.HasSuffix(strings.TrimSpace(out), c.want) {
				t.Errorf("curl printed %q, want suffix %q", out, c.want)
			}
		})
	}
	t.Run("https wrong token", func(t *testing.T) {
		out, err := run("nope", "https://"+apiHost+"/repos")
		if err == nil || !strings.Contains(out, "407") {
			t.Errorf("curl: %v %q", err, out)
		}
	})
	if up.hits.Load() != 1 {
		t.Errorf("TLS upstream hits %d, want 1", up.hits.Load())
	}
}
