// Command tf governs what AI coding agents do on the network.
package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/keyring"
)

// commands collects the top-level commands; each command's file adds its
// own in init, so a command lives in one file.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

func newApp() *cli.App {
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	return &cli.App{
		Name:                 "tf",
		Usage:                "govern what AI coding agents do on the network",
		Commands:             commands,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		ExitErrHandler:       exitErr,
	}
}

// exitErr prints an error once, as "tf: message", and exits with its code
// (1 unless the error carries another).
func exitErr(_ *cli.Context, err error) {
	if err == nil {
		return
	}
	code := 1
	if ec, ok := err.(cli.ExitCoder); ok {
		code = ec.ExitCode()
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "tf:", msg)
		}
	} else {
		fmt.Fprintln(os.Stderr, "tf:", err)
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
	if err := newApp().Run(os.Args); err != nil {
		exitErr(nil, err)
	}
}
