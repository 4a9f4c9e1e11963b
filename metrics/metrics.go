// Package metrics counts what a gateway decides and how long it takes,
// with one set of OpenTelemetry instruments read both by a Prometheus
// /metrics endpoint on loopback and by an OTLP exporter.
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
	"go.opentelemetry.io/otel/attribute"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
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
type Metrics struct {
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
	server   *http.Server
	ln       net.Listener
	otlp     string // the OTLP endpoint, for status

	decisions     metric.Int64Counter
	decisionTime  metric.Float64Histogram
	forwardTime   metric.Float64Histogram
	auditWrite    metric.Float64Histogram
	auditDurable  metric.Float64Histogram
	mcpCalls      metric.Int64Counter
	tokens        metric.Int64Counter
	decisionAttrs attrCache[decisionKey]
	connAttrs     attrCache[string]
	mcpAttrs      attrCache[[2]string]
	tokenAttrs    attrCache[[2]string]

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
	m := &Metrics{}
	var ln net.Listener
	if cfg.Listen != "" {
		var err error
		if ln, err = Listen(cfg.Listen, cfg.AllowNonLoopback); err != nil {
			return nil, err
		}
	}
	var readers []sdkmetric.Option
	if ln != nil {
		m.registry = prometheus.NewRegistry()
		exp, err := promexp.New(promexp.WithRegisterer(m.registry), promexp.WithoutScopeInfo())
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(exp))
	}
	if otlpOn {
		reader, endpoint, err := newOTLPReader(cfg.OTLP, getenv)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			return nil, err
		}
		m.otlp = endpoint
		readers = append(readers, sdkmetric.WithReader(reader))
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "tf"),
		attribute.String("service.version", version.Get().Short()),
		attribute.String("tf.gateway", cfg.Gateway),
	)
	m.provider = sdkmetric.NewMeterProvider(append(readers,
		sdkmetric.WithResource(res),
		// No exemplars: nothing here runs in a trace, and they cost time
		// on the decision path.
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
	)...)
	if err := m.instruments(); err != nil {
		_ = m.provider.Shutdown(context.Background())
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	if ln != nil {
		m.ln = ln
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
		m.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = m.server.Serve(ln) }()
	}
	return m, nil
}

func (m *Metrics) instruments() error {
	meter := m.provider.Meter("github.com/tameflare/tf")
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	m.decisions, err = meter.Int64Counter("tf.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Decision records written, by effect (allow, deny, require_approval), connector and deciding rule."))
	add(err)
	m.decisionTime, err = meter.Float64Histogram("tf.decision.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a request reaching the gateway to its verdict: classify, decide, and write the decision records; a hold for approval is not included."),
		metric.WithExplicitBucketBoundaries(decisionBounds...))
	add(err)
	m.forwardTime, err = meter.Float64Histogram("tf.forward.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from an allowed request's verdict to the end of its exchange with the upstream (the whole response, streams included)."),
		metric.WithExplicitBucketBoundaries(forwardBounds...))
	add(err)
	m.auditWrite, err = meter.Float64Histogram("tf.audit.write.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to append a request's decision records to the audit log (written; durable with audit sync: always)."),
		metric.WithExplicitBucketBoundaries(auditBounds...))
	add(err)
	m.auditDurable, err = meter.Float64Histogram("tf.audit.durable.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from the oldest audit record written but not durable to the fdatasync that made it durable."),
		metric.WithExplicitBucketBoundaries(auditBounds...))
	add(err)
	m.mcpCalls, err = meter.Int64Counter("tf.mcp.tool_calls", metric.WithUnit("{call}"),
		metric.WithDescription("MCP tool calls decided, by server and effect."))
	add(err)
	m.tokens, err = meter.Int64Counter("tf.model.tokens", metric.WithUnit("{token}"),
		metric.WithDescription("Model-call tokens metered from responses, by model and kind (input, output, cache_read, cache_write)."))
	add(err)
	pending, err := meter.Int64ObservableGauge("tf.approvals.pending", metric.WithUnit("{approval}"),
		metric.WithDescription("Requests held for a person's approval now."))
	add(err)
	// No unit: "1" would make the Prometheus name end in _ratio.
	killed, err := meter.Int64ObservableGauge("tf.kill_switch.active",
		metric.WithDescription("1 while a kill switch stops some of this gateway's traffic, else 0."))
	add(err)
	shipRecs, err := meter.Int64ObservableGauge("tf.audit.ship.pending", metric.WithUnit("{record}"),
		metric.WithDescription("Audit records written locally and not yet shipped over OTLP."))
	add(err)
	shipAge, err := meter.Float64ObservableGauge("tf.audit.ship.lag", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest audit record not yet shipped over OTLP."))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if f := m.pending.Load(); f != nil {
			o.ObserveInt64(pending, (*f)())
		}
		if f := m.killed.Load(); f != nil {
			var v int64
			if (*f)() {
				v = 1
			}
			o.ObserveInt64(killed, v)
		}
		if f := m.shipLag.Load(); f != nil {
			n, age := (*f)()
			o.ObserveInt64(shipRecs, n)
			o.ObserveFloat64(shipAge, age.Seconds())
		}
		return nil
	}, pending, killed, shipRecs, shipAge)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	m.decisionAttrs = newAttrCache(func(k decisionKey) attribute.Set {
		return attribute.NewSet(attribute.String("effect", k.effect), attribute.String("connector", k.connector), attribute.String("rule", k.rule))
	}, func(k decisionKey) decisionKey { return decisionKey{k.effect, k.connector, Other} })
	m.connAttrs = newAttrCache(func(c string) attribute.Set { return attribute.NewSet(attribute.String("connector", c)) },
		func(string) string { return Other })
	first := func(k [2]string) [2]string { return [2]string{Other, k[1]} }
	m.mcpAttrs = newAttrCache(func(k [2]string) attribute.Set {
		return attribute.NewSet(attribute.String("server", k[0]), attribute.String("effect", k[1]))
	}, first)
	m.tokenAttrs = newAttrCache(func(k [2]string) attribute.Set {
		return attribute.NewSet(attribute.String("model", k[0]), attribute.String("kind", k[1]))
	}, first)
	return nil
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

