// Package gateway runs one governed session: the proxy, wired to the
// connectors that classify requests, the rules that decide them and the
// audit log that records them.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tameflare/tf/agents"
	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/httpproxy"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/keyring/injection"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/metrics"
	"github.com/tameflare/tf/otlp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/termtext"
	"github.com/tameflare/tf/version"
)

// Config describes a gateway to start.
type Config struct {
	// Name identifies the governed session in records (tf run --name).
	Name string
	// Home is tf's state directory ($TF_HOME): the CA and the audit log
	// live there.
	Home string
	// Policy decides; Mode, when set, replaces its mode.
	Policy *rules.Policy
	Mode   rules.Mode
	// Upstreams maps a host to another address to dial (GitHub
	// Enterprise, a mirror, an offline test); UpstreamCAs are PEM
	// certificates trusted for upstreams besides the system roots.
	Upstreams   map[string]string
	UpstreamCAs [][]byte
	// Secrets resolves the credentials the policy names; nil means the
	// environment (TF_SECRET_<NAME>), then the keyring.
	Secrets *keyring.Resolver
	// Connectors classifies requests; nil means the default registry.
	Connectors *connectors.Registry
	// Listen is the proxy's address; empty means 127.0.0.1 on a random port.
	Listen string
	// Isolated says the agent runs in tf's sandbox (tf run's default);
	// status, the dashboard and the audit log say so when it does not.
	Isolated bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Approvals configures the approval channels; nil means the
	// approvals: section of $TF_HOME/config.yaml.
	Approvals *approval.Config
	// ApprovalTimeout is how long a held request waits when its rule sets
	// no timeout; zero means approval.DefaultTimeout.
	ApprovalTimeout time.Duration
	// AuditSync is the audit log's durability mode; empty means the
	// audit: sync setting of $TF_HOME/config.yaml, else audit.SyncGroup.
	AuditSync audit.SyncMode
	// GitHubEnterpriseHosts are served by the github connector, besides
	// the github: enterprise_hosts of $TF_HOME/config.yaml.
	GitHubEnterpriseHosts []string
	// Limits bound clients; zero values mean the limits: section of
	// $TF_HOME/config.yaml, else the proxy's defaults.
	Limits Limits
	// Agents makes the gateway shared (tf serve): clients authenticate
	// with the per-agent tokens of $TF_HOME/agents.json instead of the
	// session token, and every action names its agent.
	Agents bool
	// ProxyTLS, when set, serves the proxy leg over TLS (an HTTPS
	// proxy), as tf serve must on an address other than loopback.
	ProxyTLS *ProxyTLS
	// MetricsListen serves Prometheus /metrics on this address (tf run
	// --metrics) instead of the metrics: listen of $TF_HOME/config.yaml;
	// unlike the file's, an address in use is an error.
	MetricsListen string
	// AgentKeys are the model API keys tf took from its own environment
	// (keyring.AdoptAgentKeys): each is injected for its connector when
	// the policy's credentials name none for it, and the agent's
	// environment holds the placeholder in its variable.
	AgentKeys []keyring.AgentKey
	// MCPAnswerTimeout bounds the wait for an answer on the stream of
	// the legacy MCP HTTP+SSE transport; zero means
	// mcp.DefaultAnswerTimeout.
	MCPAnswerTimeout time.Duration
}

