package audit

import (
	"fmt"
	"strings"
	"testing"
)

// isLowerHex accepts exactly 0-9 and a-f, in any position.
func TestIsLowerHex(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
		for _, at := range []int{0, 31, 63} {
			b := []byte(strings.Repeat("0", 64))
			b[at] = byte(c)
			if got := isLowerHex(b); got != want {
				t.Fatalf("byte %q at %d: %v, want %v", byte(c), at, got, want)
			}
			if got := isLowerHex(string(b)); got != want {
				t.Fatalf("byte %q at %d in a string: %v, want %v", byte(c), at, got, want)
			}
		}
	}
	if !isLowerHex("") || !isLowerHex([]byte(nil)) {
		t.Fatal("the empty string is (vacuously) hex")
	}
}

// BenchmarkIsLowerHex is the check of a record's hash and prev, made
// for every record read, over distinct hashes as a log holds them (the
// same few hashes over and over let a branch predictor learn them).
func BenchmarkIsLowerHex(b *testing.B) {
	hs := make([]string, 4096)
	for i := range hs {
		hs[i] = string(canonicalHash([]byte(fmt.Sprint(i))))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !isLowerHex(hs[i%len(hs)]) || !isLowerHex([]byte(hs[(i*7)%len(hs)])) {
			b.Fatal("not hex")
		}
		i++
	}
}
