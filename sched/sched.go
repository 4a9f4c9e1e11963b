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

var applied bool

// Applied reports whether this process runs with sysmon kept awake.
func Applied() bool { return applied }
