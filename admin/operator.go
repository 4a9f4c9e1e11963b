package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tameflare/tf/termtext"
	"io"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/killswitch"
	"github.com/tameflare/tf/otlp"
	"github.com/tameflare/tf/rules"
)

// Operator is the identity recorded for a person using tf's commands: the
// OS user name, else the uid.
func Operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

// PendingAt is a pending approval with the socket of the gateway holding
// it.
type PendingAt struct {
	approval.Request
	Socket string `json:"-"`
}

// Unreachable is a socket whose gateway did not answer (it died and left
// the socket behind, or is stuck).
type Unreachable struct {
	Socket string `json:"socket"`
	Error  string `json:"error"`
}

// Overview is what tf status shows.
type Overview struct {
	Gateways    []Status         `json:"gateways"`
	Unreachable []Unreachable    `json:"unreachable,omitempty"`
	KillSwitch  killswitch.State `json:"kill_switch"`
	Pending     []PendingAt      `json:"pending"`
	Denials     []*audit.Record  `json:"last_denials"`
	// AuditError is why the last denials could not be read.
	AuditError string `json:"audit_error,omitempty"`
	// Shipping is the state of audit shipping to OpenTelemetry, when a
	// gateway of home ever shipped.
	Shipping *otlp.Status `json:"shipping,omitempty"`
}

// Pending lists the pending approvals of every gateway of home, oldest
// first; gateways that do not answer are listed apart.
func Pending(ctx context.Context, home string) ([]PendingAt, []Unreachable, error) {
	cs, err := Clients(home)
	if err != nil {
		return nil, nil, err
	}
	var out []PendingAt
	var bad []Unreachable
	for _, c := range cs {
		rs, err := c.Approvals(ctx)
		c.Close()
		if err != nil {
			bad = append(bad, Unreachable{c.Path, err.Error()})
			continue
		}
		for _, r := range rs {
			out = append(out, PendingAt{r, c.Path})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, bad, nil
}

// Collect gathers the overview of home: each gateway's status, the kill
// switch, pending approvals and the last n denials.
func Collect(ctx context.Context, home string, n int) (Overview, error) {
	var o Overview
	cs, err := Clients(home)
	if err != nil {
		return o, err
	}
	for _, c := range cs {
		s, err := c.Status(ctx)
		if err != nil {
			c.Close()
			o.Unreachable = append(o.Unreachable, Unreachable{c.Path, err.Error()})
			continue
		}
		o.Gateways = append(o.Gateways, s)
		rs, err := c.Approvals(ctx)
		c.Close()
		if err != nil {
			o.Unreachable = append(o.Unreachable, Unreachable{c.Path, err.Error()})
			continue
		}
		for _, r := range rs {
			o.Pending = append(o.Pending, PendingAt{r, c.Path})
		}
	}
	if o.KillSwitch, err = killswitch.Read(home); err != nil {
		o.KillSwitch = killswitch.State{Version: killswitch.Version, Broken: err.Error()}
	}
	if o.Denials, err = audit.Last(audit.Dir(home), audit.Filter{Kind: audit.KindDecision, Decision: rules.Deny}, n); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.AuditError = err.Error()
	}
	if st, err := otlp.ReadStatus(home, time.Now()); err == nil {
		o.Shipping = &st
	} else if !errors.Is(err, otlp.ErrNotShipping) {
		o.Shipping = &otlp.Status{Error: err.Error()}
	}
	return o, nil
}

// ReloadAll asks every running gateway of home to read the kill switch
// now; it returns how many did and the errors of those that did not.
func ReloadAll(ctx context.Context, home string) (int, []Unreachable) {
	cs, err := Clients(home)
	if err != nil {
		return 0, []Unreachable{{Dir(home), err.Error()}}
	}
	n := 0
	var bad []Unreachable
	for _, c := range cs {
		if _, err := c.ReloadKillSwitch(ctx); err != nil {
			bad = append(bad, Unreachable{c.Path, err.Error()})
		} else {
			n++
		}
		c.Close()
	}
	return n, bad
}

// Describe writes a pending approval for a person: action, where, rule,
// params, expiry.
func Describe(w io.Writer, r approval.Request, now time.Time) {
	// Everything but the expiry can come from the agent (a path, a
	// resource, a reason that quotes it): printed through termtext.Safe,
	// so that no escape sequence reaches the person deciding.
	safe := termtext.Safe
	if r.Agent != "" {
		fmt.Fprintf(w, "approval %s  agent %s  gateway %s  rule %s\n", safe(r.ID), safe(r.Agent), safe(r.Gateway), safe(r.Rule))
	} else {
		fmt.Fprintf(w, "approval %s  gateway %s  rule %s\n", safe(r.ID), safe(r.Gateway), safe(r.Rule))
	}
	fmt.Fprintf(w, "  action:  %s", safe(r.Action))
	if r.Method != "" {
		fmt.Fprintf(w, "  (%s %s%s)", safe(r.Method), safe(r.Host), safe(r.Path))
	}
	fmt.Fprintln(w)
	if len(r.Resource) > 0 {
		keys := make([]string, 0, len(r.Resource))
		for k := range r.Resource {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, safe(k)+"="+safe(r.Resource[k]))
		}
		fmt.Fprintf(w, "  resource: %s\n", strings.Join(parts, " "))
	}
	if len(r.Params) > 0 {
		p, _ := json.Marshal(r.Params)
		fmt.Fprintf(w, "  params:  %s\n", safe(string(p)))
	}
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason:  %s\n", safe(r.Reason))
	}
	fmt.Fprintf(w, "  expires: in %s\n", r.Expires.Sub(now).Round(time.Second))
}

// Watch shows each new pending approval of every gateway of home and asks
// on in for y (approve), s (approve for the session) or n (deny), until
// ctx ends or in is exhausted. Answers are recorded as by who.
func Watch(ctx context.Context, home string, in io.Reader, out io.Writer, who string, poll time.Duration) error {
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	seen := map[string]bool{}
	fmt.Fprintln(out, "watching for approvals (Ctrl-C to stop)")
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		pending, _, err := Pending(ctx, home)
		if err != nil {
			return err
		}
		for _, p := range pending {
			if seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			fmt.Fprintln(out)
			Describe(out, p.Request, time.Now())
			for {
				fmt.Fprint(out, "approve? [y]es / [n]o / [s]ession: ")
				var line string
				select {
				case <-ctx.Done():
					return nil
				case err := <-readErr:
					fmt.Fprintln(out)
					return err
				case line = <-lines:
				}
				a := approval.Answer{Approver: who, Reason: "answered in tf approvals watch"}
				switch strings.ToLower(strings.TrimSpace(line)) {
				case "y", "yes":
					a.Approve = true
				case "s", "session":
					a.Approve, a.Session = true, true
				case "n", "no":
				default:
					continue
				}
				c := NewClient(p.Socket)
				_, err := c.Answer(ctx, p.ID, a)
				c.Close()
				switch {
				case errors.Is(err, approval.ErrNotFound):
					fmt.Fprintf(out, "%s is no longer pending (answered elsewhere, expired or cancelled)\n", p.ID)
				case err != nil:
					fmt.Fprintf(out, "answering %s: %s\n", p.ID, termtext.Safe(err.Error()))
				case a.Approve:
					fmt.Fprintf(out, "%s approved%s\n", p.ID, map[bool]string{true: " for this session", false: ""}[a.Session])
				default:
					fmt.Fprintf(out, "%s denied\n", p.ID)
				}
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		case <-t.C:
		}
	}
}
