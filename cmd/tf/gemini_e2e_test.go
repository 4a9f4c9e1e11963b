//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// geminiBin is the real Gemini CLI, pinned in testdata/gemini-cli and
// installed there by scripts/test (npm ci).
func geminiBin(t *testing.T) string { return npmBin(t, "Gemini CLI", "gemini-cli", "gemini") }

// geminiStandIn answers the Gemini API's generateContent and
// streamGenerateContent (alt=sse) as Google's does, and every other
// request with {}; it records what it was asked. With a script, a model
// call that offers the shell tool is answered with the script's next
// command (the step is the number of functionResponse parts the
// conversation already holds, so a retried request gets the same answer),
// and the responses Gemini CLI sends back are kept; a call that asks for
// JSON (its model router) gets an object of the schema's properties, and a
// call without tools and the call after the last step get text.
type geminiStandIn struct {
	mu      sync.Mutex
	paths   []string
	keys    []string // the x-goog-api-key of each model call
	tools   []string // the function declarations of the first call with tools
	script  []string // shell commands
	results []string // what the model received for each step
}

// functionResponses reads the functionResponse parts of a Gemini API
// request, in order, each as its JSON.
func functionResponses(body []byte) []string {
	var req struct {
		Contents []struct {
			Parts []struct {
				FunctionResponse json.RawMessage `json:"functionResponse"`
			} `json:"parts"`
		} `json:"contents"`
	}
	json.Unmarshal(body, &req)
	var out []string
	for _, c := range req.Contents {
		for _, p := range c.Parts {
			if len(p.FunctionResponse) > 0 {
				out = append(out, string(p.FunctionResponse))
			}
		}
	}
	return out
}

func (m *geminiStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.paths = append(m.paths, r.Method+" "+r.Host+r.URL.RequestURI())
	m.mu.Unlock()
	model, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1beta/models/"), ":")
	if r.Method != "POST" || !ok || (method != "generateContent" && method != "streamGenerateContent") {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
		return
	}
	var req struct {
		Tools []struct {
			FunctionDeclarations []struct {
				Name string `json:"name"`
			} `json:"functionDeclarations"`
		} `json:"tools"`
		GenerationConfig struct {
			ResponseMimeType string `json:"responseMimeType"`
			Schema           struct {
				Properties map[string]struct {
					Type string `json:"type"`
				} `json:"properties"`
			} `json:"responseJsonSchema"`
		} `json:"generationConfig"`
	}
	json.Unmarshal(body, &req)
	var tools []string
	for _, tl := range req.Tools {
		for _, f := range tl.FunctionDeclarations {
			tools = append(tools, f.Name)
		}
	}
	responses := functionResponses(body)
	m.mu.Lock()
	m.keys = append(m.keys, r.Header.Get("X-Goog-Api-Key"))
	if m.tools == nil && len(tools) > 0 {
		m.tools = tools
	}
	if len(responses) > len(m.results) {
		m.results = responses
	}
	m.mu.Unlock()
	part := `{"text":"hello from the stand-in"}`
	if req.GenerationConfig.ResponseMimeType == "application/json" {
		// A side question that wants JSON (Gemini CLI's model router
		// asks for a complexity score): every property, filled in.
		obj := map[string]any{}
		for name, p := range req.GenerationConfig.Schema.Properties {
			switch strings.ToUpper(p.Type) {
			case "INTEGER", "NUMBER":
				obj[name] = 10
			case "BOOLEAN":
				obj[name] = false
			default:
				obj[name] = "scripted"
			}
		}
		text, _ := json.Marshal(obj)
		part = fmt.Sprintf(`{"text":%q}`, text)
	} else if len(tools) > 0 && len(m.script) > 0 {
		if n := len(responses); n < len(m.script) {
			args, _ := json.Marshal(map[string]any{"command": m.script[n], "description": "a scripted step"})
			part = fmt.Sprintf(`{"functionCall":{"name":"run_shell_command","args":%s}}`, args)
		} else {
			part = `{"text":"all done"}`
		}
	}
	chunk := fmt.Sprintf(`{"candidates":[{"content":{"role":"model","parts":[%s]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":7,"totalTokenCount":19},"modelVersion":%q}`, part, model)
	if method == "generateContent" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(chunk))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "data: %s\r\n\r\n", chunk)
}

// geminiKey is the real API key: tf holds it, Gemini CLI a placeholder.
const geminiKey = "AIzaSy-gemini-real-key-the-agent-never-sees"

// geminiRunLimit bounds one Gemini CLI session under tf run (13 to 29 s
// when measured on a loaded machine, most of it Node starting the CLI).
const geminiRunLimit = 2 * time.Minute

