//go:build !unix

package metrics_test

import "testing"

// cpuPerOp reports nothing where there is no getrusage.
func cpuPerOp(*testing.B) func() { return func() {} }
