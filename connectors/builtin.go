package connectors

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"

	"github.com/goccy/go-yaml"
)

// builtinFiles are the declared connectors tf ships (Slack's Web API,
// Stripe's API): YAML in the form users write, so that they read as
// examples too.
//
//go:embed builtin/*.yaml
var builtinFiles embed.FS

// builtinDeclared returns the built-in declared connectors, by file name.
func builtinDeclared() []Declared {
	names, err := fs.Glob(builtinFiles, "builtin/*.yaml")
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	out := make([]Declared, 0, len(names))
	for _, n := range names {
		data, err := builtinFiles.ReadFile(n)
		if err != nil {
			panic(err)
		}
		var d Declared
		if err := yaml.UnmarshalWithOptions(data, &d, yaml.Strict()); err != nil {
			panic(fmt.Sprintf("connectors: %s: %v", n, err)) // embedded at build time; a test loads them
		}
		out = append(out, d)
	}
	return out
}

// mustDeclared builds a built-in declared connector; the files are
// embedded and tested, so an error is a programming error.
func mustDeclared(d Declared) *DeclaredConnector {
	c, err := NewDeclared(d)
	if err != nil {
		panic(fmt.Sprintf("connectors: built-in %v", err))
	}
	return c
}
