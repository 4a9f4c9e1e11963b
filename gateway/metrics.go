package gateway

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/tameflare/tf/httpproxy"
	"github.com/tameflare/tf/metrics"
	"github.com/tameflare/tf/rules"
)

// metricsCloseWait bounds the last OTLP push when the gateway stops.
const metricsCloseWait = 3 * time.Second

// startMetrics starts what the metrics: and otel: sections (and
// cfg.MetricsListen) ask for; nil when they ask for nothing. /metrics
// listens on the host's loopback, which the sandboxed agent's network
// namespace does not reach.
func (g *Gateway) startMetrics(cfg Config, file *ConfigFile) (*metrics.Metrics, error) {
	mc := metrics.Config{
		Listen:           file.Metrics.Listen,
		AllowNonLoopback: file.Metrics.AllowNonLoopback,
		Gateway:          g.name,
		OTLP: metrics.OTLP{
			Endpoint: file.OTel.Endpoint, Headers: file.OTel.Headers, Protocol: file.OTel.Protocol,
			Interval: file.Metrics.Interval,
		},
	}
	if cfg.MetricsListen != "" {
		mc.Listen = cfg.MetricsListen
	}
	m, err := metrics.New(mc)
	if errors.Is(err, syscall.EADDRINUSE) && cfg.MetricsListen == "" {
		// Another gateway of this home serves the configured address:
		// this one goes on without /metrics (and still pushes OTLP).
		g.op.notes = append(g.op.notes, "metrics: "+mc.Listen+" is in use (another gateway serves /metrics there); this gateway serves none")
		mc.Listen = ""
		m, err = metrics.New(mc)
	}
	if err != nil && mc.OTLP.Endpoint != "" && cfg.MetricsListen == "" {
		// As for the audit log's shipping, a bad otel: section is said,
		// not fatal: the gateway governs on and serves what it can.
		if m2, err2 := metrics.New(metrics.Config{Listen: mc.Listen, AllowNonLoopback: mc.AllowNonLoopback, Gateway: mc.Gateway}); err2 == nil {
			g.op.notes = append(g.op.notes, "metrics: not pushed over OTLP: "+err.Error())
			return m2, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// watchMetrics points the gauges at the operator state.
func (g *Gateway) watchMetrics() {
	if g.metrics == nil {
		return
	}
	if g.op.approval != nil {
		g.metrics.SetApprovalsPending(func() int64 { return int64(len(g.op.approval.Pending())) })
	}
	if g.op.kill != nil {
		g.metrics.SetKillSwitch(func() bool {
			st := g.op.kill.State()
			if st.Broken != "" {
				return true
			}
			for _, w := range st.Switches {
				// A connector's switch stops that part of this gateway's
				// traffic.
				if w.Scope.All || w.Scope.Gateway == g.name || w.Scope.Connector != "" {
					return true
				}
			}
			return false
		})
	}
}

// SetShipLag sets the function the audit shipping gauges read (records
// not yet shipped over OTLP, and the age of the oldest).
func (g *Gateway) SetShipLag(f func() (records int64, age time.Duration)) {
	g.metrics.SetShipLag(f)
}

// MetricsAddr is the address /metrics is served on, or "".
func (g *Gateway) MetricsAddr() string { return g.metrics.Addr() }

// countDecisions counts decision records, and the MCP tool calls among
// them.
func (g *Gateway) countDecisions(actions []rules.Action, decisions []rules.Decision) {
	if g.metrics == nil {
		return
	}
	for i := range decisions {
		a, d := &actions[i], &decisions[i]
		g.metrics.Decided(string(d.Effect), a.Connector, d.Rule, d.KillSwitch)
		if a.Connector == "mcp" && !strings.Contains(a.Type, ".@") && a.Type != "tf.unclassified" {
			g.metrics.MCPToolCall(a.Resource["server"], string(d.Effect))
		}
	}
}

// timeForward has v's Done record how long the exchange took after the
// verdict.
func (g *Gateway) timeForward(v *httpproxy.Verdict, connector string) {
	if g.metrics == nil {
		return
	}
	decided, done := time.Now(), v.Done
	v.Done = func(o httpproxy.Outcome) {
		g.metrics.Forwarded(connector, time.Since(decided))
		if done != nil {
			done(o)
		}
	}
}

// metricsNotes says where metrics go, and the last failed push.
func (g *Gateway) metricsNotes() []string {
	var notes []string
	if a := g.metrics.Addr(); a != "" {
		notes = append(notes, "metrics: http://"+a+"/metrics")
	}
	if e := g.metrics.OTLPEndpoint(); e != "" {
		notes = append(notes, "otlp metrics: "+e)
		if at, msg := g.metrics.LastExportError(); msg != "" {
			notes = append(notes, fmt.Sprintf("otlp metrics: last push failed at %s: %s", at.UTC().Format(time.RFC3339), g.redact(msg)))
		}
	}
	return notes
}
