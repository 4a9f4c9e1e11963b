package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config says where audit records are shipped. The zero Config ships
// nothing.
type Config struct {
	// Endpoint is the collector's base URL (http://localhost:4318); the
	// logs path /v1/logs is added to it, as for
	// OTEL_EXPORTER_OTLP_ENDPOINT.
	Endpoint string `yaml:"endpoint,omitempty"`
	// LogsEndpoint is the full URL logs are posted to, as for
	// OTEL_EXPORTER_OTLP_LOGS_ENDPOINT; it wins over Endpoint.
	LogsEndpoint string `yaml:"logs_endpoint,omitempty"`
	// Headers are sent with every export (an API key, a tenant). Their
	// values may be secrets: they are never logged or recorded.
	Headers map[string]string `yaml:"headers,omitempty"`
	// Protocol is http/protobuf (the default and the only one supported).
	Protocol string `yaml:"protocol,omitempty"`
	// Compression is gzip or none (the default).
	Compression string `yaml:"compression,omitempty"`
	// Timeout bounds one export (default 10s).
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Certificate is a PEM file of the CAs that sign an https endpoint's
	// certificate, instead of the system's; ClientCertificate and
	// ClientKey are PEM files of a client certificate (mutual TLS).
	Certificate       string `yaml:"certificate,omitempty"`
	ClientCertificate string `yaml:"client_certificate,omitempty"`
	ClientKey         string `yaml:"client_key,omitempty"`
}

// Enabled reports whether an endpoint is configured.
func (c Config) Enabled() bool { return c.Endpoint != "" || c.LogsEndpoint != "" }

// The standard environment variables of the OTLP exporters.
const (
	EnvEndpoint     = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvLogsEndpoint = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
	EnvHeaders      = "OTEL_EXPORTER_OTLP_HEADERS"
	EnvLogsHeaders  = "OTEL_EXPORTER_OTLP_LOGS_HEADERS"
	EnvProtocol     = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvLogsProtocol = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
	// The signal's variable (LOGS) wins over the general one of each pair.
	EnvCompression           = "OTEL_EXPORTER_OTLP_COMPRESSION"
	EnvLogsCompression       = "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"
	EnvTimeout               = "OTEL_EXPORTER_OTLP_TIMEOUT" // milliseconds
	EnvLogsTimeout           = "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"
	EnvCertificate           = "OTEL_EXPORTER_OTLP_CERTIFICATE"
	EnvLogsCertificate       = "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"
	EnvClientCertificate     = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
	EnvLogsClientCertificate = "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE"
	EnvClientKey             = "OTEL_EXPORTER_OTLP_CLIENT_KEY"
	EnvLogsClientKey         = "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY"
)

// Compressions of Config.Compression.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
)

// ProtocolHTTP is OTLP over HTTP with protobuf bodies.
const ProtocolHTTP = "http/protobuf"

