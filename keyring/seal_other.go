//go:build !linux

package keyring

// SealProcess does nothing here yet: the secrets stay in the environment
// of tf's own process (on macOS, processes of the same user cannot read
// another's environment without the debugger entitlement).
func SealProcess() error { return nil }