// Handler serves the Prometheus text format; nil when there is no
// Prometheus endpoint.
func (m *Metrics) Handler() http.Handler {
	if m == nil || m.registry == nil {
		return nil
	}
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
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
	m.decisions.Add(context.Background(), 1, m.decisionAttrs.get(decisionKey{effect, connector, rule}))
}

// DecisionTime records how long a request waited for its verdict.
func (m *Metrics) DecisionTime(connector string, d time.Duration) {
	if m == nil {
		return
	}
	m.decisionTime.Record(context.Background(), d.Seconds(), m.connAttrs.get(connector))
}

// Forwarded records how long an allowed request's exchange took after
// its verdict.
func (m *Metrics) Forwarded(connector string, d time.Duration) {
	if m == nil {
		return
	}
	m.forwardTime.Record(context.Background(), d.Seconds(), m.connAttrs.get(connector))
}

// AuditWritten records how long appending decision records took.
func (m *Metrics) AuditWritten(d time.Duration) {
	if m == nil {
		return
	}
	m.auditWrite.Record(context.Background(), d.Seconds())
}

// AuditDurable records the lag from the oldest record written to the
// fdatasync that made it durable.
func (m *Metrics) AuditDurable(lag time.Duration) {
	if m == nil {
		return
	}
	m.auditDurable.Record(context.Background(), lag.Seconds())
}

// MCPToolCall counts one MCP tool call decision.
func (m *Metrics) MCPToolCall(server, effect string) {
	if m == nil {
		return
	}
	m.mcpCalls.Add(context.Background(), 1, m.mcpAttrs.get([2]string{server, effect}))
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
		m.tokens.Add(context.Background(), t.n, m.tokenAttrs.get([2]string{model, t.kind}))
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
		if err := m.provider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics: last OTLP export: %w", err))
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

// attrCache keeps one precomputed attribute option per label set, so
// that recording does not build and sort attributes on the decision
// path. It holds at most maxSeries label sets; a new one beyond that is
// recorded under other(k), whose free label reads Other.
type attrCache[K comparable] struct {
	m     *sync.Map
	n     *atomic.Int64
	make  func(K) attribute.Set
	other func(K) K
}

func newAttrCache[K comparable](mk func(K) attribute.Set, other func(K) K) attrCache[K] {
	return attrCache[K]{m: &sync.Map{}, n: &atomic.Int64{}, make: mk, other: other}
}

func (c attrCache[K]) get(k K) metric.MeasurementOption {
	if v, ok := c.m.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	if o := c.other(k); c.n.Load() >= maxSeries && o != k {
		return c.get(o)
	}
	v, loaded := c.m.LoadOrStore(k, metric.WithAttributeSet(c.make(k)))
	if !loaded {
		c.n.Add(1)
	}
	return v.(metric.MeasurementOption)
}
