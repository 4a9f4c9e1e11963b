//go:build !linux

package gateway

// fsType names the file system dir is on, where the test knows how.
func fsType(dir string) string { return "unknown" }
