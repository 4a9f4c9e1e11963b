// Package metricstest reads tf's metrics the way their consumers do, for
// tests: /metrics through the Prometheus text parser, OTLP through a
// local receiver that decodes the protobuf requests.
package metricstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Families are parsed metric families by name.
type Families map[string]*dto.MetricFamily

// Scrape GETs url and parses it with the Prometheus text parser.
func Scrape(url string) (Families, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return nil, fmt.Errorf("GET %s: %s: %s", url, res.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return fams, nil
}

// Labels is a label set to match; a metric matches when it has every one
// of them (it may have more).
type Labels map[string]string

func matches(m *dto.Metric, want Labels) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// Counter sums the counters of family name whose labels match.
func (f Families) Counter(name string, want Labels) float64 {
	var sum float64
	for _, m := range f.metrics(name) {
		if matches(m, want) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// Gauge is the value of the first gauge of family name whose labels
// match, and whether there is one.
func (f Families) Gauge(name string, want Labels) (float64, bool) {
	for _, m := range f.metrics(name) {
		if matches(m, want) {
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// HistogramCount sums the sample counts of the histograms of family name
// whose labels match.
func (f Families) HistogramCount(name string, want Labels) uint64 {
	var n uint64
	for _, m := range f.metrics(name) {
		if matches(m, want) {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// LabelValues lists the values of label in family name.
func (f Families) LabelValues(name, label string) []string {
	seen := map[string]bool{}
	for _, m := range f.metrics(name) {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				seen[l.GetValue()] = true
			}
		}
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func (f Families) metrics(name string) []*dto.Metric {
	if fam, ok := f[name]; ok {
		return fam.GetMetric()
	}
	return nil
}

// A Receiver is an OTLP/HTTP metrics endpoint that keeps what it is sent.
type Receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*colmetrics.ExportMetricsServiceRequest
	headers  []http.Header
	// Status, when set, is answered instead of taking the request.
	status int
}

// NewReceiver starts a receiver; its URL is the base URL to configure
// (metrics are posted to /v1/metrics).
func NewReceiver() *Receiver {
	r := &Receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

// FailWith makes the receiver answer status to every request (0 takes
// them again).
func (r *Receiver) FailWith(status int) {
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/metrics" {
		http.Error(w, "want POST /v1/metrics", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	status := r.status
	r.mu.Unlock()
	if status != 0 {
		http.Error(w, "failing on purpose", status)
		return
	}
	if strings.Contains(req.Header.Get("Content-Encoding"), "gzip") {
		http.Error(w, "gzip not expected", http.StatusBadRequest)
		return
	}
	var m colmetrics.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests = append(r.requests, &m)
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	out, _ := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Requests is how many export requests arrived, and their headers.
func (r *Receiver) Requests() (int, []http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests), append([]http.Header(nil), r.headers...)
}

// Last returns the metrics of the last export, by name, and its resource
// attributes.
func (r *Receiver) Last() (map[string]*metricspb.Metric, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*metricspb.Metric{}
	res := map[string]string{}
	if len(r.requests) == 0 {
		return out, res
	}
	for _, rm := range r.requests[len(r.requests)-1].GetResourceMetrics() {
		for _, kv := range rm.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				out[m.GetName()] = m
			}
		}
	}
	return out, res
}

func attrsMatch(kvs []*commonpb.KeyValue, want Labels) bool {
	n := 0
	for _, kv := range kvs {
		if v, ok := want[kv.GetKey()]; ok {
			if v != kv.GetValue().GetStringValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// Sum sums the data points of an OTLP sum whose attributes match.
func Sum(m *metricspb.Metric, want Labels) float64 {
	var n float64
	for _, dp := range m.GetSum().GetDataPoints() {
		if attrsMatch(dp.GetAttributes(), want) {
			n += dp.GetAsDouble() + float64(dp.GetAsInt())
		}
	}
	return n
}

// HistCount sums the counts of an OTLP histogram's points whose
// attributes match.
func HistCount(m *metricspb.Metric, want Labels) uint64 {
	var n uint64
	for _, dp := range m.GetHistogram().GetDataPoints() {
		if attrsMatch(dp.GetAttributes(), want) {
			n += dp.GetCount()
		}
	}
	return n
}

// GaugeValue is the first point of an OTLP gauge, and whether there is
// one.
func GaugeValue(m *metricspb.Metric) (float64, bool) {
	for _, dp := range m.GetGauge().GetDataPoints() {
		return dp.GetAsDouble() + float64(dp.GetAsInt()), true
	}
	return 0, false
}

// A GRPCReceiver is an OTLP/gRPC metrics endpoint that counts the data
// points of tf_decisions_total it is sent.
type GRPCReceiver struct {
	colmetrics.UnimplementedMetricsServiceServer
	srv  *grpc.Server
	ln   net.Listener
	mu   sync.Mutex
	last *colmetrics.ExportMetricsServiceRequest
	md   metadata.MD
}

// NewGRPCReceiver starts a receiver on loopback.
func NewGRPCReceiver() (*GRPCReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &GRPCReceiver{srv: grpc.NewServer(), ln: ln}
	colmetrics.RegisterMetricsServiceServer(r.srv, r)
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the endpoint to configure.
func (r *GRPCReceiver) URL() string { return "http://" + r.ln.Addr().String() }

// Close stops the receiver.
func (r *GRPCReceiver) Close() { r.srv.Stop() }

// Export takes one export request.
func (r *GRPCReceiver) Export(ctx context.Context, req *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	r.last, r.md = req, md
	r.mu.Unlock()
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

// Last returns the metrics of the last export by name, and its metadata.
func (r *GRPCReceiver) Last() (map[string]*metricspb.Metric, metadata.MD) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*metricspb.Metric{}
	for _, rm := range r.last.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				out[m.GetName()] = m
			}
		}
	}
	return out, r.md
}
