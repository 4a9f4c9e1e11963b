package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/tameflare/tf/metrics"
)

// BenchmarkRequestInstruments is what metrics add to one allowed
// request: its decision counted, its decision, audit write and forward
// times recorded. "off" is the nil *Metrics a gateway without metrics
// calls.
func BenchmarkRequestInstruments(b *testing.B) {
	record := func(m *metrics.Metrics) {
		m.Decided("allow", "github", "reads", false)
		m.DecisionTime("github", 180*time.Microsecond)
		m.AuditWritten(40 * time.Microsecond)
		m.Forwarded("github", 12*time.Millisecond)
	}
	b.Run("off", func(b *testing.B) {
		var m *metrics.Metrics
		defer cpuPerOp(b)()
		for b.Loop() {
			record(m)
		}
	})
	on := func(b *testing.B, cfg metrics.Config) *metrics.Metrics {
		cfg.Getenv = noEnv
		m, err := metrics.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Close(context.Background()) })
		return m
	}
	b.Run("on", func(b *testing.B) {
		m := on(b, metrics.Config{Listen: "127.0.0.1:0"})
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for b.Loop() {
			record(m)
		}
	})
	b.Run("on-parallel", func(b *testing.B) {
		m := on(b, metrics.Config{Listen: "127.0.0.1:0"})
		b.ReportAllocs()
		defer cpuPerOp(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				record(m)
			}
		})
	})
	b.Run("on-otlp", func(b *testing.B) {
		// Prometheus and OTLP readers together: both read the same
		// instruments, so recording costs the same.
		m := on(b, metrics.Config{Listen: "127.0.0.1:0", OTLP: metrics.OTLP{Endpoint: "http://127.0.0.1:1", Interval: time.Hour}})
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for b.Loop() {
			record(m)
		}
	})
}
