package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/otlp"
	"github.com/tameflare/tf/rules"
)

// ConfigFile is the optional file of gateway settings in $TF_HOME: where
// upstreams really are (GitHub Enterprise, mirrors) and which extra CAs to
// trust for them.
//
//	upstreams:
//	  github.example.com: 10.0.0.5:443
//	upstream_cas: [/etc/ssl/corp-ca.pem]
//	github:
//	  enterprise_hosts: [github.example.com]
//	limits:
//	  body_read_timeout: 60s
//	  max_conns_per_client: 512
//	  max_inspected_body: 8388608
type ConfigFile struct {
	Upstreams   map[string]string `yaml:"upstreams,omitempty"`
	UpstreamCAs []string          `yaml:"upstream_cas,omitempty"`
	// GitHub configures the github connector.
	GitHub GitHubConfig `yaml:"github,omitempty"`
	// Limits bound what one client may hold of the proxy.
	Limits Limits `yaml:"limits,omitempty"`
	// Approvals configures where pending approvals are announced and
	// answered (see approval.Config).
	Approvals approval.Config `yaml:"approvals,omitempty"`
	// Audit configures the audit log.
	Audit AuditConfig `yaml:"audit,omitempty"`
	// Pin makes this home follow a ref in the policy repository's remote.
	Pin PinConfig `yaml:"pin,omitempty"`
	// Serve configures tf serve (see ServeConfig).
	Serve ServeConfig `yaml:"serve,omitempty"`
	// Metrics configures the Prometheus endpoint.
	Metrics MetricsConfig `yaml:"metrics,omitempty"`
	// OTel is where OpenTelemetry data goes over OTLP: the audit log
	// (otlp) and metrics; the standard OTEL_EXPORTER_OTLP_* variables
	// override it.
	//
	//	otel:
	//	  endpoint: https://otel.example.com:4318
	//	  headers: {authorization: "Bearer ..."}
	OTel otlp.Config `yaml:"otel,omitempty"`
	// MCPServers are MCP servers reached over HTTP that this machine's
	// user registered (tf mcp wrap-config registers an agent's HTTP
	// servers here): named like the policy's mcp_servers, which win where
	// a name or URL is in both (see listedMCPServers).
	MCPServers []rules.MCPServer `yaml:"mcp_servers,omitempty"`
}

// PinConfig is the pin: section of the config file: gateways follow the
// ref that tf policy apply moves in the policy repository's remote, and
// tf policy apply moves it.
//
//	pin:
//	  remote: https://git.example.com/acme/policy.git
//	  ref: refs/tf/applied     # the default
//	  require_signed: true     # applied commits must be signed by a key in trusted-keys/
//	  interval: 1m             # how often gateways fetch the ref (the default)
//	  credential: policy-repo  # keyring secret sent as the HTTP password, if any
type PinConfig struct {
	Remote        string        `yaml:"remote,omitempty"`
	Ref           string        `yaml:"ref,omitempty"`
	RequireSigned bool          `yaml:"require_signed,omitempty"`
	Interval      time.Duration `yaml:"interval,omitempty"`
	Credential    string        `yaml:"credential,omitempty"`
}

// MetricsConfig is the metrics: section of the config file.
//
//	metrics:
//	  listen: 127.0.0.1:9464   # serve Prometheus /metrics here
type MetricsConfig struct {
	// Listen is the address of /metrics; empty serves none. A second
	// gateway of the same home finds it in use and serves none (tf
	// status says so).
	Listen string `yaml:"listen,omitempty"`
	// AllowNonLoopback permits a listen address beyond loopback;
	// /metrics has no authentication.
	AllowNonLoopback bool `yaml:"allow_non_loopback,omitempty"`
	// Interval is how often OTLP metrics are pushed (default 60s, or
	// OTEL_METRIC_EXPORT_INTERVAL).
	Interval time.Duration `yaml:"interval,omitempty"`
}

// AuditConfig is the audit: section of the config file.
//
//	audit:
//	  sync: always   # fdatasync each decision before forwarding
type AuditConfig struct {
	// Sync is "group" (the default: a decision is written before the
	// request is forwarded and made durable within a few milliseconds)
	// or "always" (made durable before the request is forwarded).
	Sync string `yaml:"sync,omitempty"`
}

// GitHubConfig configures the github connector.
type GitHubConfig struct {
	// EnterpriseHosts are GitHub Enterprise Server hosts, served by the
	// github connector: REST under /api/v3, GraphQL at /api/graphql, git
	// smart HTTP and the web on the same host.
	EnterpriseHosts []string `yaml:"enterprise_hosts,omitempty"`
}

// Limits bound slow and greedy clients; zero values mean the proxy's
// defaults.
type Limits struct {
	// BodyReadTimeout bounds how slowly a request body may arrive.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout,omitempty"`
	// MaxConnsPerClient bounds the connections one client address holds.
	MaxConnsPerClient int `yaml:"max_conns_per_client,omitempty"`
	// MaxInspectedBody is how many bytes of a request body tf reads
	// before deciding (default 1 MiB). A body a rule depends on that is
	// longer is refused, so raise it for large npm publishes or contents
	// uploads.
	MaxInspectedBody int `yaml:"max_inspected_body,omitempty"`
}

// ConfigPath is where the config file lives in a state directory.
func ConfigPath(home string) string { return filepath.Join(home, "config.yaml") }

// LoadConfigFile reads path; a missing file is an empty configuration.
// Unknown keys are errors.
func LoadConfigFile(path string) (*ConfigFile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &ConfigFile{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c ConfigFile
	if err := yaml.UnmarshalWithOptions(data, &c, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%s: %s", path, yaml.FormatError(err, false, false))
	}
	if _, err := audit.ParseSyncMode(c.Audit.Sync); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for host, addr := range c.Upstreams {
		if err := CheckUpstream(host, addr); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if c.Pin.Remote == "" && (c.Pin.Ref != "" || c.Pin.RequireSigned || c.Pin.Interval != 0 || c.Pin.Credential != "") {
		return nil, fmt.Errorf("%s: pin: names no remote", path)
	}
	if c.Pin.Interval < 0 {
		return nil, fmt.Errorf("%s: pin: interval must not be negative", path)
	}
	if c.Metrics.Interval < 0 {
		return nil, fmt.Errorf("%s: metrics: interval must not be negative", path)
	}
	if c.Limits.BodyReadTimeout < 0 || c.Limits.MaxConnsPerClient < 0 || c.Limits.MaxInspectedBody < 0 {
		return nil, fmt.Errorf("%s: limits must not be negative", path)
	}
	if c.Serve.Drain < 0 {
		return nil, fmt.Errorf("%s: serve: drain must not be negative", path)
	}
	if (c.Serve.TLSCert == "") != (c.Serve.TLSKey == "") {
		return nil, fmt.Errorf("%s: serve: tls_cert and tls_key go together", path)
	}
	if err := checkMCPServers(c.MCPServers); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// ParseUpstream parses HOST=ADDR as given to tf run --upstream.
func ParseUpstream(s string) (host, addr string, err error) {
	host, addr, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("upstream %q: want HOST=ADDR, e.g. github.com=127.0.0.1:8443", s)
	}
	host = strings.ToLower(strings.TrimSpace(host))
	addr = strings.TrimSpace(addr)
	return host, addr, CheckUpstream(host, addr)
}

// CheckUpstream checks one upstreams entry.
func CheckUpstream(host, addr string) error {
	if host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("upstream host %q is not a host name", host)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("upstream address %q for %s: want HOST:PORT", addr, host)
	}
	return nil
}