// Resolve merges the config file's otel: section with the standard
// environment (getenv, usually os.Getenv): a variable that is set wins
// over the file, as it would for any OpenTelemetry SDK, so an operator can
// redirect one run without editing the file.
func Resolve(file Config, getenv func(string) string) (Config, error) {
	c := file
	if v := getenv(EnvEndpoint); v != "" {
		c.Endpoint, c.LogsEndpoint = v, ""
	}
	if v := getenv(EnvLogsEndpoint); v != "" {
		c.LogsEndpoint = v
	}
	for _, name := range []string{EnvHeaders, EnvLogsHeaders} {
		v := getenv(name)
		if v == "" {
			continue
		}
		h, err := ParseHeaders(v)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", name, err)
		}
		if c.Headers == nil {
			c.Headers = map[string]string{}
		}
		for k, val := range h {
			c.Headers[k] = val
		}
	}
	for _, name := range []string{EnvProtocol, EnvLogsProtocol} {
		if v := getenv(name); v != "" {
			c.Protocol = v
		}
	}
	for _, name := range []string{EnvCompression, EnvLogsCompression} {
		if v := getenv(name); v != "" {
			c.Compression = strings.TrimSpace(v)
		}
	}
	for _, name := range []string{EnvTimeout, EnvLogsTimeout} {
		if v := getenv(name); v != "" {
			ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || ms <= 0 || ms > math.MaxInt64/int64(time.Millisecond) {
				return Config{}, fmt.Errorf("%s=%q: want a positive number of milliseconds", name, v)
			}
			c.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	for _, p := range []struct {
		dst   *string
		names [2]string
	}{
		{&c.Certificate, [2]string{EnvCertificate, EnvLogsCertificate}},
		{&c.ClientCertificate, [2]string{EnvClientCertificate, EnvLogsClientCertificate}},
		{&c.ClientKey, [2]string{EnvClientKey, EnvLogsClientKey}},
	} {
		for _, name := range p.names {
			if v := getenv(name); v != "" {
				*p.dst = v
			}
		}
	}
	return c, nil
}

// check reports a configuration that cannot work, beyond the URL.
func (c Config) check(u *url.URL) error {
	switch c.Compression {
	case "", CompressionNone, CompressionGzip:
	default:
		return fmt.Errorf("OTLP compression %q is not supported: use gzip or none", c.Compression)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("OTLP timeout %s: want a positive duration", c.Timeout)
	}
	if (c.ClientCertificate == "") != (c.ClientKey == "") {
		return errors.New("an OTLP client certificate needs both a certificate and a key file")
	}
	if u.Scheme != "https" && (c.Certificate != "" || c.ClientCertificate != "") {
		return fmt.Errorf("OTLP endpoint %s is http://: a certificate is set for TLS, which needs https://", Redact(u.String()))
	}
	return nil
}

// tlsConfig is the TLS configuration of the certificates, nil when none
// is set. Errors name the files, never their contents.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.Certificate == "" && c.ClientCertificate == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.Certificate != "" {
		pem, err := os.ReadFile(c.Certificate)
		if err != nil {
			return nil, fmt.Errorf("OTLP certificate: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OTLP certificate %s holds no PEM certificate", c.Certificate)
		}
	}
	if c.ClientCertificate != "" {
		cert, err := tls.LoadX509KeyPair(c.ClientCertificate, c.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("OTLP client certificate %s and key %s: %w", c.ClientCertificate, c.ClientKey, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ParseHeaders parses the W3C-baggage-like list of the OTLP header
// variables: key1=value1,key2=value2 with URL-encoded values. Errors
// never quote a value, which may be a secret.
func ParseHeaders(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("header %d: want KEY=VALUE", i+1)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("header %q: the value is not URL-encoded", k)
		}
		out[k] = dv
	}
	return out, nil
}

// LogsURL is where records are posted: LogsEndpoint, or Endpoint with
// /v1/logs added. It checks the URL without quoting its user info.
func (c Config) LogsURL() (*url.URL, error) {
	if !c.Enabled() {
		return nil, errors.New("no OTLP endpoint is configured")
	}
	switch c.Protocol {
	case "", ProtocolHTTP:
	case "grpc":
		return nil, errors.New("OTLP protocol grpc is not supported: use http/protobuf (port 4318)")
	default:
		return nil, fmt.Errorf("OTLP protocol %q is not supported: use http/protobuf", c.Protocol)
	}
	raw, base := c.LogsEndpoint, false
	if raw == "" {
		raw, base = c.Endpoint, true
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("OTLP endpoint %q is not a URL", Redact(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("OTLP endpoint %q: want an http:// or https:// URL such as http://localhost:4318", Redact(raw))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("OTLP endpoint %q has no host", Redact(raw))
	}
	if base {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/logs"
	} else if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// Redact returns an endpoint as it may be shown: without user info, query
// or fragment, which may carry credentials.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable: anything after the scheme may be user info.
		if i := strings.Index(raw, "://"); i >= 0 {
			return raw[:i+3] + "…"
		}
		return "…"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// headerNames lists the configured header names (never the values).
func (c Config) headerNames() []string {
	names := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
