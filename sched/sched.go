// Package sched keeps the Go runtime's monitor thread (sysmon) awake in
// gateway processes, which halves what the scheduler costs a request.
//
// When every P of a Go process is idle, sysmon parks in a deep sleep; the
// next system call wakes it, and it then polls every 20 µs for at least a
// millisecond "as a bet" that it will soon have a P to retake. A gateway
// at one request in flight goes idle twice per request (waiting for the
// upstream, then for the client), so sysmon was woken and polling all the
// time: about four wake-ups per request, a fifth of tf run's CPU at one
// client, and a futex wake on every request's path. On a virtual machine a
// wake-up is a context switch through the hypervisor.
//
// The runtime skips the deep sleep only while schedtrace is set, and reads
// that setting only at start, from GODEBUG. So a gateway command starts
// itself again once, at once, with schedtrace set to its largest value
// (a trace line every 24.8 days of machine uptime), then restores the
// user's GODEBUG so that no process tf starts inherits the setting.
// Without the deep sleep, sysmon backs off to one wake-up every 10 ms
// when it has nothing to do, as it does in any busy process.
//
// GODEBUG=schedtrace=0 (any schedtrace setting) turns this off.
package sched

import (
	"strings"
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

var applied bool

// Applied reports whether this process runs with sysmon kept awake.
func Applied() bool { return applied }

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