// A Gateway is a running proxy that governs one session.
type Gateway struct {
	name     string
	token    string
	ca       *httpproxy.CA
	proxy    *httpproxy.Proxy
	listener net.Listener
	log      *audit.Log
	conns    *connectors.Registry
	mode     rules.Mode
	now      func() time.Time
	policy   atomic.Pointer[rules.Policy]
	secrets  *keyring.Resolver // nil when the policy names no credential
	tokens   tokenTotals       // model-call usage so far, for tf status
	direct   *http.Client      // the gateway's own requests (base lookups)
	// killSwitch is consulted before every rule; nil never refuses.
	killSwitch rules.KillSwitch
	served     chan error
	isolated   bool
	home       string
	// agentSrv serves the agent API to a sandboxed agent, if any.
	agentSrv *http.Server
	closing  sync.Once
	closeErr error
	// op is the operator controls: kill switch, approvals, admin API.
	op operator
	// authFails counts failed proxy authentications not yet recorded.
	authFails authFailures
	// plainOnce warns once that a credential was kept off plain HTTP.
	plainOnce sync.Once
	// mcpConn is the MCP connector of the default registry (nil with
	// Config.Connectors); legacy holds the open sessions of the legacy
	// HTTP+SSE transport by the endpoint their client posts to.
	mcpConn *mcp.Connector
	legacy  mcp.LegacySessions
	// mcpServers are the servers the MCP connector names: the policy's
	// and the config file's.
	mcpServers *mcpServerList
	// pins keeps the digests of the tools of listed MCP servers.
	pins *mcp.PinStore
	// agentKeys are Config.AgentKeys; agentCreds the injection of the
	// first one held for each connector.
	agentKeys  []keyring.AgentKey
	agentCreds map[string]*injection.Injection
	// peekLimit is how many body bytes the connectors see.
	peekLimit int
	// counters keep the use of rules' limits; session names this run for
	// limits per session.
	counters *rules.MemCounters
	session  string
	// agents authenticates the agents of a shared gateway; nil under
	// tf run.
	agents *agents.Watcher
	// proxyTLS says the proxy leg is TLS (an HTTPS proxy).
	proxyTLS bool
	// metrics counts decisions and latencies; nil measures nothing.
	metrics *metrics.Metrics
	// ship ships the audit log to an OpenTelemetry collector; nil when
	// none is configured.
	ship *otlp.Shipper
}

