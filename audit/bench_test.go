package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkAppend appends from many goroutines, as a busy gateway does,
// in both durability modes, and reports records per second, per batch
// (one write) and per segment fdatasync. With SyncAlways throughput is
// bounded by fsync latency times the records one fsync covers, which is
// about half the appenders, so it is measured at two levels of
// concurrency.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []SyncMode{SyncGroup, SyncAlways} {
		for _, appenders := range []int{16, 128, 512} {
			b.Run(fmt.Sprintf("sync=%s/appenders=%d", mode, appenders), func(b *testing.B) {
				benchmarkAppend(b, mode, appenders)
			})
		}
	}
}

func benchmarkAppend(b *testing.B, mode SyncMode, appenders int) {
	dir := b.TempDir()
	l, err := Open(dir, Options{Sync: mode})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	b.SetParallelism(max(1, appenders/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		// One record per appender, reused: building records is the
		// caller's cost, not the log's.
		r := decision(1)
		for pb.Next() {
			if err := l.Append(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(b.N)/float64(l.batches), "records/batch")
	b.ReportMetric(float64(b.N)/float64(max(1, l.syncs.Load())), "records/fsync")
}

// BenchmarkAppendPaced appends at about 1,000 records/s, the rate of a
// busy agent session, and reports the latency of Append: everything it
// adds to a request (with SyncAlways, its fsync). BenchmarkFdatasyncPaced
// is the floor of SyncAlways: the same pace of bare appends and
// fdatasyncs.
func BenchmarkAppendPaced(b *testing.B) {
	for _, mode := range []SyncMode{SyncGroup, SyncAlways} {
		b.Run("sync="+string(mode), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{Sync: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			paced(b, func(i int) error { return l.Append(ctx, decision(i)) })
		})
	}
}

// BenchmarkFdatasyncPaced's overwrite variant writes the same lines over blocks written (with
// zeros) and synced beforehand, as a preallocated segment would: the file
// neither grows nor allocates, so an fdatasync has no metadata to write.
// It tells whether preallocating segments would make SyncAlways cheaper;
// on this project's test machine (ext4 without a journal, virtio disk) it
// did not at a gateway's line size: the device's cache flush dominates.
func BenchmarkFdatasyncPaced(b *testing.B) {
	for _, prewritten := range []bool{false, true} {
		name := "append"
		if prewritten {
			name = "overwrite"
		}
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			line := append(bytes.Repeat([]byte("x"), 699), '\n')
			if prewritten {
				if _, err := f.Write(make([]byte, (b.N+1)*len(line))); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				if _, err := f.Seek(0, 0); err != nil {
					b.Fatal(err)
				}
			}
			paced(b, func(int) error {
				if _, err := f.Write(line); err != nil {
					return err
				}
				return datasync(f)
			})
		})
	}
}

// paced runs op b.N times, one per millisecond, and reports latency
// percentiles.
func paced(b *testing.B, op func(i int) error) {
	lat := make([]time.Duration, 0, b.N)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-tick.C
		t0 := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(1), "max-µs")
}
