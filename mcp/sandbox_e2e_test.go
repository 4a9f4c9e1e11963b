//go:build linux

package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The official SDK's client inside tf run's sandbox starts a stdio server
// through tf mcp wrap, as an MCP client configured by tf mcp wrap-config
// does: $TF_HOME is not visible there, so the wrap asks the gateway
// outside, which decides, filters and records every line in its own log.
func TestTypeScriptSDKOverStdioWrapInSandbox(t *testing.T) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Fatal("bubblewrap is not installed (.ci/run installs it)")
	}
	node, dir := nodeDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	tf, policyDir, home := wrapFixture(t, ctx)
	server := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	// Inside, `tf` is tf's own binary, first on PATH.
	cmd := exec.CommandContext(ctx, tf, "run", "--name", "sandboxed", "--policy", policyDir, "--",
		node, filepath.Join(dir, "client.mjs"), "stdio", "tf", "mcp", "wrap", "--server", "everything", "--", node, server, "stdio")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tf run: %v\n%s", err, stderr.String())
	}
	var r clientReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("client output %q: %v\n%s", stdout.String(), err, stderr.String())
	}
	checkReport(t, r)
	checkRecords(t, home)
}
