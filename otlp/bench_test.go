package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
)

// BenchmarkAppendWhileShipping is the decision path's view of shipping:
// the time of one audit Append with no shipper, and with a shipper
// following the log and posting to a local endpoint, flat out: the
// shipper then takes as much CPU as the appender, and on a machine of
// two cores the difference is mostly that contention (see the Paced
// variant for a gateway's pace). -count runs off several times, then on;
// to interleave them, run the benchmark several times with -count 1.
func BenchmarkAppendWhileShipping(b *testing.B) {
	offOn(b, func(b *testing.B, l *audit.Log) {
		recs := make([]*audit.Record, 1024)
		for i := range recs {
			recs[i] = decision(i)
		}
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		cpu0 := cpuTime()
		for b.Loop() {
			r := *recs[i%len(recs)]
			r.Time = time.Time{}
			if err := l.Append(ctx, &r); err != nil {
				b.Fatal(err)
			}
			i++
		}
		if cpu := cpuTime() - cpu0; cpu > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	})
}

// offOn runs bench as two sub-benchmarks on a fresh audit log: "off"
// without a shipper, "on" with one following the log and posting to a
// local endpoint that discards what it gets.
func offOn(b *testing.B, bench func(b *testing.B, l *audit.Log)) {
	sink := discardSink(b)
	for _, ship := range []bool{false, true} {
		name := "off"
		if ship {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			home := b.TempDir()
			l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			if ship {
				s, err := Start(Options{Home: home, Gateway: "bench", Config: Config{Endpoint: sink.URL}})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
			}
			bench(b, l)
		})
	}
}

// discardSink is a local endpoint that reads and discards every request.
func discardSink(b *testing.B) *httptest.Server {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(sink.Close)
	return sink
}

// BenchmarkAppendWhileShippingPaced is BenchmarkAppendWhileShipping at
// a gateway's pace rather than flat out: one Append every 200 µs (5,000
// records/s, a busy tf serve's decisions and outcomes), with and without
// a shipper following the log, reporting the median and 90th percentile
// of an Append. Flat out, the shipper and the appender compete for the
// same cores; at a gateway's pace the shipper has room, and the
// difference is what shipping itself costs a decision.
// Run: go test ./otlp -run '^$' -bench AppendWhileShippingPaced -benchtime 5000x -count 5
func BenchmarkAppendWhileShippingPaced(b *testing.B) {
	const pace = 200 * time.Microsecond
	offOn(b, func(b *testing.B, l *audit.Log) {
		ctx := context.Background()
		ds := make([]time.Duration, 0, b.N)
		next := time.Now()
		i := 0
		for b.Loop() {
			next = next.Add(pace)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			r := decision(i)
			r.Time = time.Time{}
			st := time.Now()
			if err := l.Append(ctx, r); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(st))
			i++
		}
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "p50-ns/append")
		b.ReportMetric(float64(ds[len(ds)*9/10].Nanoseconds()), "p90-ns/append")
	})
}

// shipThroughput writes n records, then ships them all to endpoint and
// reports records per second. With the pid of the collector's process, it
// also reports that process's CPU per record. The records are decisions
// (a push, with its rule and matches), the larger kind.
func shipThroughput(b *testing.B, endpoint string, n, collectorPID, inFlight int) {
	shipRecords(b, endpoint, n, collectorPID, inFlight, func(i int) *audit.Record { return decision(i) })
}

// gatewayRecord is record i of a gateway's log: a decision, then its
// outcome, as the gateway writes one of each per request.
func gatewayRecord(i int) *audit.Record {
	if i%2 == 0 {
		return decision(i / 2)
	}
	return &audit.Record{Kind: audit.KindOutcome, RequestID: fmt.Sprintf("req-%05d", i/2), Gateway: "laptop",
		Status: 200, BytesIn: 512, BytesOut: 2048, DurationMS: 3}
}

