package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/otlp"
)

func init() { register(statusCommand()) }

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:   "status",
		Usage:  "show running gateways, the kill switch, pending approvals and the last denials",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the status as JSON"}},
		Action: runStatus,
	}
}

func runStatus(c *cli.Context) error {
	dir, err := home.Dir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	o, err := admin.Collect(ctx, dir, 5)
	if err != nil {
		return err
	}
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(o)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(o.Gateways) == 0 {
		fmt.Fprintln(w, "no running gateways")
	} else {
		fmt.Fprintln(tw, "GATEWAY\tPROXY\tUPTIME\tREVISION\tMODE\tPENDING\tTOKENS")
		for _, g := range o.Gateways {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", oneLine(g.Name), oneLine(g.Proxy), now.Sub(g.Started).Round(time.Second), oneLine(short(g.Revision)), oneLine(string(g.Mode)), g.Pending, tokens(g.Tokens))
		}
		tw.Flush()
		for _, g := range o.Gateways {
			for _, n := range g.Notes {
				fmt.Fprintf(w, "  %s: %s\n", oneLine(g.Name), oneLine(n))
			}
		}
	}
	for _, u := range o.Unreachable {
		fmt.Fprintf(w, "not answering: %s (%s)\n", oneLine(u.Socket), oneLine(u.Error))
	}
	fmt.Fprintln(w)
	if o.KillSwitch.Broken != "" {
		fmt.Fprintf(w, "kill switch: file unreadable, gateways refuse everything: %s\n", oneLine(o.KillSwitch.Broken))
	} else {
		printKillState(c, o.KillSwitch)
	}
	fmt.Fprintln(w)
	if len(o.Pending) == 0 {
		fmt.Fprintln(w, "pending approvals: none")
	} else {
		fmt.Fprintln(w, "pending approvals:")
		fmt.Fprintln(tw, "  ID\tGATEWAY\tACTION\tTARGET\tRULE\tEXPIRES IN")
		for _, p := range o.Pending {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", oneLine(p.ID), oneLine(p.Gateway), oneLine(p.Action), oneLine(target(p.Resource, p.Host)), oneLine(p.Rule), p.Expires.Sub(now).Round(time.Second))
		}
		tw.Flush()
	}
	if o.Shipping != nil {
		fmt.Fprintln(w, shippingLine(o.Shipping, now))
	}
	fmt.Fprintln(w)
	switch {
	case o.AuditError != "":
		fmt.Fprintf(w, "last denials: the audit log cannot be read: %s\n", oneLine(o.AuditError))
	case len(o.Denials) == 0:
		fmt.Fprintln(w, "last denials: none")
	default:
		fmt.Fprintln(w, "last denials:")
		for _, r := range o.Denials {
			reason := ""
			if r.Decision != nil {
				reason = r.Decision.Reason
			}
			typ := ""
			if r.Action != nil {
				typ = r.Action.Type
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format("2006-01-02 15:04:05"), oneLine(r.Gateway), oneLine(r.Label()), oneLine(typ), oneLine(r.Target()), oneLine(reason))
		}
		tw.Flush()
	}
	return nil
}

// shippingLine says where the audit log is shipped and how far behind.
func shippingLine(st *otlp.Status, now time.Time) string {
	if st.Endpoint == "" {
		return "audit shipping: " + oneLine(st.Error)
	}
	s := "audit shipping to " + oneLine(st.Endpoint)
	if st.Gateway != "" {
		s += " (by gateway " + oneLine(st.Gateway) + ")"
	}
	switch {
	case st.Behind == 0:
		s += ": up to date"
	case st.Age > 0:
		s += fmt.Sprintf(": %d records behind, the oldest %s old", st.Behind, st.Age.Round(time.Second))
	default:
		s += fmt.Sprintf(": %d records behind", st.Behind)
	}
	if st.Error != "" {
		s += fmt.Sprintf("; failing since %s: %s", st.ErrorSince.Local().Format("15:04:05"), oneLine(st.Error))
	}
	if !st.Updated.IsZero() && now.Sub(st.Updated) > time.Minute && st.Behind > 0 {
		s += fmt.Sprintf(" (no gateway has shipped for %s)", now.Sub(st.Updated).Round(time.Second))
	}
	return s
}

// short shortens a commit or content hash for a table, keeping a
// "sha256:" prefix readable.
func short(rev string) string {
	prefix := ""
	if i := strings.IndexByte(rev, ':'); i >= 0 {
		prefix, rev = rev[:i+1], rev[i+1:]
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return prefix + rev
}

// tokens is a gateway's model-call usage for the status table:
// "3 calls: in 1200 out 310" ("-" before the first model call).
func tokens(t admin.Tokens) string {
	if t.Calls == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d calls: in %d out %d", t.Calls, t.Input, t.Output)
	if t.CacheRead != 0 || t.CacheWrite != 0 {
		s += fmt.Sprintf(" cache r%d w%d", t.CacheRead, t.CacheWrite)
	}
	if t.Unknown != 0 {
		s += fmt.Sprintf(" (%d unknown)", t.Unknown)
	}
	return s
}
