// Package metrics counts what a gateway decides and how long it takes,
// with one set of instruments read both by a Prometheus /metrics endpoint
// on loopback and by an OTLP exporter.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	promBridge "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tameflare/tf/version"
)

// Config says where the metrics go. The zero Config measures nothing
// anyone can read; New then returns nil, which every method accepts.
type Config struct {
	// Listen is the address of the Prometheus endpoint (/metrics), e.g.
	// 127.0.0.1:9464; empty serves none.
	Listen string
	// AllowNonLoopback permits a Listen address that is not loopback.
	// /metrics has no authentication: anyone who reaches it reads it.
	AllowNonLoopback bool
	// OTLP is where OTLP metrics are pushed; see OTLP.
	OTLP OTLP
	// Gateway names the gateway in the resource (tf.gateway).
	Gateway string
	// Getenv reads the environment (OTEL_EXPORTER_OTLP_*); nil means
	// os.Getenv.
	Getenv func(string) string
}

// Metrics holds the instruments of one gateway. A nil *Metrics is valid
// and records nothing, so the gateway calls it unconditionally.
//
// The instruments are Prometheus client ones: recording is an atomic add
// on a series looked up once per label set. The OTLP exporter reads the
// same registry through the OpenTelemetry Prometheus bridge.
type Metrics struct {
	provider *sdkmetric.MeterProvider // nil without OTLP
	registry *prometheus.Registry
	server   *http.Server
	ln       net.Listener
	otlp     string   // the OTLP endpoint, for status
	secrets  []string // OTLP header values, masked in errors

	decisions    attrCache[decisionKey, prometheus.Counter]
	decisionTime attrCache[string, prometheus.Observer]
	forwardTime  attrCache[string, prometheus.Observer]
	auditWrite   prometheus.Histogram
	auditDurable prometheus.Histogram
	mcpCalls     attrCache[[2]string, prometheus.Counter]
	tokens       attrCache[[2]string, prometheus.Counter]

	pending  atomic.Pointer[func() int64]
	killed   atomic.Pointer[func() bool]
	shipLag  atomic.Pointer[func() (int64, time.Duration)]
	closing  sync.Once
	closeErr error
}

type decisionKey struct{ effect, connector, rule string }

// Histogram bounds, in seconds. A decision is usually well under a
// millisecond (a hold is not part of it); a forward spans a whole
// upstream exchange, streams included.
var (
	decisionBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	forwardBounds  = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	auditBounds    = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
)

// maxSeries bounds the distinct label sets of each instrument that tf
// fills from names it does not choose (rules, MCP servers, models);
// beyond it the free label reads "(other)". Rule names are bounded by
// the policy, but a model name comes from an upstream's answer and an
// MCP server's from the request.
const maxSeries = 256

// Other is the label value that stands for names beyond maxSeries.
const Other = "(other)"

// New starts the metrics cfg asks for: the Prometheus endpoint when
// cfg.Listen is set, the OTLP exporter when an endpoint is configured
// (cfg.OTLP or the environment). With neither it returns nil, nil.
func New(cfg Config) (*Metrics, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = osGetenv
	}
	otlpOn := otlpEnabled(cfg.OTLP, getenv)
	if cfg.Listen == "" && !otlpOn {
		return nil, nil
	}
	m := &Metrics{registry: prometheus.NewRegistry()}
	m.instruments(cfg.Gateway)
	var ln net.Listener
	if cfg.Listen != "" {
		var err error
		if ln, err = Listen(cfg.Listen, cfg.AllowNonLoopback); err != nil {
			return nil, err
		}
	}
	if otlpOn {
		exp, endpoint, err := newOTLPExporter(cfg.OTLP, getenv)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			return nil, err
		}
		m.otlp = endpoint
		m.secrets = headerValues(cfg.OTLP, getenv)
		ropts := []sdkmetric.PeriodicReaderOption{
			sdkmetric.WithProducer(promBridge.NewMetricProducer(promBridge.WithGatherer(m.registry))),
			sdkmetric.WithTimeout(exportTimeout),
		}
		if cfg.OTLP.Interval > 0 {
			ropts = append(ropts, sdkmetric.WithInterval(cfg.OTLP.Interval))
		}
		m.provider = sdkmetric.NewMeterProvider(
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, ropts...)),
			sdkmetric.WithResource(resource.NewSchemaless(
				attribute.String("service.name", "tf"),
				attribute.String("service.version", version.Get().Short()),
				attribute.String("tf.gateway", cfg.Gateway),
			)),
		)
	}
	if ln != nil {
		m.ln = ln
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		m.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = m.server.Serve(ln) }()
	}
	return m, nil
}

