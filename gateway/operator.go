package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/httpproxy"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/killswitch"
	"github.com/tameflare/tf/rules"
)

// operator is the gateway's side of the operator controls: the kill
// switch it obeys, the approvals it holds, the admin API that reaches
// both, and the notification channels.
type operator struct {
	home     string
	started  time.Time
	timeout  time.Duration // default approval timeout
	kill     *killswitch.Watcher
	approval *approval.Manager
	webhook  *approval.Webhook
	adminLn  *admin.Listener
	adminSrv *http.Server
	slackSrv *http.Server
	slack    string // the Slack endpoint's address
	notes    []string

	// cuts holds one context per set of connectors in flight; a kill
	// switch that matches cancels it, cutting every exchange that uses it.
	cutMu sync.Mutex
	cuts  map[cutKey]*cut

	// holds counts hold calls in progress so that Close waits for their
	// records before closing the log.
	holdMu     sync.Mutex
	holdClosed bool
	holds      sync.WaitGroup
}

// cutKey names the exchanges that share a cut: one agent's (none under
// tf run) of one set of connectors, sorted and joined by NUL.
type cutKey struct{ agent, conns string }

type cut struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// startOperator claims the gateway's name and starts the kill switch
// watcher, the approvals, their channels and the admin API.
func (g *Gateway) startOperator(cfg Config) error {
	op := &g.op
	op.home, op.started, op.timeout = cfg.Home, g.now(), cfg.ApprovalTimeout
	op.cuts = map[cutKey]*cut{}
	if op.timeout <= 0 {
		op.timeout = approval.DefaultTimeout
	}
	settings := cfg.Approvals
	if settings == nil {
		file, err := LoadConfigFile(ConfigPath(cfg.Home))
		if err != nil {
			return fmt.Errorf("reading approval settings: %w", err)
		}
		settings = &file.Approvals
	}

	var err error
	if op.adminLn, err = admin.Listen(cfg.Home, g.name); err != nil {
		return err
	}
	var verifier *approval.SlackVerifier
	if settings.SlackListen != "" {
		if settings.SlackSigningSecretName == "" {
			op.adminLn.Close()
			return errors.New("approvals: slack_listen needs slack_signing_secret_name")
		}
		secret, err := keyring.NewResolver(nil, keyring.ResolverOptions{}).Get(settings.SlackSigningSecretName)
		if err != nil {
			op.adminLn.Close()
			return fmt.Errorf("approvals: slack signing secret: %w", err)
		}
		verifier = approval.NewSlackVerifier(secret, g.now)
	}

	notify := func(approval.Request) {}
	if settings.WebhookURL != "" {
		op.webhook = approval.NewWebhook(settings.WebhookURL, nil)
		notify = op.webhook.Notify
	}
	op.approval = approval.NewManager(approval.Options{
		Now:    g.now,
		Notify: notify,
		Refuse: func(r approval.Request) (string, bool) { return op.kill.KilledConnector(r.Agent, r.Connector) },
	})
	op.kill = killswitch.Watch(cfg.Home, g.name, killswitch.DefaultInterval, g.killSwitchChanged)
	g.killSwitch = op.kill

	op.adminSrv = &http.Server{
		Handler:           admin.Handler(g, admin.RefuseDescendants),
		ConnContext:       admin.PeerContext,
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = op.adminSrv.Serve(op.adminLn) }()

	if verifier != nil {
		ln, err := net.Listen("tcp", settings.SlackListen)
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			// Another gateway of this home serves Slack; it forwards
			// answers to every gateway through their admin sockets.
			op.notes = append(op.notes, "slack: "+settings.SlackListen+" is in use (another gateway answers Slack for all)")
		case err != nil:
			g.stopOperator()
			return fmt.Errorf("approvals: slack listener: %w", err)
		default:
			op.slack = ln.Addr().String()
			op.slackSrv = &http.Server{Handler: approval.SlackHandler(verifier, g.answerAnywhere), ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = op.slackSrv.Serve(ln) }()
		}
	}
	return nil
}

// answerAnywhere answers an approval of this gateway, or of another one of
// the same home (Slack reaches only the gateway that holds its address).
func (g *Gateway) answerAnywhere(id string, a approval.Answer) error {
	_, err := g.Answer(id, a)
	if !errors.Is(err, approval.ErrNotFound) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = admin.AnswerAny(ctx, g.op.home, id, a)
	return err
}

// cancelHolds cancels every pending approval, refuses new ones, and waits
// for the held requests to be recorded. It returns how many were held.
func (g *Gateway) cancelHolds(reason string) int {
	op := &g.op
	if op.approval == nil {
		return 0
	}
	op.holdMu.Lock()
	op.holdClosed = true
	op.holdMu.Unlock()
	n := op.approval.Close(reason)
	op.holds.Wait()
	return n
}

// stopOperator stops the admin API, the Slack listener, the webhook and
// the kill switch watcher, and cuts what is still in flight.
func (g *Gateway) stopOperator() {
	op := &g.op
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if op.adminSrv != nil {
		_ = op.adminSrv.Shutdown(ctx)
	}
	if op.adminLn != nil {
		op.adminLn.Close()
	}
	if op.slackSrv != nil {
		_ = op.slackSrv.Shutdown(ctx)
	}
	if op.webhook != nil {
		op.webhook.Close()
	}
	if op.kill != nil {
		op.kill.Close()
	}
	op.cutMu.Lock()
	for k, c := range op.cuts {
		c.cancel(errors.New("the gateway stopped"))
		delete(op.cuts, k)
	}
	op.cutMu.Unlock()
}

