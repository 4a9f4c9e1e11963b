package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"github.com/tameflare/tf/termtext"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/rules"
)

func init() { register(logsCommand()) }

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:  "logs",
		Usage: "show the decisions in the audit log",
		Description: "Prints one line per decision: time, gateway (and agent: gateway/agent), decision (\"would deny\" in monitor mode),\n" +
			"action, target, rule, status of the forwarded request when known, and reason.\n" +
			"--json prints the records themselves (decisions, outcomes and events) as JSON Lines.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new records as they are written"},
			&cli.IntFlag{Name: "last", Aliases: []string{"n"}, Usage: "only the last `N` (0: all; with --follow and 0, only new ones)"},
			&cli.StringFlag{Name: "since", Usage: "only records newer than a `DURATION` (1h) or an RFC 3339 time"},
			&cli.StringFlag{Name: "decision", Usage: "allow, deny or require_approval (deny includes \"would deny\")"},
			&cli.StringFlag{Name: "connector", Usage: "only actions of this connector (github, npm, mcp, http, ...)"},
			&cli.StringFlag{Name: "action", Usage: "only action types matching this `GLOB` (* matches anything: github.pr.*)"},
			&cli.StringFlag{Name: "gateway", Usage: "only records of this gateway (tf run --name)"},
			&cli.StringFlag{Name: "agent", Usage: "only decisions of this agent of a shared gateway (tf agents add NAME)"},
			&cli.StringFlag{Name: "kind", Usage: "with --json: only decision, outcome or event records"},
			&cli.BoolFlag{Name: "json", Usage: "print records as JSON Lines"},
			&cli.BoolFlag{Name: "csv", Usage: "print a CSV header and one row per decision"},
		},
		Action: runLogs,
	}
}

func runLogs(c *cli.Context) error {
	if c.Bool("json") && c.Bool("csv") {
		return cli.Exit("--json and --csv exclude each other", 2)
	}
	if c.Int("last") < 0 {
		return cli.Exit("--last must not be negative", 2)
	}
	f, err := logsFilter(c, time.Now())
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if f.Kind != "" && !c.Bool("json") {
		return cli.Exit("--kind needs --json: the table and CSV show decisions", 2)
	}
	h, err := home.Dir()
	if err != nil {
		return err
	}
	dir := audit.Dir(h)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := c.App.Writer
	if c.Bool("json") {
		return logsJSON(ctx, out, dir, f, c.Int("last"), c.Bool("follow"))
	}
	p := newRowPrinter(out, c.Bool("csv"), c.Bool("follow"))
	return logsRows(ctx, p, dir, f, c.Int("last"), c.Bool("follow"))
}

func logsFilter(c *cli.Context, now time.Time) (audit.Filter, error) {
	f := audit.Filter{
		Kind:      audit.Kind(c.String("kind")),
		Decision:  rules.Effect(c.String("decision")),
		Connector: c.String("connector"),
		Action:    c.String("action"),
		Gateway:   c.String("gateway"),
		Agent:     c.String("agent"),
	}
	if s := c.String("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			if d < 0 {
				return f, fmt.Errorf("--since %s: want a positive duration", s)
			}
			f.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			f.Since = t
		} else {
			return f, fmt.Errorf("--since %q: want a duration such as 1h or an RFC 3339 time", s)
		}
	}
	return f, f.Validate()
}

// logsJSON prints the stored lines themselves, byte for byte.
func logsJSON(ctx context.Context, out io.Writer, dir string, f audit.Filter, last int, follow bool) error {
	emit := func(r *audit.Record) error {
		_, err := fmt.Fprintf(out, "%s\n", r.Line)
		return err
	}
	if !follow && last == 0 {
		return audit.Scan(dir, f, emit)
	}
	// Read the end first: what is written meanwhile is either among the
	// last records or followed, never lost between the two.
	after, err := audit.End(dir)
	if err != nil {
		return err
	}
	if last > 0 {
		recs, err := audit.Last(dir, f, last)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := emit(r); err != nil {
				return err
			}
			after = max(after, r.Seq)
		}
	}
	if !follow {
		return nil
	}
	return audit.Follow(ctx, dir, f, after, emit)
}

