//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/agent"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// claudeBin is the real Claude Code, pinned in testdata/claude-code and
// installed there by .ci/run (npm ci).
func claudeBin(t *testing.T) string { return npmBin(t, "Claude Code", "claude-code", "claude") }

// npmBin is the command cmd of an agent pinned in testdata/dir, which
// scripts/test installs there (npm ci).
func npmBin(t *testing.T, agent, dir, cmd string) string {
	t.Helper()
	bin := absPath(t, filepath.Join("testdata", dir, "node_modules", ".bin", cmd))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is not installed; run: cd cmd/tf/testdata/%s && npm ci", agent, dir)
	}
	return bin
}

// messagesStandIn answers the Messages API as Anthropic's does and every
// other endpoint with {}; it records what it was asked. With a script, a
// model call that offers tools is answered with the script's next tool
// call (the step is the number of tool results the conversation already
// holds, so a retried request gets the same answer), and the tool results
// Claude Code sends back are kept; a call without tools (Claude Code's
// side questions) and the call after the last step get text.
type messagesStandIn struct {
	mu      sync.Mutex
	paths   []string
	keys    []string // the x-api-key of each model call
	script  []toolStep
	results []toolResult // what the model received for each step
}

// toolStep is one tool call of the scripted model.
type toolStep struct {
	name  string // Bash, mcp__docs__echo
	input map[string]any
}

// toolResult is the tool_result block Claude Code sent for a step.
type toolResult struct {
	text    string
	isError bool
}

// toolResults reads the tool_result blocks of a Messages API request, in
// order.
func toolResults(body []byte) []toolResult {
	var req struct {
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	json.Unmarshal(body, &req)
	var out []toolResult
	for _, m := range req.Messages {
		var blocks []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
			IsError bool            `json:"is_error"`
		}
		if json.Unmarshal(m.Content, &blocks) != nil {
			continue // a plain string
		}
		for _, b := range blocks {
			if b.Type != "tool_result" {
				continue
			}
			var text string
			if json.Unmarshal(b.Content, &text) != nil {
				var parts []struct{ Text string }
				json.Unmarshal(b.Content, &parts)
				for _, p := range parts {
					text += p.Text
				}
			}
			out = append(out, toolResult{text, b.IsError})
		}
	}
	return out
}

