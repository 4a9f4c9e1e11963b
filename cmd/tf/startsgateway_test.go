package main

import (
	"strings"
	"testing"
)

// Only the commands that serve requests for a long time start themselves
// anew with the scheduler's monitor kept awake (package sched).
func TestStartsGateway(t *testing.T) {
	for line, want := range map[string]bool{
		"tf run -- claude":                       true,
		"tf --color never run --policy p -- sh":  true,
		"tf --color=always serve --listen :8080": true,
		"tf serve":                               true,
		"tf gateway serve default":               true,
		"tf gateway start":                       false,
		"tf gateway --color never serve":         true,
		"tf status":                              false,
		"tf mcp wrap -- server":                  false,
		"tf policy plan --rev x":                 false,
		"tf logs run":                            false,
		"tf --color run status":                  false, // "run" is --color's value
		"tf":                                     false,
		"tf --version":                           false,
	} {
		if got := startsGateway(strings.Fields(line)); got != want {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
}
