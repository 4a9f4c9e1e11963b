package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logpb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// testCtx is bounded by the test deadline so that no test can hang.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	d := 2 * time.Minute
	if tt, ok := t.(*testing.T); ok {
		if dl, ok := tt.Deadline(); ok {
			d = time.Until(dl) - 5*time.Second
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// decision is the i-th decision record of a test log.
func decision(i int) *audit.Record {
	eff := []rules.Effect{rules.Allow, rules.Deny, rules.RequireApproval}[i%3]
	return &audit.Record{
		Kind:      audit.KindDecision,
		RequestID: fmt.Sprintf("req-%05d", i),
		Gateway:   "laptop",
		Action: &rules.Action{
			Type: "github.repo.push", Connector: "github",
			Resource: map[string]string{"owner": "acme", "repo": "app"},
			Params:   map[string]any{"branch": fmt.Sprintf("b-%d", i)},
			Request:  rules.Request{Method: "POST", Host: "github.com", Path: "/acme/app.git/git-receive-pack"},
		},
		Decision: &rules.Decision{Effect: eff, Rule: "rule-" + string(eff), Reason: "because",
			Matched: []rules.Match{{Rule: "rule-" + string(eff), Decision: eff}}, Revision: "abc123"},
	}
}

// appendN appends n decisions, each followed by its outcome.
func appendN(t testing.TB, l *audit.Log, from, n int) {
	t.Helper()
	ctx := testCtx(t)
	for i := from; i < from+n; i++ {
		if err := l.Append(ctx, decision(i)); err != nil {
			t.Fatal(err)
		}
		out := &audit.Record{Kind: audit.KindOutcome, RequestID: fmt.Sprintf("req-%05d", i), Gateway: "laptop", Status: 200, DurationMS: 3}
		if err := l.Append(ctx, out); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeCollector is an OTLP/HTTP endpoint that decodes what it receives;
// fail, when set, answers instead of accepting.
type fakeCollector struct {
	mu      sync.Mutex
	reqs    []*collogpb.ExportLogsServiceRequest
	headers []http.Header
	fail    func(w http.ResponseWriter) bool
	srv     *httptest.Server
}

func newFakeCollector(t *testing.T) *fakeCollector {
	f := &fakeCollector{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		fail := f.fail
		f.mu.Unlock()
		if fail != nil && fail(w) {
			return
		}
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var req collogpb.ExportLogsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, &req)
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collogpb.ExportLogsServiceResponse{})
		w.Write(b)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCollector) setFail(fn func(w http.ResponseWriter) bool) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

// received lists every log record received, with its resource.
func (f *fakeCollector) received() (recs []*logpb.LogRecord, res []*logpb.ResourceLogs) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, req := range f.reqs {
		for _, rl := range req.ResourceLogs {
			res = append(res, rl)
			for _, sl := range rl.ScopeLogs {
				recs = append(recs, sl.LogRecords...)
			}
		}
	}
	return recs, res
}

func attrMap(kvs []*commonpb.KeyValue) map[string]*commonpb.AnyValue {
	m := map[string]*commonpb.AnyValue{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readLog returns the log's records, in order.
func readLog(t *testing.T, home string) []*audit.Record {
	t.Helper()
	var recs []*audit.Record
	if err := audit.Scan(audit.Dir(home), audit.Filter{}, func(r *audit.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) add(m string) { w.mu.Lock(); w.msgs = append(w.msgs, m); w.mu.Unlock() }
func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

const secret = "s3cr3t-t0ken-value-9f8e7d"

func startShipper(t *testing.T, home, endpoint string, warn *warnings) *Shipper {
	t.Helper()
	s, err := Start(Options{
		Home: home, Gateway: "laptop",
		Config:        Config{Endpoint: endpoint, Headers: map[string]string{"Authorization": "Bearer " + secret}},
		Warn:          warn.add,
		FlushInterval: 20 * time.Millisecond,
		ExportTimeout: 500 * time.Millisecond,
		RetryMin:      20 * time.Millisecond,
		RetryMax:      100 * time.Millisecond,
		DrainTimeout:  time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestShipsEveryRecordWithItsFields(t *testing.T) {
	home := t.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 50)
	if err := l.Event(testCtx(t), "laptop", audit.EventKillSwitchActivated, map[string]any{"by": "ops"}); err != nil {
		t.Fatal(err)
	}
	fc := newFakeCollector(t)
	var warn warnings
	s := startShipper(t, home, fc.srv.URL, &warn)
	defer s.Close()
	waitFor(t, "101 records", 10*time.Second, func() bool { r, _ := fc.received(); return len(r) >= 101 })
	want := readLog(t, home)
	waitFor(t, "the cursor at the end", 5*time.Second, func() bool { return s.Status().Acked == want[len(want)-1].Seq })
	got, res := fc.received()
	// Batches in flight together may arrive in either order; each record
	// carries its seq.
	sort.SliceStable(got, func(i, j int) bool {
		return attrMap(got[i].Attributes)[AttrSeq].GetIntValue() < attrMap(got[j].Attributes)[AttrSeq].GetIntValue()
	})
	if len(got) != len(want) {
		t.Fatalf("received %d records, the log has %d", len(got), len(want))
	}
	for i, lr := range got {
		w := want[i]
		if body := lr.Body.GetStringValue(); body != string(w.Line) {
			t.Fatalf("record %d: body is not the stored line:\n got %s\nwant %s", i, body, w.Line)
		}
		if lr.TimeUnixNano != uint64(w.Time.UnixNano()) {
			t.Errorf("record %d: time %d, want %d", i, lr.TimeUnixNano, w.Time.UnixNano())
		}
		a := attrMap(lr.Attributes)
		if a[AttrKind].GetStringValue() != string(w.Kind) || a[AttrSeq].GetIntValue() != int64(w.Seq) || a[AttrHash].GetStringValue() != w.Hash {
			t.Errorf("record %d: kind/seq/hash attributes %v", i, lr.Attributes)
		}
		if a[AttrGateway].GetStringValue() != w.Gateway || a[AttrRequestID].GetStringValue() != w.RequestID {
			t.Errorf("record %d: gateway/request_id attributes %v", i, lr.Attributes)
		}
		switch w.Kind {
		case audit.KindDecision:
			if a[AttrActionType].GetStringValue() != "github.repo.push" || a[AttrConnector].GetStringValue() != "github" ||
				a[AttrDecision].GetStringValue() != string(w.Decision.Effect) || a[AttrRule].GetStringValue() != w.Decision.Rule ||
				a[AttrTarget].GetStringValue() != "acme/app" || a[AttrRevision].GetStringValue() != "abc123" {
				t.Errorf("record %d: decision attributes %v", i, lr.Attributes)
			}
			wantSev := logpb.SeverityNumber_SEVERITY_NUMBER_WARN
			if w.Decision.Effect == rules.Allow {
				wantSev = logpb.SeverityNumber_SEVERITY_NUMBER_INFO
			}
			if lr.SeverityNumber != wantSev {
				t.Errorf("record %d: severity %v, want %v", i, lr.SeverityNumber, wantSev)
			}
		case audit.KindOutcome:
			if a[AttrStatus].GetIntValue() != 200 || a[AttrDurationMS].GetIntValue() != 3 {
				t.Errorf("record %d: outcome attributes %v", i, lr.Attributes)
			}
		case audit.KindEvent:
			if a[AttrEvent].GetStringValue() != audit.EventKillSwitchActivated {
				t.Errorf("record %d: event attributes %v", i, lr.Attributes)
			}
		}
		if lr.EventName != "tf.audit."+string(w.Kind) {
			t.Errorf("record %d: event name %q", i, lr.EventName)
		}
	}
	host, _ := os.Hostname()
	for _, rl := range res {
		ra := attrMap(rl.Resource.Attributes)
		if ra["service.name"].GetStringValue() != "tf" || ra["service.version"].GetStringValue() == "" ||
			ra["host.name"].GetStringValue() != host || ra["user.name"].GetStringValue() == "" || ra[AttrGateway].GetStringValue() != "laptop" {
			t.Errorf("resource attributes %v", rl.Resource.Attributes)
		}
		for _, sl := range rl.ScopeLogs {
			if sl.Scope.GetName() != ScopeName {
				t.Errorf("scope %q", sl.Scope.GetName())
			}
		}
	}
	fc.mu.Lock()
	for _, h := range fc.headers {
		if h.Get("Authorization") != "Bearer "+secret {
			t.Errorf("Authorization header %q not sent", h.Get("Authorization"))
		}
	}
	fc.mu.Unlock()
	c, err := ReadCursor(home)
	if err != nil || c.Seq != want[len(want)-1].Seq || c.Hash != want[len(want)-1].Hash {
		t.Fatalf("cursor %+v, %v; want seq %d", c, err, want[len(want)-1].Seq)
	}
	if len(warn.all()) != 0 {
		t.Errorf("warnings on a healthy collector: %q", warn.all())
	}
}

// A collector that fails or hangs stops nothing: the log keeps every
// record, the shipper warns once, and on recovery everything arrives.
func TestOutageWarnsOnceAndResumes(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(w http.ResponseWriter) bool
		want string
	}{
		{"503", func(w http.ResponseWriter) bool {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return true
		}, "503"},
		{"400", func(w http.ResponseWriter) bool { http.Error(w, "no such tenant", http.StatusBadRequest); return true }, "400 Bad Request"},
		{"hang", func(w http.ResponseWriter) bool { time.Sleep(time.Second); return true }, "did not answer within 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fc := newFakeCollector(t)
			fc.setFail(tc.fail)
			var warn warnings
			s := startShipper(t, home, fc.srv.URL, &warn)
			defer s.Close()
			appendN(t, l, 0, 20)
			waitFor(t, "a warning", 10*time.Second, func() bool { return len(warn.all()) > 0 })
			time.Sleep(600 * time.Millisecond) // several more failed attempts
			if n, _ := s.Lag(); n != 40 {
				t.Errorf("lag %d records during the outage, want 40", n)
			}
			st := s.Status()
			if !strings.Contains(st.Error, tc.want) {
				t.Errorf("status error %q, want it to mention %q", st.Error, tc.want)
			}
			fromFile, err := ReadStatus(home, time.Now())
			if err != nil || !strings.Contains(fromFile.Error, tc.want) || fromFile.Behind != 40 {
				t.Errorf("status file %+v, %v", fromFile, err)
			}
			if w := warn.all(); len(w) != 1 || !strings.Contains(w[0], tc.want) {
				t.Fatalf("want one warning naming %q, got %q", tc.want, w)
			}
			appendN(t, l, 20, 5)
			fc.setFail(nil)
			waitFor(t, "all 50 records", 10*time.Second, func() bool { r, _ := fc.received(); return len(r) >= 50 })
			waitFor(t, "lag 0", 5*time.Second, func() bool { n, _ := s.Lag(); return n == 0 })
			if w := warn.all(); len(w) != 2 || !strings.Contains(w[1], "resumed") {
				t.Errorf("want a warning and a resumed note, got %q", w)
			}
			checkNoSecret(t, home, warn.all())
			got, _ := fc.received()
			seen := map[int64]bool{}
			for _, r := range got {
				seen[attrMap(r.Attributes)[AttrSeq].GetIntValue()] = true
			}
			for seq := int64(1); seq <= 50; seq++ {
				if !seen[seq] {
					t.Fatalf("seq %d never arrived", seq)
				}
			}
		})
	}
}

// checkNoSecret searches the warnings and every file the shipper wrote
// for the header value.
func checkNoSecret(t *testing.T, home string, warns []string) {
	t.Helper()
	for _, w := range warns {
		if strings.Contains(w, secret) {
			t.Fatalf("a warning holds the header value: %s", w)
		}
	}
	filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the header value", p)
			}
		}
		return nil
	})
}

// A restart resumes from the cursor: nothing acknowledged is sent again.
func TestRestartResumesFromTheCursor(t *testing.T) {
	home := t.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fc := newFakeCollector(t)
	var warn warnings
	appendN(t, l, 0, 10)
	s := startShipper(t, home, fc.srv.URL, &warn)
	waitFor(t, "20 records", 10*time.Second, func() bool { r, _ := fc.received(); return len(r) >= 20 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10, 10)
	s = startShipper(t, home, fc.srv.URL, &warn)
	defer s.Close()
	waitFor(t, "40 records", 10*time.Second, func() bool { r, _ := fc.received(); return len(r) >= 40 })
	time.Sleep(100 * time.Millisecond)
	got, _ := fc.received()
	if len(got) != 40 {
		t.Fatalf("received %d records, want 40 (no record sent twice after a clean stop)", len(got))
	}
}

// Close ships what the log holds before it returns (within the drain
// timeout), so a short tf run leaves nothing behind.
func TestCloseDrains(t *testing.T) {
	home := t.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeCollector(t)
	var warn warnings
	s := startShipper(t, home, fc.srv.URL, &warn)
	appendN(t, l, 0, 30)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := fc.received(); len(got) != 60 {
		t.Fatalf("after Close the collector has %d records, want 60", len(got))
	}
}

// Two shippers of one $TF_HOME: one ships, the other stands by, and no
// record goes twice.
func TestOneShipperPerHome(t *testing.T) {
	home := t.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fc := newFakeCollector(t)
	var warn warnings
	a := startShipper(t, home, fc.srv.URL, &warn)
	defer a.Close()
	waitFor(t, "the first to ship", 5*time.Second, func() bool { return a.Status().State == "shipping" })
	b := startShipper(t, home, fc.srv.URL, &warn)
	defer b.Close()
	appendN(t, l, 0, 25)
	waitFor(t, "50 records", 10*time.Second, func() bool { r, _ := fc.received(); return len(r) >= 50 })
	time.Sleep(300 * time.Millisecond)
	if got, _ := fc.received(); len(got) != 50 {
		t.Fatalf("received %d records, want 50", len(got))
	}
	if st := b.Status().State; !strings.HasPrefix(st, "standby") {
		t.Errorf("second shipper state %q, want standby", st)
	}
	time.Sleep(2100 * time.Millisecond) // a standby retry
	if st, err := ReadStatus(home, time.Now()); err != nil || st.State != "shipping" || st.Acked != 50 {
		t.Errorf("the status file is not the shipping gateway's: %+v, %v", st, err)
	}
}

func TestBadConfiguration(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Endpoint: "localhost:4318"}, "want an http:// or https:// URL"},
		{Config{Endpoint: "http://"}, "has no host"},
		{Config{Endpoint: "http://user:" + secret + "@[::1"}, "is not a URL"},
		{Config{Endpoint: "http://localhost:4317", Protocol: "grpc"}, "grpc is not supported"},
		{Config{Endpoint: "http://localhost:4318", Protocol: "http/json"}, "not supported"},
	} {
		refusedAtStart(t, tc.cfg, tc.want)
	}
}

