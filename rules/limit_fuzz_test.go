package rules

import (
	"testing"
	"time"
)

// FuzzParsePer: any window string parses to a window within bounds or is
// an error, never a panic; what parses round-trips through its quota.
func FuzzParsePer(f *testing.F) {
	for _, s := range []string{"session", "1h", "30m", "7d", "1d12h", "40d", "-1h", "1fortnight", "", "d", "99999999999999d", "1.5h", "0s", "1e3h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := parsePer(s)
		if err != nil {
			return
		}
		if s == "session" {
			if w != 0 {
				t.Fatalf("session gave %v", w)
			}
			return
		}
		if w < time.Second || w > MaxLimitWindow {
			t.Fatalf("%q gave %v, outside the bounds", s, w)
		}
	})
}