// Start starts a gateway: it loads or creates the CA, opens the audit log,
// listens and serves until Close.
func Start(cfg Config) (*Gateway, error) {
	if cfg.Policy == nil {
		return nil, errors.New("gateway: no policy")
	}
	if cfg.Home == "" {
		return nil, errors.New("gateway: no state directory")
	}
	switch cfg.Mode {
	case "", rules.Enforce, rules.Monitor:
	default:
		return nil, fmt.Errorf("mode %q: want enforce or monitor", cfg.Mode)
	}
	g := &Gateway{name: cfg.Name, conns: cfg.Connectors, mode: cfg.Mode, now: cfg.Now, served: make(chan error, 1), isolated: cfg.Isolated, home: cfg.Home}
	if g.name == "" {
		g.name = "default"
	}
	if g.now == nil {
		g.now = time.Now
	}
	g.policy.Store(cfg.Policy)
	file, err := LoadConfigFile(ConfigPath(cfg.Home))
	if err != nil {
		return nil, err
	}
	g.mcpServers = &mcpServerList{local: file.MCPServers, policy: g.policy.Load}
	if _, dropped := mergeMCPServers(cfg.Policy.MCPServers, file.MCPServers); len(dropped) > 0 {
		fmt.Fprintf(os.Stderr, "tf: the policy's mcp_servers take the name or URL of %s, registered in %s: the policy's entries apply\n",
			strings.Join(dropped, ", "), ConfigPath(cfg.Home))
	}
	limits := cfg.Limits
	if limits.BodyReadTimeout == 0 {
		limits.BodyReadTimeout = file.Limits.BodyReadTimeout
	}
	if limits.MaxConnsPerClient == 0 {
		limits.MaxConnsPerClient = file.Limits.MaxConnsPerClient
	}
	if limits.MaxInspectedBody == 0 {
		limits.MaxInspectedBody = file.Limits.MaxInspectedBody
	}
	g.peekLimit = limits.MaxInspectedBody
	if g.peekLimit == 0 {
		g.peekLimit = httpproxy.DefaultPeekLimit
	}
	g.pins = mcp.OpenPins(mcp.PinDir(cfg.Home), g.now)
	g.legacy.Timeout = cfg.MCPAnswerTimeout
	if g.conns == nil {
		reg, err := connectors.NewRegistry(connectors.Options{GitHub: connectors.GitHubOptions{
			EnterpriseHosts: append(append([]string(nil), cfg.GitHubEnterpriseHosts...), file.GitHub.EnterpriseHosts...),
			BaseLookup:      g.lookupBase,
			NeedBase:        func() bool { return needsParam(g.policy.Load(), "github.pr.merge", "base") },
			RefLookup:       g.lookupRef,
		}})
		if err != nil {
			return nil, err
		}
		g.mcpConn = g.mcpConnector()
		reg.AddSniffer(g.mcpConn) // MCP is recognised by content, on hosts no other connector serves
		g.conns = reg
	}
	if g.secrets, err = openSecrets(cfg.Policy, cfg.Secrets); err != nil {
		return nil, err
	}
	if err := g.holdAgentKeys(cfg.AgentKeys); err != nil {
		return nil, err
	}

	if g.ca, err = httpproxy.LoadOrCreateCA(filepath.Join(cfg.Home, "ca")); err != nil {
		return nil, fmt.Errorf("loading the local CA: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	for i, pem := range cfg.UpstreamCAs {
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream CA %d holds no PEM certificate", i+1)
		}
	}
	g.direct = directClient(cfg.Upstreams, roots)
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	g.token = base64.RawURLEncoding.EncodeToString(tok)

	if g.metrics, err = g.startMetrics(cfg, file); err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			_ = g.metrics.Close(context.Background())
		}
	}()
	sync := cfg.AuditSync
	if sync == "" {
		sync = audit.SyncMode(file.Audit.Sync)
	}
	var durable func(time.Duration)
	if g.metrics != nil {
		durable = g.metrics.AuditDurable
	}
	if g.log, err = audit.Open(filepath.Join(cfg.Home, "audit"), audit.Options{Gateway: g.name, Now: g.now, Sync: sync, Durable: durable}); err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	g.counters, g.session = rules.NewMemCounters(), sessionID(g.now())
	restored, err := g.restoreCounters(filepath.Join(cfg.Home, "audit"), cfg.Policy)
	if err != nil {
		// Counters that cannot be rebuilt would let a restart reset
		// every limit: refuse to start rather than fail open.
		g.log.Close()
		return nil, err
	}
	var authenticate func(user, token string) (string, bool)
	if cfg.Agents {
		g.agents = agents.Watch(cfg.Home, time.Second, func(err error) {
			_ = g.log.AppendAsync(&audit.Record{Kind: audit.KindEvent, Gateway: g.name, Event: EventAgentsUnreadable,
				Details: map[string]any{"error": err.Error()}})
		})
		authenticate = g.agents.Authenticate
	}
	g.proxy, err = httpproxy.New(httpproxy.Config{
		Authenticate:      authenticate,
		CA:                g.ca,
		Token:             g.token,
		Governor:          g,
		Upstreams:         cfg.Upstreams,
		RootCAs:           roots,
		Passthrough:       func(host string) bool { return matchHost(g.policy.Load().Passthrough, host) },
		AllowPrivate:      func(host string) bool { return matchHost(g.policy.Load().PrivateHosts, host) },
		BodyReadTimeout:   limits.BodyReadTimeout,
		MaxConnsPerClient: limits.MaxConnsPerClient,
		PeekLimit:         limits.MaxInspectedBody,
		AuthFailed:        g.authFailed,
	})
	if err != nil {
		g.closeAgents()
		g.log.Close()
		return nil, err
	}
	addr := cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if g.listener, err = net.Listen("tcp", addr); err != nil {
		g.closeAgents()
		g.log.Close()
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	if cfg.ProxyTLS != nil {
		tc, err := g.proxyTLSConfig(cfg.ProxyTLS, g.listener.Addr())
		if err != nil {
			g.listener.Close()
			g.closeAgents()
			g.log.Close()
			return nil, err
		}
		g.listener = tls.NewListener(g.listener, tc)
		g.proxyTLS = true
	}
	if err := g.startOperator(cfg); err != nil {
		g.listener.Close()
		g.closeAgents()
		g.log.Close()
		return nil, err
	}
	go func() { g.served <- g.proxy.Serve(g.listener) }()
	started = true
	g.watchMetrics()
	g.ship = startShipping(cfg.Home, g.name, file.OTel)
	if g.ship != nil {
		ship := g.ship
		g.SetShipLag(func() (int64, time.Duration) {
			n, age := ship.Lag()
			return int64(n), age
		})
	}

	p := g.policy.Load()
	details := map[string]any{
		"proxy": g.listener.Addr().String(), "pid": os.Getpid(), "revision": p.Revision,
		"policy": p.Source, "mode": string(g.Mode()), "isolated": g.isolated, "tf_version": version.Get().Short(),
		"shared": cfg.Agents, "proxy_tls": g.proxyTLS,
	}
	if p.LongestWindow() > 0 {
		// How many recorded actions the limits' counters were rebuilt from.
		details["limits_restored"] = restored
	}
	_ = g.log.Event(context.Background(), g.name, audit.EventGatewayStarted, details)
	return g, nil
}

