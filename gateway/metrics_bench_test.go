//go:build linux

package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/httpproxy"
)

// BenchmarkGovernMetrics is the decision path of one allowed request
// (classify, decide, write the decision record, then its outcome) in a
// real gateway, with metrics off and on. The difference is what the
// instruments add; the audit write dominates both.
func BenchmarkGovernMetrics(b *testing.B) {
	for _, c := range []struct {
		name   string
		listen string
	}{{"off", ""}, {"on", "127.0.0.1:0"}} {
		b.Run(c.name, func(b *testing.B) {
			f := startOp(b, "1m", func(cfg *Config) { cfg.MetricsListen = c.listen })
			if (f.g.MetricsAddr() != "") != (c.listen != "") {
				b.Fatalf("metrics address %q", f.g.MetricsAddr())
			}
			req, _ := http.NewRequest("GET", "https://api.github.com/repos/acme/app", nil)
			creq := &connectors.Request{HTTP: req, Scheme: "https"}
			ctx := context.Background()
			before := cpuTime()
			for b.Loop() {
				v := f.g.Govern(ctx, creq)
				if !v.Allow {
					b.Fatal("refused")
				}
				v.Done(httpproxy.Outcome{Status: 200, Duration: time.Millisecond})
			}
			b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
