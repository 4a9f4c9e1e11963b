package sched

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KeepAwake starts the process again with sysmon kept out of deep sleep,
// unless it already runs so, the user's GODEBUG chooses otherwise, or the
// machine has been up too long. Call it first thing in main, before any
// goroutine or secret exists: on success it does not return in this
// image. If the new start fails, the process goes on as it is.
func KeepAwake() {
	if m, ok := os.LookupEnv(marker); ok {
		// The second start: the runtime has read GODEBUG; give every
		// process tf starts the user's.
		os.Unsetenv(marker)
		if v, set := decode(m); set {
			os.Setenv("GODEBUG", v)
		} else {
			os.Unsetenv("GODEBUG")
		}
		applied = true
		return
	}
	orig, set := os.LookupEnv("GODEBUG")
	if userSetsIt(orig) || uptime() > maxUptime {
		return
	}
	godebug := setting
	if orig != "" {
		godebug = orig + "," + setting
	}
	// /proc/self/exe is this very binary, even if its file was replaced
	// or removed since it started.
	_ = syscall.Exec("/proc/self/exe", os.Args, environ(os.Environ(), godebug, encode(orig, set)))
}

// uptime is how long the machine has been up; unknown counts as too long.
func uptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 1 << 62
	}
	f, _, _ := strings.Cut(string(b), " ")
	s, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 1 << 62
	}
	return time.Duration(s * float64(time.Second))
}
