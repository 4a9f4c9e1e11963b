package gitops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

// presetPolicy loads the starter of a preset and runs its tests.
func presetPolicy(t *testing.T, agent string) *rules.Policy {
	t.Helper()
	fsys := starterFS(starterFor(agentPresets[agent]))
	p, err := rules.LoadFS(fsys, agent)
	if err != nil {
		t.Fatalf("%s: %v", agent, err)
	}
	rep, err := rules.RunTests(p, fsys, agent, mcp.Baseline)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 {
		t.Fatalf("%s: starter tests: %s", agent, rep.Summary())
	}
	decided := map[string]bool{}
	for _, r := range rep.Results {
		decided[r.Got.Rule] = true
	}
	for _, r := range p.Rules {
		if !decided[r.Name] {
			t.Errorf("%s: rule %s has no test case", agent, r.Name)
		}
	}
	return p
}

// modelShape is a case of connectors/testdata/models.yaml: a request as
// the official SDK or the agent sends it, and the action it is.
type modelShape struct {
	Name   string         `yaml:"name"`
	Host   string         `yaml:"host"`
	Type   string         `yaml:"type"`
	Params map[string]any `yaml:"params"`
}

// The recorded request shapes each agent sends, by case name in
// connectors/testdata/models.yaml, and what its preset must decide.
var agentTraffic = map[string]map[string]rules.Effect{
	"claude-code": {
		"messages create streamed":       rules.Allow,
		"count tokens":                   rules.Allow,
		"claude code policy limits":      rules.Allow,
		"claude code metrics enabled":    rules.Allow,
		"claude code cli bootstrap":      rules.Allow,
		"claude code penguin mode":       rules.Allow,
		"claude code feature flags":      rules.Allow,
		"claude code mcp directory":      rules.Allow,
		"connectivity check":             rules.Allow,
		"connectivity check on platform": rules.Allow,
		"oauth token refresh":            rules.Allow,
		"oauth profile":                  rules.Allow,
		"oauth roles":                    rules.Allow,
		"claude code event logging":      rules.Deny,
		"claude code metrics post":       rules.Deny,
		"claude code feedback":           rules.Deny,
		"oauth create api key":           rules.Deny,
		"messages create truncated":      rules.Allow,
	},
	"codex": {
		"responses create (Codex)":                       rules.Allow,
		"responses create under a ChatGPT login (Codex)": rules.Allow,
		"responses get":                                  rules.Allow,
		"responses input items":                          rules.Allow,
		"other chatgpt.com request":                      rules.Deny,
		"responses delete":                               rules.Deny,
	},
	"gemini": {
		"generate content":        rules.Allow,
		"stream generate content": rules.Allow,
		"count tokens google":     rules.Allow,
		"google models list":      rules.Allow,
		"google model get":        rules.Allow,
		"google unknown method":   rules.Deny,
	},
}

// Each preset passes its own tests, lets its agent's recorded traffic
// through and refuses its telemetry, and refuses the other agents' model
// APIs; the generic preset and the built-in example policy (what tf run
// uses with no policy written) let all three agents work.
func TestPresetsDecideRecordedAgentTraffic(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "connectors", "testdata", "models.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var shapes []modelShape
	if err := yaml.Unmarshal(raw, &shapes); err != nil {
		t.Fatal(err)
	}
	byName := map[string]modelShape{}
	for _, s := range shapes {
		byName[s.Name] = s
	}
	builtin, err := rules.LoadFS(testdata.ExamplePolicy(), "built-in")
	if err != nil {
		t.Fatal(err)
	}
	decide := func(p *rules.Policy, s modelShape) rules.Decision {
		a := rules.Action{Type: s.Type, Connector: strings.SplitN(s.Type, ".", 2)[0], Params: s.Params,
			Resource: map[string]string{"host": s.Host}, Request: rules.Request{Host: s.Host}}
		return (&rules.Decider{Policy: p}).Decide(&a)
	}
	for _, agent := range Agents() {
		p := presetPolicy(t, agent)
		for owner, traffic := range agentTraffic {
			for name, want := range traffic {
				s, ok := byName[name]
				if !ok {
					t.Fatalf("no case %q in models.yaml", name)
				}
				if agent != GenericAgent && agent != owner && want == rules.Allow {
					want = rules.Deny // another agent's model API
				}
				if got := decide(p, s); got.Effect != want {
					t.Errorf("preset %s: %s's %q (%s) decided %s by %q, want %s", agent, owner, name, s.Type, got.Effect, got.Rule, want)
				}
				if agent == GenericAgent {
					if got := decide(builtin, s); got.Effect != want {
						t.Errorf("built-in policy: %s's %q (%s) decided %s by %q, want %s", owner, name, s.Type, got.Effect, got.Rule, want)
					}
				}
			}
		}
	}
	// Gemini CLI's usage statistics (Clearcut) are an http.post by host.
	stats := modelShape{Type: "http.post", Host: "play.googleapis.com"}
	for _, p := range []*rules.Policy{presetPolicy(t, "gemini"), presetPolicy(t, GenericAgent), builtin} {
		if got := decide(p, stats); got.Effect != rules.Deny || got.Rule == "" {
			t.Errorf("Gemini CLI's usage statistics decided %s by %q, want deny by a rule", got.Effect, got.Rule)
		}
	}
}

// tf init --agent writes that agent's starter; an unknown agent and
// another preset's file are refused with a clear error.
func TestInitAgentPreset(t *testing.T) {
	home := testHome(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "p")
	if _, err := Init(ctx, InitOptions{Dir: dir, Home: home, Agent: "codex"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "tameflare.yaml"))
	if !strings.Contains(string(b), "openai.responses.create") || strings.Contains(string(b), "anthropic.messages.create") {
		t.Errorf("the codex starter:\n%s", b)
	}
	if _, err := Init(ctx, InitOptions{Dir: dir, Home: home, Agent: "codex"}); err != nil {
		t.Errorf("a second init with the same preset: %v", err)
	}
	if _, err := Init(ctx, InitOptions{Dir: dir, Home: home, Agent: "gemini"}); err == nil || !strings.Contains(err.Error(), "tf init --agent codex") {
		t.Errorf("init with another preset: %v", err)
	}
	if _, err := Init(ctx, InitOptions{Dir: t.TempDir(), Home: home, Agent: "cursor", Force: true}); err == nil || !strings.Contains(err.Error(), `unknown agent "cursor"`) {
		t.Errorf("unknown agent: %v", err)
	}
}
