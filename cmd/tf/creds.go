package main

import (
	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/keyring"
)

func init() { register(credsCommand()) }

// credsCommand is `tf creds`: manage the secrets the gateway injects.
func credsCommand() *cli.Command {
	backend := &cli.StringFlag{
		Name:    "backend",
		Usage:   "keyring backend: secret-service, keychain, wincred, kwallet, keyctl, pass or file",
		EnvVars: []string{keyring.EnvBackend},
	}
	opts := func(c *cli.Context) keyring.Options {
		return keyring.Options{Backend: c.String("backend")}
	}
	run := func(f func(keyring.Options, []string, keyring.Console) error) cli.ActionFunc {
		return func(c *cli.Context) error {
			return f(opts(c), c.Args().Slice(), keyring.StdConsole())
		}
	}
	return &cli.Command{
		Name:  "creds",
		Usage: "manage the secrets tf injects (the agent never sees them)",
		Description: "Secrets live in the OS keyring, or in an encrypted file under $TF_HOME/keyring\n" +
			"(passphrase from TF_KEYRING_PASSPHRASE or a prompt). TF_SECRET_<NAME> in tf's\n" +
			"environment provides a secret without a keyring and takes precedence.",
		Flags: []cli.Flag{backend},
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "store a secret; the value is read from a hidden prompt or from stdin, never from an argument",
				ArgsUsage: "NAME",
				Action:    run(keyring.CmdSet),
			},
			{
				Name:   "list",
				Usage:  "list secret names and the backend (never values)",
				Action: run(keyring.CmdList),
			},
			{
				Name:      "rm",
				Usage:     "remove a secret",
				ArgsUsage: "NAME",
				Action:    run(keyring.CmdRemove),
			},
			{
				Name:   "backends",
				Usage:  "list the keyring backends available here; * marks the one in use",
				Action: run(keyring.CmdBackends),
			},
		},
	}
}