// killSwitchChanged cuts the exchanges in flight and denies the held
// approvals that the new state stops.
func (g *Gateway) killSwitchChanged(st killswitch.State) {
	op := &g.op
	op.cutMu.Lock()
	for k, c := range op.cuts {
		for conn := range strings.SplitSeq(k.conns, "\x00") {
			if sw, ok := st.Match(g.name, k.agent, conn); ok {
				c.cancel(errors.New(sw.Describe()))
				delete(op.cuts, k)
				break
			}
		}
	}
	op.cutMu.Unlock()
	if op.approval == nil {
		return
	}
	op.approval.Deny(func(r approval.Request) bool {
		_, ok := st.Match(g.name, r.Agent, r.Connector)
		return ok
	}, approval.Result{Outcome: approval.Denied, Approver: "kill switch", KillSwitch: true, Reason: killReason(st, g.name)})
}

// killReason describes the switches that stop this gateway's traffic.
func killReason(st killswitch.State, gateway string) string {
	var rs []string
	for _, sw := range st.Switches {
		rs = append(rs, sw.Describe())
	}
	if len(rs) == 0 {
		return "the kill switch is active"
	}
	return strings.Join(rs, "; ")
}

// cutOff returns a context that ends when a kill switch stops one of the
// actions' connectors. Exchanges with the same connectors share one
// context, so nothing is left to release when an exchange ends.
func (g *Gateway) cutOff(actions []rules.Action) context.Context {
	op := &g.op
	if op.kill == nil {
		return nil
	}
	// The key names the connectors, sorted, joined by NUL, and the agent
	// (a switch for one agent cuts only its exchanges); the common case,
	// a request of one connector, allocates nothing unless its context is
	// new.
	conns := oneConnector(actions)
	if conns == "" {
		cs := make([]string, 0, len(actions))
		for _, a := range actions {
			cs = append(cs, a.Connector)
		}
		sort.Strings(cs)
		conns = strings.Join(compact(cs), "\x00")
	}
	agent := ""
	if len(actions) > 0 {
		agent = actions[0].Agent // one request, one agent
	}
	key := cutKey{agent, conns}

	// Under cutMu, which killSwitchChanged also takes, after the new
	// state is in force: a switch turned on now is seen either here or
	// there.
	op.cutMu.Lock()
	defer op.cutMu.Unlock()
	for c := range strings.SplitSeq(conns, "\x00") {
		if reason, killed := op.kill.KilledConnector(agent, c); killed {
			return cancelledCtx(reason)
		}
	}
	if c := op.cuts[key]; c != nil {
		return c.ctx
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	op.cuts[key] = &cut{ctx: ctx, cancel: cancel}
	return ctx
}

// cancelledCtx returns a context already ended by a kill switch.
func cancelledCtx(reason string) context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New(reason))
	return ctx
}

// oneConnector returns the connector of actions when they all have the
// same one, else "".
func oneConnector(actions []rules.Action) string {
	if len(actions) == 0 {
		return ""
	}
	c := actions[0].Connector
	for _, a := range actions[1:] {
		if a.Connector != c {
			return ""
		}
	}
	return c
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

var _ admin.Backend = (*Gateway)(nil)

// Status describes the gateway for tf status.
func (g *Gateway) Status() admin.Status {
	p := g.policy.Load()
	s := admin.Status{
		Name: g.name, PID: os.Getpid(), Proxy: g.Addr(), Started: g.op.started,
		Revision: p.Revision, Mode: string(g.Mode()), Slack: g.op.slack,
		Notes: append(append([]string(nil), g.op.notes...), g.metricsNotes()...), Isolated: g.isolated,
		Tokens: g.tokens.get(), Shared: g.agents != nil,
	}
	switch {
	case s.Shared:
		s.Notes = append(s.Notes, SharedGateway)
	case !g.isolated:
		s.Notes = append(s.Notes, NotIsolated)
	}
	if g.op.approval != nil {
		s.Pending = len(g.op.approval.Pending())
	}
	if g.op.kill != nil {
		s.Kill = g.op.kill.State()
	}
	if g.op.webhook != nil {
		if failed, dropped, last := g.op.webhook.Stats(); failed+dropped > 0 {
			note := fmt.Sprintf("webhook: %d posts failed, %d dropped", failed, dropped)
			if last != nil {
				note += " (last: " + last.Error() + ")"
			}
			s.Notes = append(s.Notes, note)
		}
	}
	return s
}

// Approvals lists the approvals pending at this gateway.
func (g *Gateway) Approvals() []approval.Request {
	if g.op.approval == nil {
		return []approval.Request{}
	}
	return g.op.approval.Pending()
}

// Answer answers a pending approval of this gateway; the held request
// records the answer and goes on.
func (g *Gateway) Answer(id string, a approval.Answer) (approval.Request, error) {
	if g.op.approval == nil {
		return approval.Request{}, fmt.Errorf("%w: %s", approval.ErrNotFound, id)
	}
	return g.op.approval.Answer(id, a)
}

// ReloadKillSwitch reads the kill switch file now.
func (g *Gateway) ReloadKillSwitch() killswitch.State {
	if g.op.kill == nil {
		return killswitch.State{Version: killswitch.Version}
	}
	return g.op.kill.Reload()
}

// AdminSocket is the path of the gateway's admin socket.
func (g *Gateway) AdminSocket() string { return g.op.adminLn.Path() }

// markKillSwitch adds X-TF-Kill-Switch: active to a refusal the kill
// switch caused.
func markKillSwitch(r *httpproxy.Response, d rules.Decision) {
	if d.KillSwitch && r != nil {
		if r.Header == nil {
			r.Header = http.Header{}
		}
		r.Header.Set("X-TF-Kill-Switch", "active")
	}
}