func (m *Metrics) instruments(gateway string) {
	r := m.registry
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tf_decisions_total",
		Help: "Decision records written, by effect (allow, deny, require_approval), connector and deciding rule."},
		[]string{"effect", "connector", "rule"})
	decisionTime := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tf_decision_duration_seconds",
		Help:    "Time from a request reaching the gateway to its verdict: classify, decide, and write the decision records; a hold for approval is not included.",
		Buckets: decisionBounds}, []string{"connector"})
	forwardTime := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tf_forward_duration_seconds",
		Help:    "Time from an allowed request's verdict to the end of its exchange with the upstream (the whole response, streams included).",
		Buckets: forwardBounds}, []string{"connector"})
	m.auditWrite = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tf_audit_write_duration_seconds",
		Help:    "Time to append a request's decision records to the audit log (written; durable with audit sync: always).",
		Buckets: auditBounds})
	m.auditDurable = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tf_audit_durable_lag_seconds",
		Help:    "Time from the oldest audit record written but not durable to the fdatasync that made it durable.",
		Buckets: auditBounds})
	mcpCalls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tf_mcp_tool_calls_total",
		Help: "MCP tool calls decided, by server and effect."}, []string{"server", "effect"})
	tokens := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tf_model_tokens_total",
		Help: "Model-call tokens metered from responses, by model and kind (input, output, cache_read, cache_write)."},
		[]string{"model", "kind"})
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tf_gateway_info", Help: "The gateway these metrics are of, and tf's version.",
		ConstLabels: prometheus.Labels{"gateway": gateway, "version": version.Get().Short()}})
	info.Set(1)
	r.MustRegister(decisions, decisionTime, forwardTime, m.auditWrite, m.auditDurable, mcpCalls, tokens, info, gauges{m})

	m.decisions = newAttrCache(func(k decisionKey) prometheus.Counter {
		return decisions.WithLabelValues(k.effect, k.connector, k.rule)
	},
		func(k decisionKey) decisionKey { return decisionKey{k.effect, k.connector, Other} })
	connector := func(string) string { return Other }
	m.decisionTime = newAttrCache(func(c string) prometheus.Observer { return decisionTime.WithLabelValues(c) }, connector)
	m.forwardTime = newAttrCache(func(c string) prometheus.Observer { return forwardTime.WithLabelValues(c) }, connector)
	first := func(k [2]string) [2]string { return [2]string{Other, k[1]} }
	m.mcpCalls = newAttrCache(func(k [2]string) prometheus.Counter { return mcpCalls.WithLabelValues(k[0], k[1]) }, first)
	m.tokens = newAttrCache(func(k [2]string) prometheus.Counter { return tokens.WithLabelValues(k[0], k[1]) }, first)
}

// gauges reports the gauges that read the gateway's state when scraped;
// one whose function is not set (no shipper yet) is left out rather than
// reported as zero.
type gauges struct{ m *Metrics }

var (
	pendingDesc     = prometheus.NewDesc("tf_approvals_pending", "Requests held for a person's approval now.", nil, nil)
	killedDesc      = prometheus.NewDesc("tf_kill_switch_active", "1 while a kill switch stops some of this gateway's traffic, else 0.", nil, nil)
	shipPendingDesc = prometheus.NewDesc("tf_audit_ship_pending", "Audit records written locally and not yet shipped over OTLP.", nil, nil)
	shipLagDesc     = prometheus.NewDesc("tf_audit_ship_lag_seconds", "Age of the oldest audit record not yet shipped over OTLP.", nil, nil)
)

func (g gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- killedDesc
	ch <- shipPendingDesc
	ch <- shipLagDesc
}

func (g gauges) Collect(ch chan<- prometheus.Metric) {
	if f := g.m.pending.Load(); f != nil {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64((*f)()))
	}
	if f := g.m.killed.Load(); f != nil {
		v := 0.0
		if (*f)() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(killedDesc, prometheus.GaugeValue, v)
	}
	if f := g.m.shipLag.Load(); f != nil {
		n, age := (*f)()
		ch <- prometheus.MustNewConstMetric(shipPendingDesc, prometheus.GaugeValue, float64(n))
		ch <- prometheus.MustNewConstMetric(shipLagDesc, prometheus.GaugeValue, age.Seconds())
	}
}

// Addr is the address /metrics is served on, or "".
func (m *Metrics) Addr() string {
	if m == nil || m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// OTLPEndpoint is where OTLP metrics are pushed, or "".
func (m *Metrics) OTLPEndpoint() string {
	if m == nil {
		return ""
	}
	return m.otlp
}

// Handler serves the metrics in the Prometheus formats.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return nil
	}
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Decided counts one decision record. rule is the deciding rule, or ""
// for the policy's default.
func (m *Metrics) Decided(effect, connector, rule string, killSwitch bool) {
	if m == nil {
		return
	}
	switch {
	case killSwitch:
		rule = "(kill switch)"
	case rule == "":
		rule = "(default)"
	}
	m.decisions.get(decisionKey{effect, connector, rule}).Inc()
}

