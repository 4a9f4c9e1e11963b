package metrics

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// OTLP is the otel: section of $TF_HOME/config.yaml as metrics read it.
// Endpoint is a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT: metrics go to
// its /v1/metrics over http/protobuf. Empty fields fall back to the
// standard environment variables (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, ..._HEADERS, ..._PROTOCOL), which
// the exporter reads itself.
type OTLP struct {
	Endpoint string
	Headers  map[string]string
	// Protocol is http/protobuf (the default) or grpc.
	Protocol string
	// Interval is how often metrics are pushed; zero means
	// OTEL_METRIC_EXPORT_INTERVAL, else 60s.
	Interval time.Duration
}

// exportTimeout bounds one push, so a collector that hangs costs a
// background goroutine its time and never a request.
const exportTimeout = 10 * time.Second

func osGetenv(k string) string { return os.Getenv(k) }

func otlpEnabled(c OTLP, getenv func(string) string) bool {
	return c.Endpoint != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != ""
}

// newOTLPExporter builds the exporter that pushes to the configured
// collector, and says where.
func newOTLPExporter(c OTLP, getenv func(string) string) (sdkmetric.Exporter, string, error) {
	protocol := c.Protocol
	for _, k := range []string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if protocol == "" {
			protocol = getenv(k)
		}
	}
	if protocol == "" {
		protocol = "http/protobuf"
	}
	endpoint := c.Endpoint
	var fromEnv string
	if endpoint == "" {
		// The exporter reads these itself; they are checked here so that
		// a malformed one is an error at start, not a silent default.
		for _, k := range []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
			if v := getenv(k); v != "" {
				endpoint, fromEnv = v, k
				break
			}
		}
	}
	where := "otel endpoint"
	if fromEnv != "" {
		where = fromEnv
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("%s %q: want a URL such as http://127.0.0.1:4318", where, endpoint)
	}
	var exp sdkmetric.Exporter
	ctx := context.Background()
	switch protocol {
	case "http/protobuf":
		opts := []otlpmetrichttp.Option{otlpmetrichttp.WithTimeout(exportTimeout)}
		if c.Endpoint != "" {
			// A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is.
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/metrics"
			opts = append(opts, otlpmetrichttp.WithEndpointURL(u.String()))
		}
		if len(c.Headers) > 0 {
			opts = append(opts, otlpmetrichttp.WithHeaders(c.Headers))
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	case "grpc":
		opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithTimeout(exportTimeout)}
		if c.Endpoint != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(u.String()))
		}
		if len(c.Headers) > 0 {
			opts = append(opts, otlpmetricgrpc.WithHeaders(c.Headers))
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	default:
		return nil, "", fmt.Errorf("otel protocol %q: want http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, "", fmt.Errorf("otlp metrics exporter: %w", err)
	}
	// Headers are left out of what status shows: they hold tokens.
	shown := *u
	shown.User = nil
	return exp, protocol + " " + shown.String(), nil
}

// exportErr keeps the last error the OpenTelemetry SDK reported (a
// failed push), which would otherwise be printed on the terminal the
// agent shares.
var exportErr atomic.Pointer[exportFailure]

type exportFailure struct {
	err error
	at  time.Time
}

func init() {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		exportErr.Store(&exportFailure{err: err, at: time.Now()})
	}))
}

// LastExportError is when the last OTLP push failed and why; err is nil
// when none has.
func LastExportError() (at time.Time, err error) {
	if f := exportErr.Load(); f != nil {
		return f.at, f.err
	}
	return time.Time{}, nil
}

// LastExportError is LastExportError's, as a message with the values of
// the configured OTLP headers (tokens) masked: a collector's answer,
// which the message quotes, may echo them.
func (m *Metrics) LastExportError() (at time.Time, msg string) {
	at, err := LastExportError()
	if m == nil || err == nil {
		return at, ""
	}
	msg = err.Error()
	for _, v := range m.secrets {
		if v != "" {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return at, msg
}

// headerValues are the values of the configured and the environment's
// OTLP headers.
func headerValues(c OTLP, getenv func(string) string) []string {
	var out []string
	for _, v := range c.Headers {
		out = append(out, v)
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"} {
		for _, kv := range strings.Split(getenv(k), ",") {
			if _, v, ok := strings.Cut(kv, "="); ok {
				out = append(out, strings.TrimSpace(v))
				if u, err := url.QueryUnescape(strings.TrimSpace(v)); err == nil {
					out = append(out, u)
				}
			}
		}
	}
	return out
}
