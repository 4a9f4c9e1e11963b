package keyring

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// naiveContains is what the finder must agree with.
func naiveContains(s string, pats []string) bool {
	for _, p := range pats {
		if p != "" && strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// Every pattern, of every length around the window and stride bounds, is
// found at every offset of texts of every length around them, and nothing
// is found where it is not.
func TestFinderAgreesWithContains(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alpha := "ab" // a small alphabet makes near misses and repeats common
	randStr := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		return string(b)
	}
	for _, lens := range [][]int{{1}, {7}, {14}, {15}, {16}, {22}, {23}, {24}, {31}, {15, 40}, {3, 28, 40, 60}, {64, 65}} {
		for round := 0; round < 40; round++ {
			var pats []string
			for _, n := range lens {
				pats = append(pats, randStr(n))
			}
			f := newFinder(pats)
			for _, p := range pats {
				for n := len(p); n < len(p)+40; n++ {
					for off := 0; off+len(p) <= n; off++ {
						text := randStr(off) + p + randStr(n-off-len(p))
						if !f.containsString(text) {
							t.Fatalf("pattern %q (lens %v) not found at %d of %q", p, lens, off, text)
						}
					}
				}
			}
			for n := 0; n < 120; n++ {
				text := randStr(n)
				if got, want := f.containsString(text), naiveContains(text, pats); got != want {
					t.Fatalf("finder says %v, Contains says %v: %q in %q", got, want, pats, text)
				}
				if got := f.contains([]byte(text)); got != naiveContains(text, pats) {
					t.Fatalf("contains([]byte) disagrees on %q", text)
				}
			}
		}
	}
}

func TestFinderNoPatterns(t *testing.T) {
	f := newFinder(nil)
	if f.containsString("anything at all, long enough to hold windows") || f.contains(nil) {
		t.Fatal("an empty finder found something")
	}
	f = newFinder([]string{""})
	if f.containsString("x") {
		t.Fatal("the empty pattern was found")
	}
}

func FuzzFinder(f *testing.F) {
	f.Add("s3cret-docs-token-0123456789", "czNjcmV0LWRvY3MtdG9rZW4tMDEyMzQ1Njc4OQ", "xx s3cret-docs-token-0123456789 yy")
	f.Add("short", "a-pattern-of-fifteen", "no match here at all")
	f.Fuzz(func(t *testing.T, p1, p2, text string) {
		pats := []string{p1, p2}
		fd := newFinder(pats)
		if got, want := fd.containsString(text), naiveContains(text, pats); got != want {
			t.Fatalf("finder %v, Contains %v: %q in %q", got, want, pats, text)
		}
		for _, p := range pats {
			if p != "" && !fd.containsString(text+p+text) {
				t.Fatalf("%q not found around %q", p, text)
			}
		}
	})
}

// Searching 10 KB of code for every wire form of three secrets (none is
// there): the finder's one pass against a strings.Contains per form.
func BenchmarkMentions10KB(b *testing.B) {
	text := strings.Repeat(`package main\n\nfunc main() { println(\"hello, world\") }\n`, 170)
	r := NewRedactor("s3cret-docs-token-0123456789", "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "npm_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
	forms := *r.forms.Load()
	b.Run("finder", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			if r.Mentions(text) {
				b.Fatal("found")
			}
		}
	})
	b.Run("contains-each", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			if naiveContains(text, forms) {
				b.Fatal("found")
			}
		}
	})
}