// The real Gemini CLI (gemini -p) runs inside tf run's sandbox with the
// built-in policy (no --policy), driven by a stand-in for the Gemini API:
// the session answers; the model runs shell commands through Gemini CLI's
// run_shell_command tool, and what tf refuses (a push to main, a POST to
// an unlisted host) reaches the model with the rule and the reason; a
// push to a feature branch lands; its usage statistics are refused and it
// works on; the key stays with tf.
func TestGeminiInSandbox(t *testing.T) {
	requireSandbox(t)
	gemini := geminiBin(t)
	t.Run("scripted", func(t *testing.T) { geminiScripted(t, gemini) })
	t.Run("preset", func(t *testing.T) { geminiPreset(t, gemini) })
}

func geminiScripted(t *testing.T, gemini string) {
	home := t.TempDir()
	env := append(clientEnv(t), "GEMINI_API_KEY="+geminiKey,
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	standIn := &geminiStandIn{script: scriptedSteps}
	modelHosts := []string{"generativelanguage.googleapis.com", "play.googleapis.com"}
	modelAddr, modelCA := startFakeTLS(t, standIn, modelHosts...)
	w := newScriptedWork(t)

	args := append([]string{"run", "--name", "gemini", "--ro", absPath(t, filepath.Join("testdata", "gemini-cli"))}, w.up.args()...)
	args = append(args, upstreamArgs(modelAddr, modelCA, modelHosts...)...)
	// --skip-trust: a folder Gemini CLI has not been told to trust runs
	// with tool calls needing approval, which -p cannot give.
	args = append(args, "--", gemini, "--skip-trust", "--yolo", "-p", "do the work")
	start := time.Now()
	r := startTFWithin(t, geminiRunLimit, w.dir, home, env, args...).wait(t)
	t.Logf("gemini -p took %v", time.Since(start).Round(time.Millisecond))
	standIn.mu.Lock()
	results, keys, paths := standIn.results, standIn.keys, strings.Join(standIn.paths, "\n")
	standIn.mu.Unlock()
	for i, res := range results {
		t.Logf("step %d (%s):\n%s", i, standIn.script[i], res)
	}
	t.Logf("Gemini CLI asked the stand-in:\n%s\nstderr:\n%s", paths, r.stderr)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "all done" || len(results) != len(standIn.script) {
		t.Fatalf("gemini -p: exit %d, %d of %d tool results\nstdout:\n%s\nstderr:\n%s", r.code, len(results), len(standIn.script), r.stdout, r.stderr)
	}
	w.checkSteps(t, results, "GEMINI_API_KEY=tf-managed", "HTTPS_PROXY=", "NODE_EXTRA_CA_CERTS=")
	// Gemini CLI's usage statistics are refused by name and never reach
	// the upstream; Gemini CLI says nothing about it.
	refused := 0
	for _, rec := range decisions(t, home) {
		if rec.Action.Request.Host == "play.googleapis.com" {
			refused++
			if rec.Decision.Effect != rules.Deny || rec.Decision.Rule != "no-gemini-usage-statistics" {
				t.Errorf("usage statistics: %s by %q", rec.Decision.Effect, rec.Decision.Rule)
			}
		}
	}
	if strings.Contains(paths, "play.googleapis.com") {
		t.Error("refused usage statistics reached the upstream")
	}
	t.Logf("Gemini CLI's refused usage statistics: %d requests", refused)
	checkAgentSession(t, home, "gemini", r, results, keys, geminiKey, geminiKey,
		`google\.models\.stream_generate_content .*in 12 out 7`, "google")
}

// geminiPreset runs gemini -p under the starter of tf init --agent gemini:
// the session answers, its model calls are allowed by name and its usage
// statistics refused by name.
func geminiPreset(t *testing.T, gemini string) {
	standIn := &geminiStandIn{}
	hosts := []string{"generativelanguage.googleapis.com", "play.googleapis.com"}
	addr, caFile := startFakeTLS(t, standIn, hosts...)
	r := runPreset(t, "gemini", []string{"GEMINI_API_KEY=" + geminiKey},
		append(upstreamArgs(addr, caFile, hosts...), "--", gemini, "--skip-trust", "-p", "say hi"),
		map[string]string{"google.models.stream_generate_content": "allow agent-model-calls", "http.post": "deny no-agent-telemetry"})
	if strings.TrimSpace(r.stdout) != "hello from the stand-in" {
		t.Errorf("gemini -p under the preset answered:\n%s\n%s", r.stdout, r.stderr)
	}
}
