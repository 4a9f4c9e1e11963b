//go:build ignore

// gen writes the committed schemas: go run gen.go (from this directory),
// or `just schema`.
package main

import (
	"log"
	"os"

	"github.com/tameflare/tf/schema"
)

func main() {
	for name, gen := range map[string]func() ([]byte, error){
		"tameflare.schema.json":       schema.GeneratePolicy,
		"tameflare-tests.schema.json": schema.GenerateTests,
	} {
		b, err := gen()
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
