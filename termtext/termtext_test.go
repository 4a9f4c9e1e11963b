package termtext

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden file")

// The inputs an agent can put in a path, a resource, a param or a reason,
// and what a person sees of them.
var inputs = []string{
	"plain/path/to/repo",
	"café, naïve, 日本語, emoji 🎉",
	"\x1b[2J\x1b[H approved by admin",                       // clear screen, cursor home
	"\x1b]0;owned\x07",                                      // OSC: set the title
	"\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", // OSC 8 hyperlink
	"line1\nline2\r\tend",
	"back\bspace and bell\a and del\x7f",
	"\u009b31m8-bit CSI",
	"rm -rf \u202eexe.txt", // right-to-left override
	"isolate\u2066x\u2069 and mark\u200f",
	"zero\u200bwidth and bom\ufeff",
	"line\u2028separator",
	"invalid \xff\xfe utf-8 and a lone \xc3",
}

func TestSafeGolden(t *testing.T) {
	var b strings.Builder
	for _, in := range inputs {
		fmt.Fprintf(&b, "%q\n\t%s\n", in, Safe(in))
	}
	golden := filepath.Join("testdata", "safe.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("Safe output differs from %s (go test -update to rewrite):\n%s", golden, b.String())
	}
}

// Nothing Safe returns acts on a terminal.
func TestSafeLeavesNoControls(t *testing.T) {
	for _, in := range inputs {
		out := Safe(in)
		for _, r := range out {
			if unsafe(r) || r == 0xfffd {
				t.Errorf("Safe(%q) = %q keeps %U", in, out, r)
			}
		}
	}
	if s := "printable ASCII ~"; Safe(s) != s {
		t.Error("printable text changed")
	}
}

func TestArgs(t *testing.T) {
	got := fmt.Sprintf("%s %s %d %v", Args([]any{"a\x1bb", errors.New("e\nf"), 7, stringer("\x07")})...)
	if got != `a\x1bb e\nf 7 \x07` {
		t.Errorf("got %q", got)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func FuzzSafe(f *testing.F) {
	for _, in := range inputs {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Safe(s)
		for _, r := range out {
			if unsafe(r) {
				t.Fatalf("Safe(%q) keeps %U", s, r)
			}
		}
		if !strings.ContainsFunc(s, func(r rune) bool { return unsafe(r) || r == 0xfffd }) && out != s {
			t.Fatalf("Safe changed clean text %q to %q", s, out)
		}
	})
}
