package keyring

import (
	"encoding/binary"
	"strings"
	"unsafe"
)

// A finder tells whether a text holds any of a set of patterns, in one
// pass whatever the number of patterns. Searching each pattern in turn
// costs a pass per secret form (five per secret), which for a 10 KB MCP
// tool result was most of what inspecting it cost.
//
// Every occurrence of a pattern of length m ≥ stride+7 covers some 8-byte
// window of the text that starts at a multiple of stride. So the finder
// reads only those windows, looks each up in a bitmap of the hashes of
// every 8-byte piece of every pattern, and compares a pattern in full only
// where the bitmap says one may sit. Patterns shorter than 15 bytes (no
// real token is) are searched one by one.
type finder struct {
	short  []string // searched with strings.Contains
	stride int      // a multiple of 8; 0 when there is no long pattern
	bits   []uint64 // bitmap over hash(window)
	// at maps a window of a pattern to where it sits in which patterns.
	at   map[uint64][]anchor
	long []string
}

// anchor places an 8-byte window at offset off of pattern long[p].
type anchor struct {
	p   int32
	off int32
}

const (
	finderWindow = 8
	finderMinLen = 2*finderWindow - 1
	finderBits   = 15 // 32 Kbit: a random window hits it once in ~100 for 300 windows
)

func newFinder(pats []string) *finder {
	f := &finder{at: map[uint64][]anchor{}}
	minLen := 0
	for _, p := range pats {
		if len(p) < finderMinLen {
			if p != "" {
				f.short = append(f.short, p)
			}
			continue
		}
		if minLen == 0 || len(p) < minLen {
			minLen = len(p)
		}
		f.long = append(f.long, p)
	}
	if len(f.long) == 0 {
		return f
	}
	// Any occurrence spans minLen-7 window starts, so one in every stride
	// of them is enough.
	f.stride = (minLen - (finderWindow - 1)) / finderWindow * finderWindow
	f.bits = make([]uint64, 1<<finderBits/64)
	for i, p := range f.long {
		for off := 0; off+finderWindow <= len(p); off++ {
			w := word(p, off)
			h := windowHash(w)
			f.bits[h/64] |= 1 << (h % 64)
			f.at[w] = append(f.at[w], anchor{p: int32(i), off: int32(off)})
		}
	}
	return f
}

// word reads the 8 bytes of s at i, little-endian.
func word(s string, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), finderWindow))
}

func windowHash(w uint64) uint64 { return (w * 0x9e3779b97f4a7c15) >> (64 - finderBits) }

// containsString reports whether s holds any of the patterns.
func (f *finder) containsString(s string) bool {
	for _, p := range f.short {
		if strings.Contains(s, p) {
			return true
		}
	}
	if f.stride == 0 {
		return false
	}
	bits := f.bits
	for i := 0; i+finderWindow <= len(s); i += f.stride {
		w := word(s, i)
		h := windowHash(w)
		if bits[h/64]&(1<<(h%64)) == 0 {
			continue
		}
		for _, a := range f.at[w] {
			p := f.long[a.p]
			start := i - int(a.off)
			if start >= 0 && start+len(p) <= len(s) && s[start:start+len(p)] == p {
				return true
			}
		}
	}
	return false
}

// contains reports whether b holds any of the patterns.
func (f *finder) contains(b []byte) bool {
	if len(b) == 0 {
		return false // no pattern is empty
	}
	return f.containsString(unsafe.String(&b[0], len(b)))
}
