package gateway

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/killswitch"
)

// BenchmarkHeldApprovals holds 1,000 requests at once in a real gateway
// (each its own client connection through the proxy), reports the heap
// they cost (client side included), denies them all, and checks that
// every goroutine they used is gone.
func BenchmarkHeldApprovals(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		f := startOp(b, "10m", nil)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		baseG := runtime.NumGoroutine()
		b.StartTimer()

		var wg sync.WaitGroup
		statuses := make(chan int, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep := f.send(context.Background(), "PUT", "/repos/acme/app/pulls/"+strconv.Itoa(i+1)+"/merge")
				statuses <- rep.status
			}()
		}
		pending := f.waitPending(b, n)
		b.StopTimer()
		runtime.GC()
		var held runtime.MemStats
		runtime.ReadMemStats(&held)
		b.ReportMetric(float64(held.HeapInuse-before.HeapInuse)/(1<<20), "MB-heap-held")
		b.ReportMetric(float64(runtime.NumGoroutine()-baseG), "goroutines-held")
		b.StartTimer()

		for _, p := range pending {
			if _, err := f.g.Answer(p.ID, approval.Answer{Approver: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
		close(statuses)
		for s := range statuses {
			if s != http.StatusForbidden {
				b.Fatalf("released request: status %d", s)
			}
		}
		b.StopTimer()
		if f.hits.Load() != 0 {
			b.Fatal("a denied request reached the upstream")
		}
		f.tr.CloseIdleConnections()
		var left int
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if left = runtime.NumGoroutine() - baseG; left <= 0 || time.Now().After(deadline) {
				break
			}
		}
		b.ReportMetric(float64(max(left, 0)), "goroutines-leaked")
		if left > 0 {
			buf := make([]byte, 1<<20)
			b.Fatalf("%d goroutines left after release:\n%s", left, buf[:runtime.Stack(buf, true)])
		}
		f.g.Close()
		b.StartTimer()
	}
}

// BenchmarkKillSwitchRefusal measures, through a real gateway, the time
// from writing the kill switch file (as tf kill does, without the admin
// call) to the first refused request.
func BenchmarkKillSwitchRefusal(b *testing.B) {
	f := startOp(b, "1m", nil)
	var worst, total time.Duration
	runs := 0
	for b.Loop() {
		if _, err := killswitch.Activate(context.Background(), f.home, killswitch.Switch{Scope: killswitch.Scope{All: true}, By: "bench"}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for f.send(context.Background(), "GET", "/repos/acme/app").status != http.StatusForbidden {
			if time.Since(start) > 5*time.Second {
				b.Fatal("never refused")
			}
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		runs++
		b.StopTimer()
		if _, _, err := killswitch.Deactivate(context.Background(), f.home, killswitch.Scope{All: true}, "bench", ""); err != nil {
			b.Fatal(err)
		}
		f.g.ReloadKillSwitch()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(runs)/1000, "ms-mean")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-max")
}
