package otlp

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// procCPU is the CPU time (user and system) process pid has used, read
// from /proc: the throughput benchmarks report the collector's share, as
// it runs on the same cores as the shipper.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start with field 3 (state).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	// USER_HZ is 100 on every Linux tf supports.
	return time.Duration(utime+stime) * (time.Second / 100)
}
