package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// colorOn says whether tf's output is coloured: --color=always, or
// --color=auto (the default) on a terminal without NO_COLOR (no-color.org)
// and with a TERM other than dumb.
var colorOn bool

func setColor(mode string, w io.Writer) error {
	switch mode {
	case "always":
		colorOn = true
	case "never":
		colorOn = false
	case "auto", "":
		f, ok := w.(*os.File)
		colorOn = ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	default:
		return cli.Exit(fmt.Sprintf("tf: --color %q: want auto, always or never (see tf --help)", mode), exitUsage)
	}
	return nil
}

// ANSI styles used across commands. Every code has two digits, so every
// painted cell grows by the same 9 bytes and tabwriter columns stay
// aligned when all cells of a column are painted.
const (
	styleRed    = "31"
	styleGreen  = "32"
	styleYellow = "33"
	styleCyan   = "36"
	styleBold   = "01"
	styleDim    = "02"
)

// paint wraps s in the style when colour is on.
func paint(style, s string) string {
	if !colorOn || s == "" {
		return s
	}
	return "\x1b[" + style + "m" + s + "\x1b[0m"
}

// paintEffect colours a decision by what it does: deny red, allow green,
// require_approval yellow.
func paintEffect(effect string) string {
	switch effect {
	case "deny", "would deny":
		return paint(styleRed, effect)
	case "allow":
		return paint(styleGreen, effect)
	case "require_approval", "would require_approval", "hold":
		return paint(styleYellow, effect)
	}
	return effect
}

// paintDecision colours a table cell by the effect of its decision; every
// cell gets a style, so that a column of them stays aligned.
func paintDecision(effect, label string) string {
	switch effect {
	case "deny":
		return paint(styleRed, label)
	case "allow":
		return paint(styleGreen, label)
	case "require_approval":
		return paint(styleYellow, label)
	}
	return paint(styleDim, label)
}
