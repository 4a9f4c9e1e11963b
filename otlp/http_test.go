package otlp

import (
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tameflare/tf/audit"
)

// answering is an OTLP/HTTP endpoint whose answer the test chooses per
// request; it records every request's time, header and decoded body.
type answering struct {
	mu     sync.Mutex
	times  []time.Time
	header []http.Header
	recs   int
	answer func(n int, w http.ResponseWriter) // n counts requests from 0
	srv    *httptest.Server
}

func newAnswering(t *testing.T, tlsServer bool, answer func(n int, w http.ResponseWriter)) *answering {
	a := &answering{answer: answer}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		var req collogpb.ExportLogsServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		n := len(a.times)
		a.times = append(a.times, time.Now())
		a.header = append(a.header, r.Header.Clone())
		a.mu.Unlock()
		a.answer(n, w)
		a.mu.Lock()
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				a.recs += len(sl.LogRecords)
			}
		}
		a.mu.Unlock()
	})
	a.srv = httptest.NewUnstartedServer(h)
	// Refused handshakes are what some tests are about.
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsServer {
		a.srv.StartTLS()
	} else {
		a.srv.Start()
	}
	t.Cleanup(a.srv.Close)
	return a
}

func (a *answering) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.times)
}

func ok(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&collogpb.ExportLogsServiceResponse{})
	w.Write(b)
}

// shipN writes n decisions and ships them with opts (Home and Warn set
// here), returning the shipper and its warnings.
func shipN(t *testing.T, n int, opts Options) (*Shipper, *warnings) {
	t.Helper()
	home := t.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Append(testCtx(t), decision(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	warn := &warnings{}
	opts.Home, opts.Gateway, opts.Warn = home, "laptop", warn.add
	if opts.FlushInterval == 0 {
		opts.FlushInterval = 10 * time.Millisecond
	}
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	}
	if opts.Config.Headers == nil {
		opts.Config.Headers = map[string]string{"Authorization": "Bearer " + secret}
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, warn
}

// A refusal names the status line and the collector's message (a
// google.rpc.Status or text, bounded), in the status file, tf status and
// the warning, without the header's value even when the collector
// repeats it; shipping resumes when the collector takes the batch.
func TestRefusalsNameTheStatusAndMessage(t *testing.T) {
	long := strings.Repeat("very long explanation ", 500)
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   string
	}{
		{"rpc status", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusBadRequest)
			b, _ := proto.Marshal(&spb.Status{Code: 3, Message: "tenant unknown for Bearer " + secret})
			w.Write(b)
		}, "the collector answered 400 Bad Request: tenant unknown for [redacted]"},
		{"text", func(w http.ResponseWriter) {
			http.Error(w, "upstream down", http.StatusBadGateway)
		}, "the collector answered 502 Bad Gateway: upstream down"},
		{"empty", func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) }, "the collector answered 500 Internal Server Error"},
		{"long", func(w http.ResponseWriter) { http.Error(w, long, http.StatusForbidden) }, "the collector answered 403 Forbidden: very long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAnswering(t, false, func(n int, w http.ResponseWriter) {
				if n < 3 {
					tc.answer(w)
					return
				}
				ok(w)
			})
			s, warn := shipN(t, 10, Options{Config: Config{Endpoint: a.srv.URL}, RetryMax: time.Second})
			waitFor(t, "a warning", 10*time.Second, func() bool { return len(warn.all()) > 0 })
			st, err := ReadStatus(s.opts.Home, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(st.Error, tc.want) || !strings.Contains(warn.all()[0], tc.want) || !strings.Contains(s.Status().Error, tc.want) {
				t.Fatalf("status file %q, tf status %q, warning %q: want %q", st.Error, s.Status().Error, warn.all()[0], tc.want)
			}
			if len(st.Error) > 400 {
				t.Errorf("the error is not bounded: %d bytes", len(st.Error))
			}
			waitFor(t, "the cursor at the end", 10*time.Second, func() bool { return s.Status().Acked == 10 })
			waitFor(t, "the resumed note", 5*time.Second, func() bool { w := warn.all(); return strings.Contains(w[len(w)-1], "resumed") })
			checkNoSecret(t, s.opts.Home, warn.all())
			if strings.Contains(s.Status().Error, secret) {
				t.Fatal("tf status holds the header value")
			}
		})
	}
}

