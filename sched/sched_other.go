//go:build !linux

package sched

// KeepAwake does nothing here: the deep sleep's cost was measured on
// Linux only.
func KeepAwake() {}
