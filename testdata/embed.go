// Package testdata holds fixtures and the built-in example policy.
package testdata

import (
	"embed"
	"io/fs"
)

//go:embed policy
var policy embed.FS

// ExamplePolicy is the built-in example policy directory (tameflare.yaml,
// policies/, tests/), used when no policy is configured.
func ExamplePolicy() fs.FS {
	sub, err := fs.Sub(policy, "policy")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