// 429 and 503 with Retry-After: the shipper waits as long as asked, but
// no longer than RetryMax.
func TestRetryAfterIsHonouredWithinRetryMax(t *testing.T) {
	for _, tc := range []struct {
		status     int
		retryAfter func() string
		retryMax   time.Duration
		atLeast    time.Duration
	}{
		{http.StatusTooManyRequests, func() string { return "1" }, 5 * time.Second, time.Second},
		// A date has whole seconds: now+3s is at least 2s away.
		{http.StatusServiceUnavailable, func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }, 5 * time.Second, 2 * time.Second},
		// An hour is bounded by RetryMax (the wait below is far shorter).
		{http.StatusServiceUnavailable, func() string { return "3600" }, 200 * time.Millisecond, 0},
	} {
		a := newAnswering(t, false, func(n int, w http.ResponseWriter) {
			if n == 0 {
				w.Header().Set("Retry-After", tc.retryAfter())
				http.Error(w, "slow down", tc.status)
				return
			}
			ok(w)
		})
		s, _ := shipN(t, 5, Options{Config: Config{Endpoint: a.srv.URL}, RetryMin: 10 * time.Millisecond, RetryMax: tc.retryMax})
		waitFor(t, "the batch taken", 10*time.Second, func() bool { return s.Status().Acked == 5 })
		a.mu.Lock()
		gap := a.times[1].Sub(a.times[0])
		a.mu.Unlock()
		if gap < tc.atLeast {
			t.Errorf("%d Retry-After: retried after %s, want at least %s", tc.status, gap, tc.atLeast)
		}
		s.Close()
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":               0,
		"0":              0,
		"-3":             0,
		"7":              7 * time.Second,
		"99999999999999": 24 * time.Hour,
		"soon":           0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

// A partial success is said once and not retried: the cursor moves on.
func TestPartialSuccessIsReportedNotRetried(t *testing.T) {
	a := newAnswering(t, false, func(n int, w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collogpb.ExportLogsServiceResponse{PartialSuccess: &collogpb.ExportLogsPartialSuccess{
			RejectedLogRecords: 3, ErrorMessage: "3 records too large"}})
		w.Write(b)
	})
	s, warn := shipN(t, 20, Options{Config: Config{Endpoint: a.srv.URL}})
	waitFor(t, "the cursor at the end", 10*time.Second, func() bool { return s.Status().Acked == 20 })
	time.Sleep(100 * time.Millisecond)
	a.mu.Lock()
	recs := a.recs
	a.mu.Unlock()
	if recs != 20 {
		t.Errorf("the collector received %d records, want 20 (none sent again)", recs)
	}
	w := warn.all()
	if len(w) != 1 || !strings.Contains(w[0], "refused part of a batch: OTLP partial success: 3 records too large (3 log records rejected)") {
		t.Fatalf("warnings %q", w)
	}
	if st := s.Status(); st.Error != "" {
		t.Errorf("status error %q after a partial success", st.Error)
	}
}

// gzip, the configured headers and the content type reach the collector.
func TestGzipAndHeaders(t *testing.T) {
	a := newAnswering(t, false, func(n int, w http.ResponseWriter) { ok(w) })
	s, warn := shipN(t, 50, Options{Config: Config{Endpoint: a.srv.URL, Compression: CompressionGzip,
		Headers: map[string]string{"Authorization": "Bearer " + secret, "X-Tenant": "team1"}}})
	waitFor(t, "the cursor at the end", 10*time.Second, func() bool { return s.Status().Acked == 50 })
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.recs != 50 {
		t.Fatalf("received %d records, want 50", a.recs)
	}
	for _, h := range a.header {
		if h.Get("Content-Encoding") != "gzip" || h.Get("Content-Type") != "application/x-protobuf" ||
			h.Get("Authorization") != "Bearer "+secret || h.Get("X-Tenant") != "team1" || !strings.HasPrefix(h.Get("User-Agent"), "tf/") {
			t.Errorf("request header %v", h)
		}
	}
	checkNoSecret(t, s.opts.Home, warn.all())
}