// refusedAtStart checks that Start refuses cfg with an error containing
// want, says so in the status file, and quotes no secret anywhere.
func refusedAtStart(t *testing.T, cfg Config, want string) {
	t.Helper()
	home := t.TempDir()
	_, err := Start(Options{Home: home, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%+v: error %v, want %q", cfg, err, want)
		return
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error quotes a secret: %v", err)
	}
	if st, serr := ReadStatus(home, time.Now()); serr != nil || !strings.Contains(st.Error, want) {
		t.Errorf("%+v: status %+v, %v", cfg, st, serr)
	}
	checkNoSecret(t, home, nil)
}

func TestResolveFromEnvironment(t *testing.T) {
	env := map[string]string{
		EnvEndpoint: "http://collector:4318",
		EnvHeaders:  "Authorization=Bearer%20abc, X-Tenant = team1",
	}
	c, err := Resolve(Config{Endpoint: "http://file:4318", Headers: map[string]string{"X-Tenant": "file"}}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.LogsURL()
	if err != nil || u.String() != "http://collector:4318/v1/logs" {
		t.Fatalf("logs URL %v, %v", u, err)
	}
	if c.Headers["Authorization"] != "Bearer abc" || c.Headers["X-Tenant"] != "team1" {
		t.Fatalf("headers %v", c.Headers)
	}
	env[EnvLogsEndpoint] = "https://logs.example/custom/path"
	c, _ = Resolve(Config{}, func(k string) string { return env[k] })
	if u, _ := c.LogsURL(); u.String() != "https://logs.example/custom/path" {
		t.Fatalf("logs endpoint %v", u)
	}
	if _, err := Resolve(Config{}, func(k string) string {
		if k == EnvHeaders {
			return "novalue"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
		t.Fatalf("malformed header: %v", err)
	}
	if _, err := ParseHeaders("k=%zz" + secret); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("bad escape: %v", err)
	}
}
