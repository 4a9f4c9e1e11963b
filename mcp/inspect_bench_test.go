package mcp

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/keyring"
)

// toolList10KB is a tools/list answer of about 10 KB: twenty tools with
// descriptions and input schemas.
func toolList10KB() []byte {
	var tools []string
	for i := 0; i < 20; i++ {
		tools = append(tools, fmt.Sprintf(`{"name":"tool_%d","description":"%s","inputSchema":{"type":"object","properties":{"path":{"type":"string","description":"the file"},"mode":{"type":"integer"}},"required":["path"]}}`,
			i, strings.Repeat("Reads a file and returns it. ", 12)))
	}
	return []byte(`{"jsonrpc":"2.0","id":7,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`)
}

// toolResult10KB is the answer to a tools/call of about 10 KB of text.
func toolResult10KB() []byte {
	text := strings.Repeat(`package main\n\nfunc main() { println(\"hello, world\") }\n`, 170)
	return []byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"` + text + `"}],"isError":false}}`)
}

// Pinning a tools/list answer of 10 KB: the digests of its tools and the
// look at the pins on disk (a stat), over what filtering the list costs
// anyway. The difference of the two sub-benchmarks is pinning's cost.
func BenchmarkPinToolList10KB(b *testing.B) {
	msg := toolList10KB()
	hide := func(ListKind, string) bool { return false }
	store := OpenPins(b.TempDir(), nil)
	pin := func(tools []ToolDigest) map[string]bool {
		changed, _, err := store.Observe("docs", tools)
		if err != nil {
			b.Fatal(err)
		}
		return changed
	}
	b.Run("filter", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		medianOf(b, func() {
			if _, _, err := filterList(msg, ToolList, hide, nil); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("filter+pin", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		medianOf(b, func() {
			if _, _, err := filterList(msg, ToolList, hide, pin); err != nil {
				b.Fatal(err)
			}
		})
	})
	// What pinning adds to a listing seen before: the digests (by the
	// items' bytes) and the look at the pins (a stat).
	b.Run("pin-only", func(b *testing.B) {
		var items [][]byte
		for i := 0; i < 20; i++ {
			items = append(items, msg[i*500:i*500+500])
		}
		digests := make([]ToolDigest, len(items))
		names := make([]string, len(items))
		for i := range names {
			names[i] = fmt.Sprintf("tool_%d", i)
		}
		b.SetBytes(int64(len(msg)))
		medianOf(b, func() {
			for i, it := range items {
				digests[i] = ToolDigest{Name: names[i], Digest: itemDigest(it, names[i], it[:400], it[400:])}
			}
			pin(digests)
		})
	})
}

// medianOf runs f b.N times and reports the median time of one run
// besides the mean: the median is what a run costs when the machine is
// not busy elsewhere (a shared machine preempts some runs for long).
func medianOf(b *testing.B, f func()) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		f()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "median-ns")
}

// Inspecting the answer to a tools/call of 10 KB as the gateway does with
// a managed secret: finding the answer by its id, reading its isError,
// and searching it for every form of the secret (none is there). "read" is
// what every answer costs without inspection (the relay reads each one to
// match it to its call and record isError); the difference of the two is
// inspection's cost.
func BenchmarkInspectResult10KB(b *testing.B) {
	msg := toolResult10KB()
	red := keyring.NewRedactor("s3cret-docs-token-0123456789", "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "npm_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
	inspect := func(a Reply) []byte {
		out, _ := RedactReply(a, red.Mentions, red.Redact)
		return out
	}
	for _, bc := range []struct {
		name    string
		inspect Inspector
	}{{"read", nil}, {"read+inspect", inspect}} {
		b.Run(bc.name, func(b *testing.B) {
			calls := map[string]Call{}
			b.SetBytes(int64(len(msg)))
			medianOf(b, func() {
				calls["n:42"] = Call{Method: "tools/call", Name: "read"}
				f := &listFilter{calls: calls, inspect: bc.inspect, onResult: func(bool) {}}
				if _, _, err := f.filterOne(msg); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
