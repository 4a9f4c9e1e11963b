//go:build unix

package metrics_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuPerOp reports the process's CPU time (user and system) per
// operation: on a machine shared with other work, wall time per op
// measures the neighbours as much as the code.
func cpuPerOp(b *testing.B) func() {
	before := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
