// Package termtext makes text that an agent controls safe to print on a
// person's terminal: control characters, terminal escape sequences,
// bidirectional overrides and invalid UTF-8 are shown as escapes instead of
// acting on the terminal.
package termtext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Safe returns s with every character that could move the cursor, change
// colours, rewrite the title, reorder the line (bidi controls) or hide
// text shown as a Go-style escape (\x1b, \n, \u202e); invalid UTF-8 bytes
// are shown as \xNN. Printable text, including non-ASCII letters, is kept.
func Safe(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	if i == len(s) {
		return s // printable ASCII: nearly every value
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafe(r):
			switch r {
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				if r < 0x100 {
					fmt.Fprintf(&b, `\x%02x`, r)
				} else {
					fmt.Fprintf(&b, `\u%04x`, r)
				}
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafe reports characters that act on a terminal or on how a line reads
// rather than show as themselves.
func unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f: // C0 controls (ESC, BEL, BS, CR, LF, TAB), DEL
		return true
	case r >= 0x80 && r <= 0x9f: // C1 controls: CSI, OSC, ST in 8-bit terminals
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, // bidi marks
		r >= 0x202a && r <= 0x202e, // bidi embeddings and overrides
		r >= 0x2066 && r <= 0x2069: // bidi isolates
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	case r == 0x200b, r == 0x200c, r == 0x200d, r == 0x2060, r == 0xfeff: // zero-width, hides text
		return true
	case r >= 0xfff9 && r <= 0xfffb: // interlinear annotations
		return true
	}
	return false
}

// Args returns args with every string, error and fmt.Stringer made Safe,
// for a Printf whose format is the program's own and whose arguments may
// be an agent's.
func Args(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = Safe(v)
		case error:
			out[i] = Safe(v.Error())
		case fmt.Stringer:
			out[i] = Safe(v.String())
		default:
			out[i] = a
		}
	}
	return out
}
