package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/dashboard"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/rules"
)

func init() { register(dashboardCommand()) }

func dashboardCommand() *cli.Command {
	return &cli.Command{
		Name:  "dashboard",
		Usage: "serve the dashboard (traffic, approvals, kill switch, policy) on loopback",
		Description: `Serves the dashboard on 127.0.0.1 (random port) until Ctrl-C, prints a
one-time login link and opens it in a browser when one is available. The
dashboard reads $TF_HOME and talks to every running gateway.

   tf dashboard
   tf dashboard --no-open      # print the link only`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "no-open", Usage: "do not open a browser; only print the link"},
			&cli.StringFlag{Name: "listen", Usage: "loopback `ADDR` to serve on (default 127.0.0.1 on a random port)"},
		},
		Action: func(c *cli.Context) error {
			dir, err := home.Ensure()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := startDashboard(ctx, c.App.ErrWriter, dashboard.Config{Home: dir, Listen: c.String("listen")}, !c.Bool("no-open"))
			if err != nil {
				return err
			}
			defer d.Close()
			fmt.Fprintln(c.App.ErrWriter, "tf: dashboard running; Ctrl-C stops it")
			<-ctx.Done()
			return d.Close()
		},
	}
}

// startDashboard starts a dashboard, prints its one-time link and, when
// asked, opens it; a missing browser is a note, not an error.
func startDashboard(ctx context.Context, w io.Writer, cfg dashboard.Config, open bool) (*dashboard.Server, error) {
	d, err := dashboard.Start(cfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "tf: dashboard at %s (the link works once)\n", d.URL())
	if open {
		if err := d.Open(ctx); err != nil {
			fmt.Fprintf(w, "tf: open the link in a browser (%v)\n", err)
		}
	}
	return d, nil
}

// runDashboard starts the dashboard beside a gateway of tf run; policy is
// the gateway's, shown when none is pinned.
func runDashboard(c *cli.Context, dir string, policy func() *rules.Policy) (func(), error) {
	if !c.Bool("dashboard") {
		return func() {}, nil
	}
	d, err := startDashboard(context.Background(), c.App.ErrWriter, dashboard.Config{Home: dir, Policy: policy}, true)
	if err != nil {
		return nil, err
	}
	return func() { _ = d.Close() }, nil
}