func logsRows(ctx context.Context, p *rowPrinter, dir string, f audit.Filter, last int, follow bool) error {
	var after uint64
	if follow {
		end, err := audit.End(dir)
		if err != nil {
			return err
		}
		after = end
	}
	if !follow || last > 0 {
		err := audit.Rows(dir, f, last, func(r audit.Row) error {
			after = max(after, r.Decision.Seq)
			return p.row(r)
		})
		if err != nil {
			return err
		}
	}
	if err := p.flush(); err != nil || !follow {
		return err
	}
	// Following, a decision is printed when it is written; its outcome
	// comes later, so the status column stays empty.
	f.Kind = audit.KindDecision
	return audit.Follow(ctx, dir, f, after, func(r *audit.Record) error {
		if err := p.row(audit.Row{Decision: r}); err != nil {
			return err
		}
		return p.flush()
	})
}

// rowPrinter prints decision rows as an aligned table or as CSV.
type rowPrinter struct {
	tw     *tabwriter.Writer
	cw     *csv.Writer
	header bool
}

func newRowPrinter(out io.Writer, asCSV, follow bool) *rowPrinter {
	if asCSV {
		return &rowPrinter{cw: csv.NewWriter(out)}
	}
	minWidth := 0
	if follow {
		// Flushed row by row, so columns get a fixed minimum instead.
		minWidth = 12
	}
	return &rowPrinter{tw: tabwriter.NewWriter(out, minWidth, 0, 2, ' ', 0)}
}

func (p *rowPrinter) row(r audit.Row) error {
	d := r.Decision
	if p.cw != nil {
		if !p.header {
			p.header = true
			if err := p.cw.Write([]string{"time", "gateway", "request_id", "decision", "action", "target", "rule", "status", "tokens", "reason", "agent"}); err != nil {
				return err
			}
		}
		return p.cw.Write([]string{d.Time.UTC().Format(time.RFC3339Nano), oneLine(d.Gateway), oneLine(d.RequestID), oneLine(d.Label()),
			oneLine(d.Action.Type), oneLine(d.Target()), oneLine(d.Decision.Rule), oneLine(r.Status()), r.Tokens(), oneLine(d.Decision.Reason), oneLine(d.Action.Agent)})
	}
	if !p.header {
		p.header = true
		fmt.Fprintln(p.tw, "TIME\tGATEWAY\t"+paint(styleBold, "DECISION")+"\tACTION\tTARGET\tRULE\tSTATUS\tTOKENS\tREASON")
	}
	_, err := fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Time.Local().Format("2006-01-02 15:04:05"),
		cell(who(d)), paintDecision(string(d.Decision.Effect), cell(d.Label())), cell(d.Action.Type), cell(d.Target()), cell(d.Decision.Rule), cell(r.Status()), cell(r.Tokens()), oneLine(d.Decision.Reason))
	return err
}

// who names where a decision came from: the gateway, and the agent of a
// shared gateway after a slash (ci-gw/runner-3).
func who(d *audit.Record) string {
	if d.Action != nil && d.Action.Agent != "" {
		return d.Gateway + "/" + d.Action.Agent
	}
	return d.Gateway
}

func (p *rowPrinter) flush() error {
	if p.cw != nil {
		p.cw.Flush()
		return p.cw.Error()
	}
	return p.tw.Flush()
}

// cell shows an empty value as "-" so that columns stay readable.
func cell(s string) string {
	if s = oneLine(s); s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a value an agent may control on its table line and off
// the terminal's controls: tabs, line breaks, escape sequences and bidi
// overrides are shown as escapes (termtext.Safe).
func oneLine(s string) string { return termtext.Safe(s) }
