package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/goccy/go-yaml"
	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/connectors"
)

func init() {
	register(&cli.Command{
		Name:      "actions",
		Usage:     "list the action types each connector produces, with resource and params",
		ArgsUsage: "[CONNECTOR]",
		Description: `   tf actions                 # every connector
   tf actions github          # one
   tf actions --declared stripe.yaml stripe   # a declared connector's (YAML, see connectors/README.md)

docs/actions.md is the same list (tf actions --markdown).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "as JSON"},
			&cli.BoolFlag{Name: "markdown", Usage: "as the Markdown of docs/actions.md"},
			declaredFlag,
		},
		Action: actionsAction,
	})
}

var declaredFlag = &cli.StringSliceFlag{Name: "declared", Usage: "YAML file of a declared connector whose types count too; repeatable"}

// catalog is the built-in catalogue plus the declared connectors named by
// --declared.
func catalog(c *cli.Context) (connectors.Catalog, error) {
	var decl []connectors.Declared
	for _, f := range c.StringSlice("declared") {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d connectors.Declared
		if err := yaml.UnmarshalWithOptions(b, &d, yaml.Strict()); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		decl = append(decl, d)
	}
	return connectors.BuiltinCatalog(decl...)
}

func actionsAction(c *cli.Context) error {
	args, err := positional(c)
	if err != nil {
		return usageError(c, "%v", err)
	}
	if len(args) > 1 {
		return usageError(c, "give at most one connector")
	}
	cat, err := catalog(c)
	if err != nil {
		return err
	}
	if len(args) == 1 {
		sub := cat.Connector(args[0])
		if len(sub) == 0 {
			var names []string
			for _, a := range cat {
				names = append(names, a.Connector)
			}
			msg := fmt.Sprintf("no connector %q", args[0])
			if s := closest(args[0], names, 1); len(s) > 0 {
				msg += fmt.Sprintf(" (did you mean %q?)", s[0])
			}
			return usageError(c, "%s", msg)
		}
		cat = sub
	}
	w := c.App.Writer
	switch {
	case c.Bool("json"):
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(cat)
	case c.Bool("markdown"):
		return cat.WriteMarkdown(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, paint(styleBold, "TYPE")+"\tRESOURCE\tPARAMS")
	for _, a := range cat {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", paint(styleCyan, a.Type), orNone(a.Resource), orNone(a.Params))
	}
	return tw.Flush()
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ",")
}
