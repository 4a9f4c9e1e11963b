package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/version"
)

func init() {
	register(&cli.Command{
		Name:  "version",
		Usage: "print tf's version, commit, build time and Go version",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "as JSON"}},
		Action: func(c *cli.Context) error {
			in := version.Get()
			if c.Bool("json") {
				b, err := json.MarshalIndent(in, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(c.App.Writer, string(b))
				return err
			}
			_, err := fmt.Fprint(c.App.Writer, in.String())
			return err
		},
	})
}
