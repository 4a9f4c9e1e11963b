package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/httpproxy"
)

func init() { register(caCommand()) }

func caCommand() *cli.Command {
	load := func() (*httpproxy.CA, error) {
		dir, err := home.Ensure()
		if err != nil {
			return nil, err
		}
		return httpproxy.LoadOrCreateCA(filepath.Join(dir, "ca"))
	}
	return &cli.Command{
		Name:  "ca",
		Usage: "the local CA that signs intercepted hosts' certificates (trusted by governed processes only)",
		Subcommands: []*cli.Command{
			{
				Name:  "path",
				Usage: "print the path of the CA certificate (PEM)",
				Action: func(c *cli.Context) error {
					ca, err := load()
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, ca.CertPath())
					return nil
				},
			},
			{
				Name:  "export",
				Usage: "print the CA certificate (PEM); never the key",
				Action: func(c *cli.Context) error {
					ca, err := load()
					if err != nil {
						return err
					}
					_, err = c.App.Writer.Write(ca.CertPEM())
					return err
				},
			},
		},
	}
}