// matchHost reports whether host matches one of the patterns, in which *
// matches any run of characters.
func matchHost(patterns []string, host string) bool {
	host = strings.ToLower(host)
	for _, p := range patterns {
		if rules.GlobMatch(p, host) {
			return true
		}
	}
	return false
}

// NotIsolated is what tf says of a gateway whose agent runs outside the
// sandbox.
const NotIsolated = "not isolated: the agent runs outside tf's sandbox and could bypass tf (connect directly, disarm the kill switch, rewrite the audit log); governance is advisory"

// SharedGateway is what tf says of a shared gateway (tf serve), whose
// agents run on other machines or in containers.
const SharedGateway = "shared gateway: its agents run elsewhere, so governance holds only where their network sends every connection through this gateway (a firewall or network policy; see deploy/)"

// ServeListener serves the proxy on ln as well: the listener on a
// sandbox's own loopback, handed over by tf inside, so that the agent's
// connections reach the proxy directly. It stops with Close.
func (g *Gateway) ServeListener(ln net.Listener) {
	go func() { _ = g.proxy.Serve(ln) }()
}

// ProxyURLAt is the proxy URL with the session credential for a client
// that reaches the proxy at addr (a sandbox's listener).
func (g *Gateway) ProxyURLAt(addr string) string {
	return (&url.URL{Scheme: "http", User: url.UserPassword("tf", g.token), Host: addr}).String()
}

// AgentProxyURL is the proxy URL an agent of a shared gateway uses, with
// its name and token: https:// when the proxy leg is TLS.
func (g *Gateway) AgentProxyURL(host, agent, token string) string {
	scheme := "http"
	if g.proxyTLS {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, User: url.UserPassword(agent, token), Host: host}).String()
}

// RecordEvent appends an event of this gateway to the audit log.
func (g *Gateway) RecordEvent(ctx context.Context, event string, details map[string]any) error {
	return g.log.Event(ctx, g.name, event, details)
}

// Name is the gateway's name.
func (g *Gateway) Name() string { return g.name }

// Addr is the proxy's listening address.
func (g *Gateway) Addr() string { return g.listener.Addr().String() }

// ProxyURL is the proxy URL with the session credential, as the governed
// process must use it.
func (g *Gateway) ProxyURL() string { return g.ProxyURLAt(g.Addr()) }

// CA is the local CA that signs intercepted hosts' certificates.
func (g *Gateway) CA() *httpproxy.CA { return g.ca }

// Policy is the policy deciding new requests.
func (g *Gateway) Policy() *rules.Policy { return g.policy.Load() }

// SetPolicy replaces the policy for requests that arrive from now on; a
// request in flight keeps the policy it was decided with.
func (g *Gateway) SetPolicy(p *rules.Policy) { g.policy.Store(p) }

// Mode is the mode in force: the override, else the policy's.
func (g *Gateway) Mode() rules.Mode {
	if g.mode != "" {
		return g.mode
	}
	return g.policy.Load().Mode
}

// Close stops the proxy, records that the gateway stopped, and closes the
// audit log.
func (g *Gateway) Close() error {
	return g.stop("the gateway stopped before anyone answered", time.Second, nil)
}

// Shutdown stops the gateway gracefully (tf serve on SIGTERM): held
// requests are refused at once with a reason that says so, new ones are
// no longer accepted, and exchanges in flight may finish within drain;
// what is still running then is cut, as Close does. The stop is recorded
// with how many holds were refused and whether the drain completed.
func (g *Gateway) Shutdown(drain time.Duration) error {
	return g.stop(ShutdownReason, drain, map[string]any{"reason": "shutdown", "drain": drain.String()})
}