func shipRecords(b *testing.B, endpoint string, n, collectorPID, inFlight int, record func(int) *audit.Record) {
	b.StopTimer()
	home := b.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	batch := make([]*audit.Record, 0, 500)
	for i := 0; i < n; i++ {
		batch = append(batch, record(i))
		if len(batch) == cap(batch) {
			if err := l.AppendAll(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := l.AppendAll(ctx, batch); err != nil {
		b.Fatal(err)
	}
	l.Close()
	b.StartTimer()
	start, cpu0 := time.Now(), cpuTime()
	var ccpu0 time.Duration
	if collectorPID != 0 {
		ccpu0 = procCPU(collectorPID)
	}
	s, err := Start(Options{Home: home, Gateway: "bench", Config: Config{Endpoint: endpoint}, Concurrency: inFlight})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(5 * time.Minute)
	for s.Shipped() < uint64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("shipped %d of %d records in 5 minutes: %+v", s.Shipped(), n, s.Status())
		}
		time.Sleep(time.Millisecond)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.ReportMetric(float64(n)/el.Seconds(), "records/s")
	if cpu > 0 {
		// The CPU of the whole process: shipper, exporter and the local
		// endpoint (or nothing of the collector, a separate process).
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/record")
	}
	if collectorPID != 0 {
		// The file exporter flushes its last records within its flush
		// interval (50ms).
		time.Sleep(100 * time.Millisecond)
		if ccpu := procCPU(collectorPID) - ccpu0; ccpu > 0 {
			b.ReportMetric(float64(ccpu.Nanoseconds())/float64(n), "collector-cpu-ns/record")
		}
	}
}

// BenchmarkShipThroughput ships 100,000 records to a local endpoint that
// reads and discards the requests (the exporter and shipper alone).
func BenchmarkShipThroughput(b *testing.B) {
	sink := discardSink(b)
	for range b.N {
		shipThroughput(b, sink.URL, benchRecords, 0, 0)
	}
}

// BenchmarkShipToRealCollector ships 100,000 records to the test
// collector (OTLP receiver, file exporter): decisions only, and a
// gateway's log (a decision and its outcome per request).
func BenchmarkShipToRealCollector(b *testing.B) {
	bin := collectorBinary(b)
	addr := freeAddr(b)
	col := startCollector(b, bin, addr, filepath.Join(b.TempDir(), "out.jsonl"))
	b.Run("decisions", func(b *testing.B) {
		for range b.N {
			shipThroughput(b, "http://"+addr, benchRecords, col.cmd.Process.Pid, 0)
		}
	})
	b.Run("gateway-log", func(b *testing.B) {
		for range b.N {
			shipRecords(b, "http://"+addr, benchRecords, col.cmd.Process.Pid, 0, gatewayRecord)
		}
	})
}

// BenchmarkShipInFlight is BenchmarkShipToRealCollector with 1, 2 and 4
// batches in flight, to choose DefaultConcurrency.
func BenchmarkShipInFlight(b *testing.B) {
	bin := collectorBinary(b)
	addr := freeAddr(b)
	col := startCollector(b, bin, addr, filepath.Join(b.TempDir(), "out.jsonl"))
	for _, n := range []int{1, 2, 3, 4, 6, 8} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for range b.N {
				shipThroughput(b, "http://"+addr, benchRecords, col.cmd.Process.Pid, n)
			}
		})
	}
}

// benchRecords is how many records the throughput benchmarks ship.
const benchRecords = 100_000

// BenchmarkCollectorCeiling is the test collector's own limit: a minimal
// client posts one pre-encoded request of 1,024 records (as the shipper
// encodes them) over and over, from two connections, so that nearly all
// the CPU is the collector's. What it reaches bounds what any shipper can
// reach on the same machine.
func BenchmarkCollectorCeiling(b *testing.B) {
	// One request body, as the shipper sends it.
	bodies := make(chan []byte, 1)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case bodies <- body:
		default:
		}
	}))
	home := b.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]*audit.Record, 1024)
	for i := range recs {
		recs[i] = decision(i) // as shipThroughput writes
	}
	if err := l.AppendAll(context.Background(), recs); err != nil {
		b.Fatal(err)
	}
	l.Close()
	s, err := Start(Options{Home: home, Gateway: "bench", Config: Config{Endpoint: sink.URL}, FlushInterval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	body := <-bodies
	s.Close()
	sink.Close()

	bin := collectorBinary(b)
	addr := freeAddr(b)
	col := startCollector(b, bin, addr, filepath.Join(b.TempDir(), "out.jsonl"))
	const perRequest, requests, conns = 1024, 100, 2
	for range b.N {
		start, cpu0, ccpu0 := time.Now(), cpuTime(), procCPU(col.cmd.Process.Pid)
		next := make(chan struct{}, requests)
		for range requests {
			next <- struct{}{}
		}
		close(next)
		errs := make(chan error, conns)
		for range conns {
			go func() {
				for range next {
					resp, err := http.Post("http://"+addr+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
					if err != nil {
						errs <- err
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						errs <- fmt.Errorf("the collector answered %s", resp.Status)
						return
					}
				}
				errs <- nil
			}()
		}
		for range conns {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		el := time.Since(start)
		n := float64(perRequest * requests)
		b.ReportMetric(n/el.Seconds(), "records/s")
		if cpu := cpuTime() - cpu0; cpu > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/record")
		}
		time.Sleep(100 * time.Millisecond) // the file exporter's flush
		if ccpu := procCPU(col.cmd.Process.Pid) - ccpu0; ccpu > 0 {
			b.ReportMetric(float64(ccpu.Nanoseconds())/n, "collector-cpu-ns/record")
		}
	}
}
