package otlp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/tameflare/tf/audit"
)

// collectorBinary builds testdata/otelcol (a real OpenTelemetry Collector
// with the OTLP receiver and the file exporter) once per source and Go
// version, and caches it in the user's cache directory: a cold build takes
// minutes, a cached one nothing.
func collectorBinary(t testing.TB) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("testdata", "otelcol"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	fmt.Fprint(h, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "tf-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "otelcol-"+hex.EncodeToString(h.Sum(nil))[:16])
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	// Test binaries of several packages may want it at once.
	lk := flock.New(bin + ".lock")
	if err := lk.Lock(); err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	start := time.Now()
	tmp := bin + ".tmp"
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test collector: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the test collector in %s", time.Since(start).Round(time.Second))
	return bin
}

// otelCollector is a running test collector.
type otelCollector struct {
	t    testing.TB
	bin  string
	addr string
	cmd  *exec.Cmd
	out  string // the file exporter's file
	log  bytes.Buffer
	done chan struct{}
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCollector runs the collector on addr, exporting to out, and waits
// until it accepts connections.
func startCollector(t testing.TB, bin, addr, out string) *otelCollector {
	t.Helper()
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
exporters:
  file:
    path: %s
    flush_interval: 50ms
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
`, addr, filepath.ToSlash(out))
	cfgPath := out + ".yaml"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &otelCollector{t: t, bin: bin, addr: addr, out: out, done: make(chan struct{})}
	c.cmd = exec.Command(bin, "--config", cfgPath)
	// The collector runs with the Go runtime's defaults, as a user's
	// does, whatever GC settings the test process was given.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			c.cmd.Env = append(c.cmd.Env, kv)
		}
	}
	c.cmd.Stdout, c.cmd.Stderr = &syncWriter{w: &c.log}, &syncWriter{w: &c.log}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("the collector exited: %s", c.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not listen on %s: %s", addr, c.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the collector as an operator would (SIGTERM, then kill).
func (c *otelCollector) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	if runtime.GOOS == "windows" {
		c.cmd.Process.Kill()
	} else {
		c.cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// The real collector receives every record; stopped mid-run and
// restarted, it loses none, and appending is no slower while it is down.
func TestRealCollectorOutage(t *testing.T) {
	bin := collectorBinary(t)
	home, dir := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	out1, out2 := filepath.Join(dir, "first.jsonl"), filepath.Join(dir, "second.jsonl")
	col := startCollector(t, bin, addr, out1)

	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var warn warnings
	s := startShipper(t, home, "http://"+addr, &warn)
	defer s.Close()

	// timed appends n decisions with outcomes and returns the median
	// time an Append took.
	timed := func(from, n int) time.Duration {
		var ds []time.Duration
		for i := from; i < from+n; i++ {
			st := time.Now()
			appendN(t, l, i, 1)
			ds = append(ds, time.Since(st)/2)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	up := timed(0, 200)
	waitFor(t, "the first 400 records shipped", 20*time.Second, func() bool { return s.Status().Acked == 400 })
	time.Sleep(200 * time.Millisecond) // the file exporter's flush interval

	col.stop()
	down := timed(200, 200)
	waitFor(t, "a warning about the outage", 10*time.Second, func() bool { return len(warn.all()) > 0 })
	if n, _ := s.Lag(); n != 400 {
		t.Errorf("lag %d records while the collector is down, want 400", n)
	}
	st, err := ReadStatus(home, time.Now())
	if err != nil || st.Error == "" || st.Behind != 400 {
		t.Errorf("tf status during the outage: %+v, %v", st, err)
	}
	t.Logf("median Append: %s with the collector up, %s while it is down", up, down)

	startCollector(t, bin, addr, out2)
	appendN(t, l, 400, 50)
	waitFor(t, "everything shipped after the restart", 30*time.Second, func() bool { return s.Status().Acked == 900 })
	time.Sleep(300 * time.Millisecond) // the file exporter's flush interval

	want := readLog(t, home)
	got := map[uint64]*audit.Record{}
	dups := 0
	for _, out := range []string{out1, out2} {
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		err = audit.ReadExport(f, out, func(r *audit.Record) error {
			if got[r.Seq] != nil {
				dups++
			}
			got[r.Seq] = r
			return nil
		})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range want {
		g := got[w.Seq]
		if g == nil {
			t.Fatalf("seq %d (%s) never reached the collector", w.Seq, w.Kind)
		}
		if !bytes.Equal(g.Line, w.Line) {
			t.Fatalf("seq %d: exported body differs from the log line", w.Seq)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("the collector holds %d distinct records, the log %d", len(got), len(want))
	}
	// The chain can be checked from the export alone.
	prev := audit.ZeroHash
	for seq := uint64(1); seq <= uint64(len(want)); seq++ {
		r := got[seq]
		if r.Prev != prev {
			t.Fatalf("seq %d: prev %s, want %s", seq, r.Prev, prev)
		}
		sum := sha256.Sum256(r.Line)
		prev = hex.EncodeToString(sum[:])
	}
	t.Logf("%d records, %d sent twice (at least once)", len(want), dups)
	checkExportFields(t, out1, want)
	if w := warn.all(); len(w) != 2 || !strings.Contains(w[1], "resumed") {
		t.Errorf("want one warning and one resumed note, got %q", w)
	}
}

// checkExportFields reads the file exporter's OTLP JSON as a user's tool
// would and checks the resource, scope and attributes of every record.
func checkExportFields(t *testing.T, path string, want []*audit.Record) {
	t.Helper()
	bySeq := map[int64]*audit.Record{}
	for _, w := range want {
		bySeq[int64(w.Seq)] = w
	}
	type kv struct {
		Key   string `json:"key"`
		Value struct {
			StringValue *string `json:"stringValue"`
			IntValue    *string `json:"intValue"`
			BoolValue   *bool   `json:"boolValue"`
		} `json:"value"`
	}
	str := func(kvs []kv) map[string]string {
		m := map[string]string{}
		for _, a := range kvs {
			switch {
			case a.Value.StringValue != nil:
				m[a.Key] = *a.Value.StringValue
			case a.Value.IntValue != nil:
				m[a.Key] = *a.Value.IntValue
			case a.Value.BoolValue != nil:
				m[a.Key] = fmt.Sprint(*a.Value.BoolValue)
			}
		}
		return m
	}
	type exportLine struct {
		ResourceLogs []struct {
			Resource struct {
				Attributes []kv `json:"attributes"`
			} `json:"resource"`
			ScopeLogs []struct {
				Scope struct {
					Name string `json:"name"`
				} `json:"scope"`
				LogRecords []struct {
					TimeUnixNano   string `json:"timeUnixNano"`
					SeverityNumber int    `json:"severityNumber"`
					SeverityText   string `json:"severityText"`
					EventName      string `json:"eventName"`
					Attributes     []kv   `json:"attributes"`
				} `json:"logRecords"`
			} `json:"scopeLogs"`
		} `json:"resourceLogs"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	n := 0
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		// A fresh value per line: Unmarshal into a used one keeps the
		// value pointers of members a line leaves out.
		var export exportLine
		if err := json.Unmarshal(line, &export); err != nil {
			t.Fatal(err)
		}
		for _, rl := range export.ResourceLogs {
			res := str(rl.Resource.Attributes)
			if res["service.name"] != "tf" || res["service.version"] == "" || res["host.name"] != host || res["user.name"] == "" || res["tf.gateway"] != "laptop" {
				t.Fatalf("resource %v", res)
			}
			for _, sl := range rl.ScopeLogs {
				if sl.Scope.Name != ScopeName {
					t.Fatalf("scope %q", sl.Scope.Name)
				}
				for _, lr := range sl.LogRecords {
					a := str(lr.Attributes)
					var seq int64
					fmt.Sscan(a[AttrSeq], &seq)
					w := bySeq[seq]
					if w == nil {
						t.Fatalf("record with seq %q not in the log", a[AttrSeq])
					}
					n++
					if lr.TimeUnixNano != fmt.Sprint(w.Time.UnixNano()) || lr.EventName != "tf.audit."+string(w.Kind) || lr.SeverityText == "" {
						t.Fatalf("seq %d: time %s, event %q, severity %q", seq, lr.TimeUnixNano, lr.EventName, lr.SeverityText)
					}
					if a[AttrKind] != string(w.Kind) || a[AttrHash] != w.Hash || a[AttrGateway] != w.Gateway || a[AttrRequestID] != w.RequestID {
						t.Fatalf("seq %d: attributes %v", seq, a)
					}
					switch w.Kind {
					case audit.KindDecision:
						if a[AttrActionType] != w.Action.Type || a[AttrConnector] != w.Action.Connector || a[AttrDecision] != string(w.Decision.Effect) ||
							a[AttrRule] != w.Decision.Rule || a[AttrTarget] != "acme/app" || a[AttrMethod] != "POST" || a[AttrHost] != "github.com" {
							t.Fatalf("seq %d: decision attributes %v", seq, a)
						}
					case audit.KindOutcome:
						if a[AttrStatus] != "200" || a[AttrDurationMS] != "3" {
							t.Fatalf("seq %d: outcome attributes %v", seq, a)
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s holds no records", path)
	}
}