// ShutdownReason is what a request held for approval is told when the
// gateway shuts down.
const ShutdownReason = "the gateway is shutting down"

func (g *Gateway) stop(holdReason string, drain time.Duration, details map[string]any) error {
	g.closing.Do(func() {
		// Held requests are answered (cancelled, with the reason) while
		// the proxy can still write their refusals.
		var err error
		held := g.cancelHolds(holdReason)
		if held > 0 || details != nil {
			ctx, cancel := context.WithTimeout(context.Background(), drain)
			err = g.proxy.Shutdown(ctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				err = nil // what is still in flight is cut, as Close does
				if details != nil {
					details["drained"] = false
				}
			} else if details != nil {
				details["drained"] = err == nil
			}
		}
		if details != nil {
			details["held_refused"] = held
		}
		err = errors.Join(err, g.proxy.Close())
		// Requests still awaiting answers on legacy MCP streams are
		// recorded as unanswered while the log is open.
		g.legacy.CloseAll()
		if g.agentSrv != nil {
			_ = g.agentSrv.Close()
		}
		g.stopOperator()
		if serr := <-g.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		if g.agents != nil {
			g.agents.Close()
		}
		g.flushAuthFailures()
		_ = g.log.Event(context.Background(), g.name, audit.EventGatewayStopped, details)
		g.closeErr = errors.Join(err, g.log.Close())
		// After the log: its last fdatasync is measured too. A push the
		// collector does not take in time is given up, not waited for.
		mctx, cancel := context.WithTimeout(context.Background(), metricsCloseWait)
		_ = g.metrics.Close(mctx)
		cancel()
		if g.ship != nil {
			_ = g.ship.Close() // what is left ships at the next start
		}
		if g.closeErr == nil {
			g.closeErr = g.checkpoint()
		}
	})
	return g.closeErr
}

// startShipping starts shipping the audit log when an OTLP endpoint is
// configured. A configuration that cannot work is said once on stderr
// (and in tf status); the gateway governs on without shipping, the local
// log keeping every record.
func startShipping(home, gateway string, file otlp.Config) *otlp.Shipper {
	warn := func(msg string) { fmt.Fprintf(os.Stderr, "tf: %s\n", termtext.Safe(msg)) }
	cfg, err := otlp.Resolve(file, os.Getenv)
	if err != nil {
		warn("audit shipping is off: " + err.Error())
		return nil
	}
	if !cfg.Enabled() {
		return nil
	}
	s, err := otlp.Start(otlp.Options{Home: home, Gateway: gateway, Config: cfg, Warn: warn})
	if err != nil {
		warn(err.Error() + "; the gateway governs on and the local log keeps every record")
		return nil
	}
	return s
}

// ShippingLag is how far audit shipping is behind the log (records and
// the age of the oldest unshipped one); ok is false when the gateway does
// not ship.
func (g *Gateway) ShippingLag() (records uint64, age time.Duration, ok bool) {
	if g.ship == nil {
		return 0, 0, false
	}
	records, age = g.ship.Lag()
	return records, age, true
}

// checkpoint signs the end of the log as the gateway stops, when the user
// has checkpoints (a checkpoint file, or the key in the environment). It
// never prompts: a keyring that needs a passphrase tf does not have is
// left alone, and the next tf audit checkpoint covers these records.
func (g *Gateway) checkpoint() error {
	file := audit.CheckpointPath(g.home)
	_, statErr := os.Stat(file)
	if _, env := os.LookupEnv(keyring.EnvName(keyring.CheckpointKeyName)); statErr != nil && !env {
		return nil
	}
	key, err := keyring.CheckpointKey(keyring.Options{Passphrase: keyring.EnvPassphraseOnly}, false)
	if err != nil {
		return nil
	}
	cp, err := audit.NewCheckpoint(audit.Dir(g.home), key, g.now())
	if err != nil {
		return err
	}
	return audit.AppendCheckpoint(file, cp)
}
