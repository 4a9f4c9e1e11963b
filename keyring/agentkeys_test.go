package keyring

import (
	"os"
	"strings"
	"testing"
)

// AdoptAgentKeys moves a model key into the env fallback, unsets the
// agent's variable, lets an explicit TF_SECRET_ win, and never holds the
// placeholder of an outer tf run.
func TestAdoptAgentKeys(t *testing.T) {
	for _, k := range AgentKeys {
		t.Setenv(k.Env, "")
		os.Unsetenv(k.Env)
		t.Setenv(EnvName(k.Secret), "")
		os.Unsetenv(EnvName(k.Secret))
	}
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
	t.Setenv("OPENAI_API_KEY", PlaceholderValue)
	t.Setenv("GEMINI_API_KEY", "gemini-from-env")
	t.Setenv(EnvName("gemini-api-key"), "gemini-explicit")
	t.Setenv(EnvName("google-api-key"), "google-explicit")
	t.Setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat-kept")
	var names []string
	for _, k := range AdoptAgentKeys([]string{"claude_code_oauth_token"}) {
		names = append(names, k.Env)
	}
	if got := strings.Join(names, " "); got != "ANTHROPIC_API_KEY GEMINI_API_KEY GOOGLE_API_KEY" {
		t.Errorf("held %s", got)
	}
	for _, n := range []string{"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"} {
		if _, ok := os.LookupEnv(n); ok {
			t.Errorf("%s is still set", n)
		}
	}
	if v := os.Getenv("TF_SECRET_ANTHROPIC_API_KEY"); v != "sk-ant-from-env" {
		t.Errorf("TF_SECRET_ANTHROPIC_API_KEY = %q", v)
	}
	if v := os.Getenv("TF_SECRET_GEMINI_API_KEY"); v != "gemini-explicit" {
		t.Errorf("TF_SECRET_GEMINI_API_KEY = %q, want the explicit value", v)
	}
	if v := os.Getenv("CLAUDE_CODE_OAUTH_TOKEN"); v != "sk-ant-oat-kept" {
		t.Errorf("a variable named in keep was taken: %q", v)
	}
	if _, ok := os.LookupEnv("TF_SECRET_OPENAI_API_KEY"); ok {
		t.Error("the placeholder was taken for a key")
	}
	for _, k := range AgentKeys {
		if err := k.Injection().Validate(); err != nil {
			t.Errorf("%s: %v", k.Env, err)
		}
		if !isAgentKeyVar(k.Env+"=x") || isAgentKeyVar(k.Env+"X=x") {
			t.Errorf("isAgentKeyVar(%s)", k.Env)
		}
	}
}