// writePEM writes PEM blocks to a file of the test.
func writePEM(t *testing.T, name, typ string, der ...[]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	var b []byte
	for _, d := range der {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// An https collector is trusted through Config.Certificate, and a client
// certificate is presented when one is configured.
func TestTLSCertificates(t *testing.T) {
	a := newAnswering(t, true, func(n int, w http.ResponseWriter) { ok(w) })
	ca := writePEM(t, "ca.pem", "CERTIFICATE", a.srv.Certificate().Raw)

	// Without the CA the system's roots refuse it: a clear error.
	s, warn := shipN(t, 3, Options{Config: Config{Endpoint: a.srv.URL}})
	waitFor(t, "a warning", 10*time.Second, func() bool { return len(warn.all()) > 0 })
	if st := s.Status(); !strings.Contains(st.Error, "certificate") {
		t.Errorf("without the CA: %q", st.Error)
	}
	s.Close()

	s, _ = shipN(t, 3, Options{Config: Config{Endpoint: a.srv.URL, Certificate: ca}})
	waitFor(t, "the cursor at the end", 10*time.Second, func() bool { return s.Status().Acked == 3 })
	s.Close()

	// Mutual TLS: the server requires a client certificate.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "tf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := writePEM(t, "client.pem", "CERTIFICATE", der)
	clientKey := writePEM(t, "client-key.pem", "PRIVATE KEY", keyDER)
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	m := newAnswering(t, false, func(n int, w http.ResponseWriter) { ok(w) })
	m.srv.Close()
	m.srv = httptest.NewUnstartedServer(m.srv.Config.Handler)
	m.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	m.srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	m.srv.StartTLS()
	defer m.srv.Close()
	mca := writePEM(t, "mca.pem", "CERTIFICATE", m.srv.Certificate().Raw)
	s, _ = shipN(t, 4, Options{Config: Config{Endpoint: m.srv.URL, Certificate: mca, ClientCertificate: clientCert, ClientKey: clientKey}})
	waitFor(t, "the cursor at the end with mutual TLS", 10*time.Second, func() bool { return s.Status().Acked == 4 })
	s.Close()
	s, warn = shipN(t, 4, Options{Config: Config{Endpoint: m.srv.URL, Certificate: mca}})
	waitFor(t, "a warning without the client certificate", 10*time.Second, func() bool { return len(warn.all()) > 0 })
	if s.Status().Acked != 0 {
		t.Error("shipped without the client certificate")
	}
}

// The exporter's standard variables beyond the endpoint and headers still
// work: compression, timeout and certificates, the LOGS ones first.
func TestResolveCompressionTimeoutCertificates(t *testing.T) {
	env := map[string]string{
		EnvCompression:           "none",
		EnvLogsCompression:       "gzip",
		EnvTimeout:               "2500",
		EnvCertificate:           "/etc/ca.pem",
		EnvLogsCertificate:       "/etc/logs-ca.pem",
		EnvClientCertificate:     "/etc/client.pem",
		EnvLogsClientKey:         "/etc/client-key.pem",
		EnvLogsClientCertificate: "",
	}
	c, err := Resolve(Config{Endpoint: "https://c:4318", Timeout: time.Second, Compression: "none"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Compression != "gzip" || c.Timeout != 2500*time.Millisecond || c.Certificate != "/etc/logs-ca.pem" ||
		c.ClientCertificate != "/etc/client.pem" || c.ClientKey != "/etc/client-key.pem" {
		t.Fatalf("resolved %+v", c)
	}
	env[EnvLogsTimeout] = "soon"
	if _, err := Resolve(Config{}, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvLogsTimeout) {
		t.Fatalf("bad timeout: %v", err)
	}
	// The timeout bounds an export: a collector slower than it fails.
	a := newAnswering(t, false, func(n int, w http.ResponseWriter) { time.Sleep(300 * time.Millisecond); ok(w) })
	s, warn := shipN(t, 2, Options{Config: Config{Endpoint: a.srv.URL, Timeout: 100 * time.Millisecond}})
	waitFor(t, "a warning", 10*time.Second, func() bool { return len(warn.all()) > 0 })
	if !strings.Contains(warn.all()[0], "did not answer within 100ms") {
		t.Fatalf("warning %q", warn.all()[0])
	}
	s.Close()
}

// Settings that cannot work are refused at start, naming what is wrong.
func TestBadTransportConfiguration(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate "+secret), 0o600)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Endpoint: "http://c:4318", Compression: "zstd"}, `compression "zstd" is not supported`},
		{Config{Endpoint: "http://c:4318", Certificate: notPEM}, "needs https://"},
		{Config{Endpoint: "https://c:4318", Certificate: filepath.Join(dir, "missing.pem")}, "missing.pem"},
		{Config{Endpoint: "https://c:4318", Certificate: notPEM}, "holds no PEM certificate"},
		{Config{Endpoint: "https://c:4318", ClientCertificate: notPEM}, "needs both a certificate and a key"},
		{Config{Endpoint: "https://c:4318", ClientCertificate: notPEM, ClientKey: notPEM}, "OTLP client certificate"},
	} {
		refusedAtStart(t, tc.cfg, tc.want)
	}
}
