// Command tf governs what AI coding agents do on the network.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/sched"
	"github.com/tameflare/tf/version"
)

// commands collects the top-level commands; each command's file adds its
// own in init, so a command lives in one file.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

func newApp() *cli.App {
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	conventions(commands)
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print tf's version, commit, build time and Go version"}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprint(c.App.Writer, version.Get().String()) }
	app := &cli.App{
		Name:                 "tf",
		Usage:                "govern what AI coding agents do on the network",
		Version:              version.Get().Version,
		Commands:             commands,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Suggest:              false,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "color", Value: "auto", Usage: "colour the output: auto (on a terminal, unless NO_COLOR is set), always or never"},
		},
		Before: func(c *cli.Context) error {
			return setColor(c.String("color"), c.App.Writer)
		},
		OnUsageError:   onUsageError,
		ExitErrHandler: exitErr,
	}
	app.CommandNotFound = func(c *cli.Context, name string) {
		exitErr(c, unknownCommand(c, name, app.Commands))
	}
	return app
}

// exitErr prints an error once, as "tf: message", and exits with its code
// (1 unless the error carries another).
func exitErr(_ *cli.Context, err error) {
	if err == nil {
		return
	}
	code := exitFailure
	msg := err.Error()
	if ec, ok := err.(cli.ExitCoder); ok {
		code = ec.ExitCode()
	}
	if msg != "" {
		if !strings.HasPrefix(msg, "tf ") && !strings.HasPrefix(msg, "tf:") {
			msg = "tf: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
	}
	os.Exit(code)
}

func main() {
	// First: tf's process must not hold readable secrets by the time any
	// other process starts.
	if err := keyring.SealProcess(); err != nil {
		fmt.Fprintln(os.Stderr, "tf:", err)
		os.Exit(1)
	}
	if startsGateway(os.Args) {
		// Before any goroutine or secret exists: this may start tf anew.
		sched.KeepAwake()
	}
	if os.Getenv("GOGC") == "" {
		// A gateway keeps a live heap of a few MB and allocates per
		// request: at the default target (100%) the collector runs every
		// few hundred requests, over a tenth of tf run's CPU under load.
		// GOGC still overrides.
		debug.SetGCPercent(400)
	}
	app := newApp()
	if err := app.Run(reorder(app, os.Args)); err != nil {
		exitErr(nil, err)
	}
}

// startsGateway reports whether args run a long-lived gateway (tf run,
// tf serve, tf gateway serve), whose requests pay for the runtime's idle
// wake-ups.
func startsGateway(args []string) bool {
	var words []string
	for i := 1; i < len(args) && len(words) < 2; i++ {
		a := args[i]
		switch {
		case a == "--color" || a == "-color":
			i++ // its value
		case strings.HasPrefix(a, "-"):
		default:
			words = append(words, a)
		}
	}
	switch {
	case len(words) == 0:
		return false
	case words[0] == "run" || words[0] == "serve":
		return true
	}
	return len(words) == 2 && words[0] == "gateway" && words[1] == "serve"
}
