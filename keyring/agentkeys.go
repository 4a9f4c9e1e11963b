package keyring

import (
	"os"
	"slices"
	"strings"

	"github.com/tameflare/tf/keyring/injection"
)

// AgentKey is a model API key that a coding agent reads from its
// environment. tf takes it out of the agent's environment, keeps it as
// TF_SECRET_<Secret> (the keyring's env fallback) and injects it into the
// requests its connector classifies, on that connector's hosts only; the
// agent holds PlaceholderValue in Env instead.
type AgentKey struct {
	Env       string // the variable the agent reads
	Secret    string // the secret's name in tf (TF_SECRET_<NAME>)
	Connector string // the model API connector whose hosts receive it
	Header    string // where the API expects it
	Format    string // the header value, {} for the key
}

// AgentKeys are the model API keys of Claude Code, Codex CLI and Gemini
// CLI. For one connector the first key set wins: Claude Code itself
// prefers ANTHROPIC_API_KEY to CLAUDE_CODE_OAUTH_TOKEN, and Gemini CLI
// reads GEMINI_API_KEY.
var AgentKeys = []AgentKey{
	{"ANTHROPIC_API_KEY", "anthropic-api-key", "anthropic", "x-api-key", "{}"},
	{"CLAUDE_CODE_OAUTH_TOKEN", "claude-code-oauth-token", "anthropic", "Authorization", "Bearer {}"},
	{"OPENAI_API_KEY", "openai-api-key", "openai", "Authorization", "Bearer {}"},
	{"GEMINI_API_KEY", "gemini-api-key", "google", "x-goog-api-key", "{}"},
	{"GOOGLE_API_KEY", "google-api-key", "google", "x-goog-api-key", "{}"},
}

// Injection returns how the key goes into a request.
func (k AgentKey) Injection() *injection.Injection {
	return &injection.Injection{Secret: k.Secret, Header: k.Header, Format: k.Format}
}

// isAgentKeyVar reports whether kv sets one of the AgentKeys variables.
func isAgentKeyVar(kv string) bool {
	for _, k := range AgentKeys {
		if len(kv) > len(k.Env) && kv[:len(k.Env)] == k.Env && kv[len(k.Env)] == '=' {
			return true
		}
	}
	return false
}

// AdoptAgentKeys moves each AgentKeys variable set in tf's own environment
// to the keyring's env fallback: TF_SECRET_<Secret> takes its value
// (unless already set, an explicit choice that wins) and the variable is
// unset, so no child started from tf's environment inherits it. It returns
// the keys now held, in AgentKeys order, counting one given directly as
// TF_SECRET_<Secret>; a variable holding only the placeholder (tf run
// inside tf run) is dropped and not held. A variable named in keep (tf
// run --keep-env) is left to the agent, on purpose.
func AdoptAgentKeys(keep []string) []AgentKey {
	var held []AgentKey
	for _, k := range AgentKeys {
		if slices.ContainsFunc(keep, func(n string) bool { return strings.EqualFold(n, k.Env) }) {
			continue
		}
		v, ok := os.LookupEnv(k.Env)
		os.Unsetenv(k.Env)
		if s, set := os.LookupEnv(EnvName(k.Secret)); set && s != "" {
			held = append(held, k)
			continue
		}
		if !ok || v == "" || v == PlaceholderValue {
			continue
		}
		os.Setenv(EnvName(k.Secret), v)
		held = append(held, k)
	}
	return held
}