func (m *messagesStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.paths = append(m.paths, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/v1/messages" {
		m.keys = append(m.keys, r.Header.Get("X-Api-Key"))
	}
	m.mu.Unlock()
	if r.URL.Path != "/v1/messages" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
		return
	}
	var req struct {
		Model  string            `json:"model"`
		Stream bool              `json:"stream"`
		Tools  []json.RawMessage `json:"tools"`
	}
	json.Unmarshal(body, &req)
	text := "hello from the stand-in"
	var step *toolStep
	id := ""
	if len(req.Tools) > 0 && len(m.script) > 0 {
		results := toolResults(body)
		m.mu.Lock()
		if len(results) > len(m.results) {
			m.results = results
		}
		m.mu.Unlock()
		if n := len(results); n < len(m.script) {
			step, id = &m.script[n], fmt.Sprintf("toolu_%02d", n)
		} else {
			text = "all done"
		}
	}
	block, stop := fmt.Sprintf(`{"type":"text","text":%q}`, text), "end_turn"
	if step != nil {
		in, _ := json.Marshal(step.input)
		block, stop = fmt.Sprintf(`{"type":"tool_use","id":%q,"name":%q,"input":%s}`, id, step.name, in), "tool_use"
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[%s],"stop_reason":%q,"usage":{"input_tokens":10,"output_tokens":5}}`, req.Model, block, stop)
		return
	}
	start, delta := `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, text)
	if step != nil {
		in, _ := json.Marshal(step.input)
		start = fmt.Sprintf(`{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":%q,"name":%q,"input":{}}}`, id, step.name)
		delta = fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":%q}}`, in)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, ev := range [][2]string{
		{"message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}`, req.Model)},
		{"content_block_start", start},
		{"content_block_delta", delta},
		{"content_block_stop", `{"type":"content_block_stop","index":0}`},
		{"message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":%q},"usage":{"output_tokens":5}}`, stop)},
		{"message_stop", `{"type":"message_stop"}`},
	} {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev[0], ev[1])
		w.(http.Flusher).Flush()
	}
}

// The real Claude Code runs inside tf run's sandbox. With the built-in
// policy (no --policy), a scripted session: the stand-in model makes
// Claude Code push, open and merge a pull request and call MCP tools (see
// claudeScripted). With the starter of tf init --agent claude-code and an
// HTTP MCP server listed: its model calls go through tf as
// anthropic.messages.create and are allowed, its telemetry is refused
// without a word from it, and its MCP tool call is held and refused with
// the reason in the tool result (claudeStarter).
func TestClaudeCodeInSandbox(t *testing.T) {
	requireSandbox(t)
	claude := claudeBin(t)
	t.Run("scripted", func(t *testing.T) { claudeScripted(t, claude) })
	t.Run("preset", func(t *testing.T) { claudeStarter(t, claude, "init", "--agent", "claude-code") })
}

// claudeRunLimit bounds one Claude Code session under tf run. A scripted
// session takes about a minute on an idle machine; the bound leaves room
// for a loaded one (CI runners, or this machine shared with other jobs).
const claudeRunLimit = 4 * time.Minute

// awaitHeld waits, within the session's bound, until the session has an
// action of type typ held, asking twice a second (each ask is a tf
// process: polling faster takes CPU from the session it waits for).
func awaitHeld(t *testing.T, dir, home string, proc *tfProc, typ string) pendingApproval {
	t.Helper()
	return awaitApprovalWithin(t, claudeRunLimit, 500*time.Millisecond, dir, home, proc, typ)
}

// claudeKey is the real API key: tf holds it, the agent a placeholder.
const claudeKey = "sk-ant-api03-real-key-the-agent-never-sees"

// claudeStarter runs claude -p under the policy that tf init with
// initArgs writes, with one HTTP MCP server added to its mcp_servers: the
// stand-in model calls the server's echo tool, the starter holds the call
// for a person, the person refuses, and the model reads the rule and the
// reason.
func claudeStarter(t *testing.T, claude string, initArgs ...string) {
	node, nodeModules := nodeFixture(t)
	mcpAddr := startNodeEverything(t, node, nodeModules)
	standIn := &messagesStandIn{script: []toolStep{{"mcp__docs__echo", map[string]any{"message": "over http"}}}}
	hosts := []string{"api.anthropic.com", "platform.claude.com", "claude.ai"}
	addr, caFile := startFakeTLS(t, standIn, hosts...)
	home := t.TempDir()
	env := append(clientEnv(t), "ANTHROPIC_API_KEY="+claudeKey, "ENABLE_TOOL_SEARCH=false")
	dir := filepath.Join(t.TempDir(), "policy")
	if r := runTFIn(t, t.TempDir(), home, env, append(initArgs, dir)...); r.code != 0 {
		t.Fatalf("tf %v: exit %d\n%s", initArgs, r.code, r.stderr)
	}
	f, err := os.OpenFile(filepath.Join(dir, "tameflare.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\nmcp_servers:\n  - {name: docs, url: \"http://docs.example.test/mcp\"}\n")
	f.Close()
	work := t.TempDir() // the agent's working directory, which it sees
	mcpConfig := filepath.Join(work, "mcp.json")
	os.WriteFile(mcpConfig, []byte(`{"mcpServers":{"docs":{"type":"http","url":"http://docs.example.test/mcp"}}}`), 0o644)
	// Claude Code is installed in the checkout, which may lie under /tmp.
	args := append([]string{"run", "--name", "claude", "--policy", dir, "--ro", absPath(t, filepath.Join("testdata", "claude-code")),
		"--upstream", "docs.example.test=" + mcpAddr}, upstreamArgs(addr, caFile, hosts...)...)
	proc := startTFWithin(t, claudeRunLimit, work, home, env, append(args, "--", claude, "-p", "say hi", "--allowedTools", "mcp__docs__echo",
		"--mcp-config", mcpConfig, "--strict-mcp-config")...)
	const why = "not this tool"
	held := awaitHeld(t, work, home, proc, "mcp.docs.echo")
	if r := runTFIn(t, work, home, nil, "approvals", "deny", "--reason", why, held.ID); r.code != 0 {
		t.Fatalf("tf approvals deny: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := proc.wait(t)
	standIn.mu.Lock()
	results := standIn.results
	standIn.mu.Unlock()
	if r.code != 0 || strings.TrimSpace(r.stdout) != "all done" || len(results) != 1 {
		t.Fatalf("claude -p: exit %d, tool results %+v\nstdout:\n%s\nstderr:\n%s", r.code, results, r.stdout, r.stderr)
	}
	if res := results[0].text; !strings.Contains(res, "mcp-tools-need-a-person") || !strings.Contains(res, why) || strings.Contains(res, "over http") {
		t.Errorf("the model received, for the refused HTTP MCP call:\n%s", res)
	}
	if !strings.Contains(r.stderr, "governing with policy "+dir) {
		t.Fatalf("not governed by the starter:\n%s", r.stderr)
	}
	standIn.mu.Lock()
	paths := strings.Join(standIn.paths, "\n")
	keys := standIn.keys
	standIn.mu.Unlock()
	t.Logf("Claude Code asked the stand-in:\n%s", paths)
	if len(keys) == 0 {
		t.Error("no model call reached the stand-in")
	}
	for _, k := range keys {
		if k != claudeKey {
			t.Errorf("the model call carried x-api-key %q, want the key tf holds", k)
		}
	}
	// Every request Claude Code made was classified by the anthropic
	// connector (none fell to http.*), and the starter decided each by
	// name; the MCP server's requests are mcp.docs.*.
	modelCall := false
	for _, rec := range decisions(t, home) {
		a, d := rec.Action, rec.Decision
		t.Logf("%s %s %s%s -> %s (%s)", rec.Gateway, a.Type, a.Request.Host, a.Request.Path, d.Effect, d.Rule)
		if a.Connector == "mcp" {
			if a.Resource["server"] != "docs" || (a.Type == "mcp.docs.echo") != (d.Rule == "mcp-tools-need-a-person") {
				t.Errorf("MCP %s decided %s by %q", a.Type, d.Effect, d.Rule)
			}
			continue
		}
		if a.Connector != "anthropic" {
			t.Errorf("%s %s%s was classified by %q, want anthropic", a.Type, a.Request.Host, a.Request.Path, a.Connector)
		}
		switch a.Type {
		case "anthropic.messages.create":
			modelCall = true
			if d.Effect != rules.Allow || a.Params["model"] == nil || a.Params["stream"] != true {
				t.Errorf("model call: decision %s, params %v", d.Effect, a.Params)
			}
		case "anthropic.telemetry.send", "anthropic.claude_code.post":
			if d.Effect != rules.Deny {
				t.Errorf("telemetry %s: decision %s, want deny", a.Request.Path, d.Effect)
			}
			if strings.Contains(paths, "POST "+a.Request.Path) {
				t.Errorf("refused telemetry %s reached the upstream", a.Request.Path)
			}
		default:
			if d.Effect != rules.Allow {
				t.Errorf("%s %s: decision %s (%s)", a.Type, a.Request.Path, d.Effect, d.Reason)
			}
		}
	}
	if !modelCall {
		t.Error("no decision record of the model call")
	}
	// The model call's outcome carries the usage the stand-in's stream
	// reported (message_start: 10 in; message_delta: 5 out).
	var usages []audit.Usage
	err = audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindOutcome}, func(rec *audit.Record) error {
		if rec.Usage != nil {
			usages = append(usages, *rec.Usage)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(usages) == 0 || usages[0].Input != 10 || usages[0].Output != 5 || usages[0].Model == "" || usages[0].Unknown != "" {
		t.Errorf("usage of the model call = %+v, want 10 in, 5 out and the model", usages)
	}
	// Refused telemetry leaves Claude Code quiet: nothing on stderr but
	// tf's own lines.
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if line != "" && !strings.HasPrefix(line, "tf: ") {
			t.Errorf("Claude Code wrote to stderr: %s", line)
		}
	}
}

// Test secrets of the scripted session: none may reach the agent.
const (
	scriptGHToken = "ghp_scriptedSessionTokenNeverInTheAgent"
	scriptOpenAI  = "sk-proj-scripted-session-never-in-the-agent"
)

// claudeScripted is the scripted session of issue 13 with the built-in
// policy: the real Claude Code, driven by a stand-in model that calls its
// Bash tool and two MCP tools, inside tf run's sandbox. The model's key is
// in tf's environment only; the stand-in checks what the model receives in
// each tool result.
func claudeScripted(t *testing.T, claude string) {
	requireTool(t, "gh", "gh")
	node, nodeModules := nodeFixture(t)
	home := t.TempDir()
	env := append(clientEnv(t), "ENABLE_TOOL_SEARCH=false", "ANTHROPIC_API_KEY="+claudeKey, "OPENAI_API_KEY="+scriptOpenAI)
	var clientHome string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			clientHome = v
		}
	}
	// gh's configuration must lie where the sandbox shows it (~/.config/gh
	// is hidden as a credential store).
	env = append(env, "GH_HOST=github.com", "GH_CONFIG_DIR="+filepath.Join(clientHome, "ghcfg"), "GH_PROMPT_DISABLED=1",
		"GH_NO_UPDATE_NOTIFIER=1", "GH_SPINNER_DISABLED=1", "GH_TOKEN="+scriptGHToken,
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")

	// Upstreams: the model, a git http-backend for github.com, the fake
	// GraphQL API for api.github.com, and the reference MCP server over
	// Streamable HTTP at docs.example.test.
	standIn := &messagesStandIn{}
	modelHosts := []string{"api.anthropic.com", "platform.claude.com", "claude.ai"}
	modelAddr, modelCA := startFakeTLS(t, standIn, modelHosts...)
	repo := newGitRepo(t)
	gitUp := newUpstream(t, repo.root)
	fake := newFakeGitHub(t)
	mcpAddr := startNodeEverything(t, node, nodeModules)

	// The working directory is a clone of acme/app with a new commit.
	work := filepath.Join(t.TempDir(), "app")
	repo.git(repo.root, "clone", "-q", repo.bare, work)
	repo.git(work, "remote", "set-url", "origin", "https://github.com/acme/app.git")
	os.WriteFile(filepath.Join(work, "README"), []byte("v2\n"), 0o644)
	repo.git(work, "commit", "-q", "-am", "second")
	head := repo.git(work, "rev-parse", "HEAD")
	mainBefore := repo.ref("main")

	// Claude Code's MCP servers: docs over HTTP through the proxy, and
	// local over stdio, wired through tf by tf mcp wrap-config.
	mcpConfig := filepath.Join(clientHome, "mcp.json")
	server := filepath.Join(nodeModules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	cfg, _ := json.Marshal(map[string]any{"mcpServers": map[string]any{
		"docs":  map[string]any{"type": "http", "url": "http://docs.example.test/mcp"},
		"local": map[string]any{"command": node, "args": []string{server, "stdio"}},
	}})
	os.WriteFile(mcpConfig, cfg, 0o644)
	if r := runTFIn(t, work, home, env, "mcp", "wrap-config", mcpConfig); r.code != 0 || !strings.Contains(r.stdout, "wrapped local") || !strings.Contains(r.stdout, "registered docs") {
		t.Fatalf("tf mcp wrap-config: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	standIn.script = []toolStep{
		{"Bash", map[string]any{"command": "env", "description": "show the environment"}},
		{"Bash", map[string]any{"command": "git push origin HEAD:main", "description": "push to main"}},
		{"Bash", map[string]any{"command": "git push origin HEAD:refs/heads/feature/x", "description": "push a feature branch"}},
		{"Bash", map[string]any{"command": "gh pr create --repo acme/app --base main --head feature/x --title T --body B", "description": "open a pull request"}},
		{"Bash", map[string]any{"command": "gh pr merge 42 --repo acme/app --merge", "description": "merge it"}},
		{"mcp__docs__echo", map[string]any{"message": "over http"}},
		{"mcp__local__echo", map[string]any{"message": "over stdio"}},
	}

	args := []string{"run", "--name", "claude",
		"--ro", absPath(t, filepath.Join("testdata", "claude-code")), "--ro", nodeModules,
		"--upstream", "github.com=" + gitUp.addr(), "--upstream-ca", gitUp.caFile,
		"--upstream", "api.github.com=" + fake.addr, "--upstream-ca", fake.caFile,
		"--upstream", "docs.example.test=" + mcpAddr}
	args = append(args, upstreamArgs(modelAddr, modelCA, modelHosts...)...)
	args = append(args, "--", claude, "-p", "do the work",
		"--allowedTools", "Bash,mcp__docs__echo,mcp__local__echo",
		"--mcp-config", mcpConfig, "--strict-mcp-config")
	proc := startTFWithin(t, claudeRunLimit, work, home, env, args...)
	// The merge and the two MCP tool calls are held for a person; the
	// person here says no.
	const why = "not before the release"
	for _, typ := range []string{"github.pr.merge", "mcp.docs.echo", "mcp.local.echo"} {
		held := awaitHeld(t, work, home, proc, typ)
		if r := runTFIn(t, work, home, nil, "approvals", "deny", "--reason", why, held.ID); r.code != 0 {
			t.Fatalf("tf approvals deny: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	r := proc.wait(t)
	standIn.mu.Lock()
	results := standIn.results
	keys := standIn.keys
	standIn.mu.Unlock()
	for i, res := range results {
		t.Logf("step %d (%s): error %v\n%s", i, standIn.script[i].name, res.isError, res.text)
	}
	if r.code != 0 || strings.TrimSpace(r.stdout) != "all done" || len(results) != len(standIn.script) {
		t.Fatalf("claude -p: exit %d, %d of %d tool results\nstdout:\n%s\nstderr:\n%s", r.code, len(results), len(standIn.script), r.stdout, r.stderr)
	}
	expect := func(step int, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(results[step].text, w) {
				t.Errorf("step %d (%v): the model did not receive %q:\n%s", step, standIn.script[step].input, w, results[step].text)
			}
		}
	}

	// 0: the agent's environment holds no secret, only placeholders.
	for _, secret := range []string{claudeKey, scriptGHToken, scriptOpenAI} {
		if strings.Contains(results[0].text, secret) {
			t.Errorf("the agent's environment holds a secret:\n%s", results[0].text)
		}
	}
	expect(0, "ANTHROPIC_API_KEY=tf-managed", "OPENAI_API_KEY=tf-managed", "GH_TOKEN=tf-managed", "HTTPS_PROXY=")
	// 1: the push to main is refused; the model reads the rule and reason.
	expect(1, "protect-main", "Protected branches change through pull requests.")
	if repo.ref("main") != mainBefore {
		t.Error("main moved upstream")
	}
	// 2: the push to feature/x lands.
	if got := repo.ref("feature/x"); got != head {
		t.Errorf("feature/x is %q upstream, want %s; the model saw:\n%s", got, head, results[2].text)
	}
	// 3: gh pr create works.
	expect(3, "https://github.com/acme/app/pull/42")
	// 4: gh pr merge was held, and a person refused it.
	expect(4, "merges-need-a-human", why)
	if pr, _ := fake.pull(42); pr.State != "OPEN" {
		t.Errorf("pull request 42 is %s after a refused merge", pr.State)
	}
	// 5: the HTTP server, registered by tf mcp wrap-config, connects
	// through the proxy; its tool call is held, a person refuses it, and
	// the model reads the rule and the person's reason.
	expect(5, "mcp-tools-need-a-person", why)
	// 6: the same for the stdio server, wrapped by tf mcp wrap-config.
	expect(6, "mcp-tools-need-a-person", why)
	for _, res := range results[5:] {
		if strings.Contains(res.text, "over http") || strings.Contains(res.text, "over stdio") {
			t.Errorf("a refused MCP tool call was answered by the server: %s", res.text)
		}
	}

	// The model's key reached the model's upstream and nothing else.
	if len(keys) == 0 {
		t.Fatal("no model call reached the stand-in")
	}
	for _, k := range keys {
		if k != claudeKey {
			t.Errorf("a model call carried x-api-key %q, want the key tf holds", k)
		}
	}
	logs := runTFIn(t, work, home, nil, "logs", "--gateway", "claude")
	logsJSON := runTFIn(t, work, home, nil, "logs", "--json")
	for name, out := range map[string]string{"tf run's stdout": r.stdout, "tf run's stderr": r.stderr, "tf logs": logs.stdout, "the audit log": logsJSON.stdout} {
		for _, secret := range []string{claudeKey, scriptGHToken, scriptOpenAI} {
			if strings.Contains(out, secret) {
				t.Errorf("%s holds a secret", name)
			}
		}
	}
	if !regexp.MustCompile(`anthropic\.messages\.create .*in 10 out 5`).MatchString(logs.stdout) {
		t.Errorf("tf logs does not show the model calls' tokens:\n%s%s", logs.stdout, logs.stderr)
	}

	// Claude Code's own requests were all classified by the anthropic
	// connector; its refused telemetry never reached the upstream, and
	// Claude Code said nothing about it: stderr holds only tf's lines.
	standIn.mu.Lock()
	paths := strings.Join(standIn.paths, "\n")
	standIn.mu.Unlock()
	refused := map[string]int{} // Claude Code's refused requests by path: its retries
	for _, rec := range decisions(t, home) {
		a := rec.Action
		if a.Connector == "anthropic" && rec.Decision.Effect == rules.Deny {
			refused[a.Type+" "+a.Request.Path]++
		}
		if a.Request.Host == "api.anthropic.com" && a.Connector != "anthropic" {
			t.Errorf("%s %s was classified by %q", a.Type, a.Request.Path, a.Connector)
		}
		if a.Type == "anthropic.telemetry.send" && (rec.Decision.Effect != rules.Deny || strings.Contains(paths, "POST "+a.Request.Path)) {
			t.Errorf("telemetry %s: decision %s, or it reached the upstream", a.Request.Path, rec.Decision.Effect)
		}
	}
	t.Logf("Claude Code's refused requests over %d model calls: %v", len(keys), refused)
	for path, n := range refused {
		// Claude Code flushes its event batch now and then (9 times in a
		// one-minute session of 8 model calls when measured); a refusal
		// must not set off a retry loop.
		if n > 4*len(keys)+10 {
			t.Errorf("Claude Code sent %s %d times", path, n)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if line != "" && !strings.HasPrefix(line, "tf: ") {
			t.Errorf("Claude Code wrote to stderr: %s", line)
		}
	}

	// The audit log holds each governed step under its name.
	want := map[string]string{
		"github.repo.push main":      "deny protect-main",
		"github.repo.push feature/x": "allow push-feature-branches",
		"github.pr.create":           "allow open-pull-requests",
		"github.pr.merge":            "deny merges-need-a-human", // held, then refused by the person
		"mcp.docs.@initialize":       "allow tf:mcp-baseline",
		"mcp.docs.echo":              "deny mcp-tools-need-a-person",
		"mcp.local.echo":             "deny mcp-tools-need-a-person",
	}
	got := map[string]string{}
	for _, rec := range decisions(t, home) {
		a := rec.Action
		key := a.Type
		if b, ok := a.Params["branch"].(string); ok && a.Type == "github.repo.push" {
			key += " " + b
		}
		got[key] = string(rec.Decision.Effect) + " " + rec.Decision.Rule
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("audit: %s decided %q, want %q", k, got[k], w)
		}
	}
	if t.Failed() {
		t.Logf("decisions: %v\nstderr:\n%s", got, r.stderr)
	}
}

// nodeFixture returns node and the MCP packages of mcp/testdata/node.
func nodeFixture(t *testing.T) (node, modules string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed: %v", err)
	}
	modules = absPath(t, filepath.Join("..", "..", "mcp", "testdata", "node", "node_modules"))
	if _, err := os.Stat(filepath.Join(modules, "@modelcontextprotocol", "server-everything")); err != nil {
		t.Fatalf("the MCP reference server is not installed; run: cd mcp/testdata/node && npm ci")
	}
	return node, modules
}

// startNodeEverything runs the MCP reference server over Streamable HTTP
// on a free port until the test ends, and returns its address.
func startNodeEverything(t *testing.T, node, modules string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(node, filepath.Join(modules, "@modelcontextprotocol", "server-everything", "dist", "index.js"), "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT="+port)
	agent.SetOwnGroup(cmd)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		agent.StopGroup(cmd.Process, true)
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("the MCP reference server exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the MCP reference server did not listen on %s:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
