package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"
)

// Exit codes, the same for every command: 0 ok, 1 the command failed (a
// policy with problems, failing policy tests, an audit log that does not
// verify), 2 the command line was wrong. tf run and tf mcp wrap pass the
// governed process's own code through.
const (
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a one-line usage error that points at the command's help
// instead of printing it.
func usageError(c *cli.Context, format string, args ...any) error {
	name := "tf"
	if c != nil && c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		name = "tf " + c.Command.FullName()
	}
	return cli.Exit(fmt.Sprintf("%s: %s (see %s --help)", name, fmt.Sprintf(format, args...), name), exitUsage)
}

// onUsageError turns urfave/cli's flag errors ("flag provided but not
// defined: -polcy") into one line with the closest flag.
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	var flags []cli.Flag
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		flags = c.Command.Flags
	} else {
		flags = c.App.Flags
	}
	if _, name, ok := strings.Cut(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		msg = "unknown flag --" + name
		var names []string
		for _, f := range flags {
			names = append(names, f.Names()...)
		}
		if s := closest(name, names, 1); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean --%s?)", s[0])
		}
	}
	return usageError(c, "%s", msg)
}

// unknownCommand answers a command or subcommand that does not exist.
func unknownCommand(c *cli.Context, name string, cmds []*cli.Command) error {
	var names []string
	for _, cmd := range cmds {
		if !cmd.Hidden {
			names = append(names, cmd.Names()...)
		}
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := closest(name, names, 1); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usageError(c, "%s", msg)
}

// conventions gives every command the same usage-error handling: flag
// errors in one line, an unknown subcommand named with the closest one, a
// command group without a subcommand showing its help.
func conventions(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		if len(cmd.Subcommands) > 0 {
			conventions(cmd.Subcommands)
			if cmd.Action == nil {
				subs := cmd.Subcommands
				cmd.Action = func(c *cli.Context) error {
					if c.Args().Present() {
						return unknownCommand(c, c.Args().First(), subs)
					}
					return cli.ShowSubcommandHelp(c)
				}
			}
		}
	}
}

// closest returns up to n of names nearest to s by edit distance, among
// those within a third of s's length (one edit for a short s), or that s
// is a prefix of; nearest first.
func closest(s string, names []string, n int) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	limit := max(1, len(s)/3)
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		d := smetrics.WagnerFischer(strings.ToLower(s), strings.ToLower(name), 1, 1, 1)
		if d <= limit || (len(s) >= 3 && strings.HasPrefix(name, s)) {
			cs = append(cs, cand{name, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	var out []string
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// reorder moves each flag of a command line in front of the positional
// arguments, right after the command it belongs to (`tf mcp wrap-config
// .mcp.json --policy DIR`, `tf creds set NAME --backend file`), since
// urfave/cli stops reading flags at the first positional argument and
// people write flags where they like. Everything after `--` stays as
// written, and so does a flag no command on the line knows (the parser
// then reports it). --color is the program's flag wherever it is written.
func reorder(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	// Shell completion asks with a last argument that must stay last.
	if last := args[len(args)-1]; last == "--generate-bash-completion" {
		return append(reorder(app, args[:len(args)-1]), last)
	}
	type level struct {
		name  string // the command's name; "" for the program
		flags []cli.Flag
		toks  []string
	}
	levels := []*level{{flags: app.Flags}}
	var path []string
	cmds := app.Commands
	var pos []string
	// owner is the innermost level on the line whose command knows the
	// flag written as a.
	owner := func(a string) *level {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		for k := len(levels) - 1; k >= 0; k-- {
			if findFlag(levels[k].flags, name) != nil {
				return levels[k]
			}
		}
		if name == "color" {
			return levels[0]
		}
		return levels[len(levels)-1]
	}
	for i := 1; i < len(args); {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			l := owner(a)
			n := flagTokens(l.flags, args[i:])
			l.toks = append(l.toks, args[i:i+n]...)
			i += n
			continue
		}
		if len(pos) == 0 {
			if cmd := findCommand(cmds, a); cmd != nil {
				levels = append(levels, &level{name: a, flags: cmd.Flags})
				path = append(path, a)
				cmds = cmd.Subcommands
				i++
				if cmd.SkipFlagParsing {
					// It reads its arguments itself, as written.
					pos = append(pos, args[i:]...)
					break
				}
				continue
			}
		}
		if argvCommands[strings.Join(path, " ")] {
			// The rest is a command line of its own: tf run claude
			// --resume is claude's --resume.
			pos = append(pos, args[i:]...)
			break
		}
		pos = append(pos, a)
		i++
	}
	res := []string{args[0]}
	for k, l := range levels {
		if k > 0 {
			res = append(res, l.name)
		}
		res = append(res, l.toks...)
	}
	return append(res, pos...)
}

// argvCommands take a command line as their arguments: from the first
// argument on, nothing is theirs, written after -- or not.
var argvCommands = map[string]bool{"run": true, "mcp wrap": true}

// flagTokens is how many tokens the flag at args[0] takes: one when it is
// boolean, unknown or written --name=value, else two.
func flagTokens(flags []cli.Flag, args []string) int {
	name, _, hasVal := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
	if hasVal || name == "" || len(args) < 2 {
		return 1
	}
	f := findFlag(flags, name)
	if f == nil {
		return 1
	}
	if v, ok := f.(interface{ TakesValue() bool }); ok && !v.TakesValue() {
		return 1
	}
	return 2
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		for _, n := range c.Names() {
			if n == name {
				return c
			}
		}
	}
	return nil
}
