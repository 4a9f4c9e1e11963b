package audit

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// otlpLine wraps audit lines as one line of a collector file exporter's
// OTLP JSON, with a foreign scope beside tf's.
func otlpLine(t testing.TB, lines ...[]byte) []byte {
	t.Helper()
	type rec struct {
		Body map[string]string `json:"body"`
	}
	var recs []rec
	for _, l := range lines {
		recs = append(recs, rec{Body: map[string]string{"stringValue": string(l)}})
	}
	v := map[string]any{"resourceLogs": []any{map[string]any{
		"resource": map[string]any{"attributes": []any{map[string]any{"key": "host.name", "value": map[string]any{"stringValue": "ci-7"}}}},
		"scopeLogs": []any{
			map[string]any{"scope": map[string]any{"name": "other"}, "logRecords": []any{map[string]any{"body": map[string]any{"stringValue": "not ours"}}}},
			map[string]any{"scope": map[string]any{"name": OTLPScope}, "logRecords": recs},
		},
	}}}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// machineLog writes a log of n decisions for one machine, with times
// starting at start and a step apart.
func machineLog(t testing.TB, gateway string, start time.Time, step time.Duration, n int) (string, []*Record) {
	t.Helper()
	dir := t.TempDir()
	i := 0
	l := openLog(t, dir, Options{Gateway: gateway, Now: func() time.Time { i++; return start.Add(time.Duration(i) * step) }})
	for j := 0; j < n; j++ {
		r := decision(j)
		r.Gateway = gateway
		r.Time = time.Time{}
		if err := l.Append(testCtx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var recs []*Record
	if err := Scan(dir, Filter{}, func(r *Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return dir, recs
}

// Two machines' logs and a collector export (holding some of the same
// records again, gzip'd, out of order) merge in time order, each record
// once.
func TestScanSourcesMergesAndDeduplicates(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	dirA, a := machineLog(t, "laptop-a", t0, 2*time.Second, 30)
	dirB, b := machineLog(t, "ci-b", t0.Add(time.Second), 2*time.Second, 30)
	// The export holds B's records in shipping batches, with a batch
	// sent twice and the batches out of order, gzip'd, and named .json.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	batches := [][]*Record{b[10:20], b[0:10], b[10:20], b[20:]}
	for _, batch := range batches {
		var lines [][]byte
		for _, r := range batch {
			lines = append(lines, r.Line)
		}
		zw.Write(otlpLine(t, lines...))
		zw.Write([]byte("\n"))
	}
	zw.Close()
	exp := filepath.Join(t.TempDir(), "export.json")
	if err := os.WriteFile(exp, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []*Record
	err := ScanSources(testCtx(t), []string{dirA, exp, dirB}, Filter{}, func(r *Record) error {
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(a)+len(b) {
		t.Fatalf("got %d records, want %d (each once)", len(got), len(a)+len(b))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Fatalf("record %d (%s %s) comes before record %d (%s %s)", i, got[i].Gateway, got[i].Time, i-1, got[i-1].Gateway, got[i-1].Time)
		}
	}
	if got[0].Gateway != "laptop-a" || got[1].Gateway != "ci-b" {
		t.Errorf("first records from %s, %s; want the machines interleaved", got[0].Gateway, got[1].Gateway)
	}

	// A filter applies to every source; a $TF_HOME works as a source.
	home := filepath.Dir(dirA)
	if err := os.Rename(dirA, Dir(home)); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = ScanSources(testCtx(t), []string{home, exp}, Filter{Gateway: "ci-b"}, func(r *Record) error {
		if r.Gateway != "ci-b" {
			t.Errorf("filter let %s through", r.Gateway)
		}
		n++
		return nil
	})
	if err != nil || n != len(b) {
		t.Fatalf("filtered: %d records, %v; want %d", n, err, len(b))
	}
}

func TestReadExportErrors(t *testing.T) {
	_, recs := machineLog(t, "gw", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), time.Second, 2)
	good := otlpLine(t, recs[0].Line)
	tampered := bytes.Replace(recs[1].Line, []byte(`"gw"`), []byte(`"gx"`), 1)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"not json", string(good) + "\n{oops\n", "x.json:2: not an OTLP JSON export or audit record"},
		{"no resourceLogs", "{}\n", "x.json:1: not an OTLP JSON logs export"},
		{"tampered body", string(good) + "\n" + string(otlpLine(t, tampered)) + "\n", "x.json:2: resourceLogs[0].scopeLogs[1].logRecords[0]: hash does not match"},
		{"body not a string", `{"resourceLogs":[{"scopeLogs":[{"scope":{"name":"` + OTLPScope + `"},"logRecords":[{"body":{"intValue":"3"}}]}]}]}`, "the body is not a string"},
		{"tampered audit line", string(recs[0].Line) + "\n" + string(tampered) + "\n", "x.json:2: hash does not match"},
		{"truncated gzip", "\x1f\x8b\x08\x00", "x.json:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ReadExport(strings.NewReader(tc.data), "x.json", func(*Record) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// Audit lines as a segment holds them are read too, and so are
	// blank lines and CRLF endings.
	n := 0
	data := "\r\n" + string(recs[0].Line) + "\r\n" + string(good) + "\n"
	if err := ReadExport(strings.NewReader(data), "x", func(*Record) error { n++; return nil }); err != nil || n != 2 {
		t.Fatalf("%d records, %v", n, err)
	}
	if err := ScanSources(testCtx(t), []string{t.TempDir()}, Filter{}, func(*Record) error { return nil }); err == nil || !strings.Contains(err.Error(), "not an audit log directory") {
		t.Fatalf("empty directory: %v", err)
	}
	if err := ScanSources(testCtx(t), []string{filepath.Join(t.TempDir(), "missing")}, Filter{}, func(*Record) error { return nil }); err == nil {
		t.Fatal("a missing source is not an error")
	}
}

func FuzzReadExport(f *testing.F) {
	_, recs := machineLog(f, "gw", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), time.Second, 2)
	f.Add(otlpLine(f, recs[0].Line, recs[1].Line))
	f.Add(recs[0].Line)
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"scope":{"name":"` + OTLPScope + `"},"logRecords":[{"body":{}}]}]}]}`))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ReadExport(bytes.NewReader(data), "fuzz", func(r *Record) error {
			if r.Seq == 0 || len(r.Line) == 0 {
				t.Fatalf("accepted a record without seq or line: %+v", r)
			}
			return nil
		})
	})
}

func BenchmarkReadExport(b *testing.B) {
	_, recs := machineLog(b, "gw", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), time.Second, 512)
	var lines [][]byte
	for _, r := range recs {
		lines = append(lines, r.Line)
	}
	data := append(otlpLine(b, lines...), '\n')
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := ReadExport(bytes.NewReader(data), "b", func(*Record) error { n++; return nil }); err != nil || n != 512 {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*512), "ns/record")
	_ = fmt.Sprint()
}
