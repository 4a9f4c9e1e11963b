package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tameflare/tf/agent"
)

// Flags may come after positional arguments for every command; what
// follows -- is left alone, and --color is lifted to the program.
func TestReorder(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want string }{
		{"tf mcp wrap-config .mcp.json --policy DIR", "tf mcp wrap-config --policy DIR .mcp.json"},
		{"tf mcp wrap-config --policy DIR .mcp.json", "tf mcp wrap-config --policy DIR .mcp.json"},
		{"tf creds set gh-token --backend file", "tf creds --backend file set gh-token"},
		{"tf policy explain DIR --action a.json --json", "tf policy explain --action a.json --json DIR"},
		{"tf run --policy p -- curl --policy x", "tf run --policy p -- curl --policy x"},
		{"tf run -- sh -c exit", "tf run -- sh -c exit"},
		{"tf logs --color=never --json", "tf --color=never logs --json"},
		{"tf policy plan DIR --color always", "tf --color always policy plan DIR"},
		{"tf logs --nope x", "tf logs --nope x"},
		{"tf gateway start dev --policy p --upstream a=b", "tf gateway start --policy p --upstream a=b dev"},
		{"tf policy --generate-bash-completion", "tf policy --generate-bash-completion"},
		// A command line of its own is left as written, -- or not.
		{"tf run --policy p claude --resume x --policy y", "tf run --policy p claude --resume x --policy y"},
		{"tf mcp wrap --server s npx -y pkg", "tf mcp wrap --server s npx -y pkg"},
		// So are the arguments of a command that parses its own.
		{"tf " + agent.InitCommand + " --listen a --handoff b -- sh -c x", "tf " + agent.InitCommand + " --listen a --handoff b -- sh -c x"},
	} {
		got := strings.Join(reorder(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	names := []string{"policy", "logs", "status", "approvals", "audit", "run"}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"polcy", []string{"policy"}},
		{"log", []string{"logs"}},
		{"stauts", []string{"status"}},
		{"approv", []string{"approvals"}},
		{"xyz", nil},
		{"foo", nil},
	} {
		if got := closest(tc.in, names, 1); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("closest(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
