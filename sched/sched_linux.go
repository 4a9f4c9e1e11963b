package sched

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// marker carries the user's GODEBUG across the second start: "=" and
	// the value, or "-" when it was unset.
	marker = "TF_SCHED_REEXEC"
	// setting keeps sysmon out of deep sleep. The trace it also asks for
	// is due when the machine's monotonic clock passes its period
	// (2^31-1 ms, 24.8 days of uptime), hence maxUptime.
	setting = "schedtrace=2147483647"
	// maxUptime leaves a gateway started on a machine up this long three
	// days before the one trace line is due; older machines run without.
	maxUptime = 21 * 24 * time.Hour
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

// userSetsIt reports whether GODEBUG already chooses schedtrace (or asks
// for scheduler detail): the user's choice wins.
func userSetsIt(godebug string) bool {
	for _, kv := range strings.Split(godebug, ",") {
		k, _, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k == "schedtrace" || k == "scheddetail" {
			return true
		}
	}
	return false
}

// encode and decode carry a possibly unset GODEBUG in marker.
func encode(v string, set bool) string {
	if !set {
		return "-"
	}
	return "=" + v
}

func decode(m string) (v string, set bool) {
	if rest, ok := strings.CutPrefix(m, "="); ok {
		return rest, true
	}
	return "", false
}

// environ is env with GODEBUG set to godebug and the marker added.
func environ(env []string, godebug, mark string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, marker+"=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GODEBUG="+godebug, marker+"="+mark)
}