// DecisionTime records how long a request waited for its verdict.
func (m *Metrics) DecisionTime(connector string, d time.Duration) {
	if m == nil {
		return
	}
	m.decisionTime.get(connector).Observe(d.Seconds())
}

// Forwarded records how long an allowed request's exchange took after
// its verdict.
func (m *Metrics) Forwarded(connector string, d time.Duration) {
	if m == nil {
		return
	}
	m.forwardTime.get(connector).Observe(d.Seconds())
}

// AuditWritten records how long appending decision records took.
func (m *Metrics) AuditWritten(d time.Duration) {
	if m == nil {
		return
	}
	m.auditWrite.Observe(d.Seconds())
}

// AuditDurable records the lag from the oldest record written to the
// fdatasync that made it durable.
func (m *Metrics) AuditDurable(lag time.Duration) {
	if m == nil {
		return
	}
	m.auditDurable.Observe(lag.Seconds())
}

// MCPToolCall counts one MCP tool call decision.
func (m *Metrics) MCPToolCall(server, effect string) {
	if m == nil {
		return
	}
	m.mcpCalls.get([2]string{server, effect}).Inc()
}

// Tokens counts the tokens of one model call.
func (m *Metrics) Tokens(model string, input, output, cacheRead, cacheWrite int64) {
	if m == nil {
		return
	}
	if model == "" {
		model = "(unknown)"
	}
	for _, t := range [...]struct {
		kind string
		n    int64
	}{{"input", input}, {"output", output}, {"cache_read", cacheRead}, {"cache_write", cacheWrite}} {
		if t.n <= 0 {
			continue
		}
		m.tokens.get([2]string{model, t.kind}).Add(float64(t.n))
	}
}

// SetApprovalsPending sets the function the pending-approvals gauge
// reads; nil stops reporting it.
func (m *Metrics) SetApprovalsPending(f func() int64) {
	if m != nil {
		storeFunc(&m.pending, f)
	}
}

// SetKillSwitch sets the function the kill switch gauge reads.
func (m *Metrics) SetKillSwitch(f func() bool) {
	if m != nil {
		storeFunc(&m.killed, f)
	}
}

// SetShipLag sets the function the audit shipping gauges read: how many
// records are not yet shipped and the age of the oldest. Until it is set
// (no shipping configured) the gauges are not reported.
func (m *Metrics) SetShipLag(f func() (records int64, age time.Duration)) {
	if m != nil {
		storeFunc(&m.shipLag, f)
	}
}

func storeFunc[F any](p *atomic.Pointer[F], f F) {
	if any(f) == nil {
		p.Store(nil)
		return
	}
	p.Store(&f)
}

// Close stops serving /metrics and pushes the last OTLP export, waiting
// at most until ctx ends.
func (m *Metrics) Close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.closing.Do(func() {
		var errs []error
		if m.server != nil {
			errs = append(errs, m.server.Close())
		}
		if m.provider != nil {
			if err := m.provider.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("metrics: last OTLP export: %w", err))
			}
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// Listen listens on addr for /metrics. An address that is not loopback
// is refused unless allowNonLoopback: /metrics has no authentication, and
// a name could resolve anywhere.
func Listen(addr string, allowNonLoopback bool) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen address %q: want HOST:PORT, e.g. 127.0.0.1:9464", addr)
	}
	if !allowNonLoopback && !loopbackHost(host) {
		return nil, fmt.Errorf("metrics listen address %q is not loopback: /metrics has no authentication, so tf serves it on 127.0.0.1 or [::1] only (set metrics: {allow_non_loopback: true} to serve it elsewhere)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listening on %s: %w", addr, err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !allowNonLoopback && !a.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("metrics listen address %q resolved to %s, which is not loopback", addr, a.IP)
	}
	return ln, nil
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// attrCache keeps the series of each label set, so that recording does
// not hash label values on the decision path. It holds at most maxSeries
// label sets; a new one beyond that is recorded under other(k), whose
// free label reads Other.
type attrCache[K comparable, V any] struct {
	m     *sync.Map
	n     *atomic.Int64
	make  func(K) V
	other func(K) K
}

func newAttrCache[K comparable, V any](mk func(K) V, other func(K) K) attrCache[K, V] {
	return attrCache[K, V]{m: &sync.Map{}, n: &atomic.Int64{}, make: mk, other: other}
}

func (c attrCache[K, V]) get(k K) V {
	if v, ok := c.m.Load(k); ok {
		return v.(V)
	}
	if o := c.other(k); c.n.Load() >= maxSeries && o != k {
		return c.get(o)
	}
	v, loaded := c.m.LoadOrStore(k, c.make(k))
	if !loaded {
		c.n.Add(1)
	}
	return v.(V)
}
