package keyring

import (
	"sort"
	"strings"
)

// PlaceholderValue stands in for a token the agent must not hold. The proxy
// strips it and injects the real credential.
const PlaceholderValue = "tf-managed"

// scrubbedNames are the variables through which agents' tools pick up
// tokens. Matched without regard to case, as Windows does and as npm does
// for npm_config_*.
var scrubbedNames = []string{
	"GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN",
	"NPM_TOKEN", "NODE_AUTH_TOKEN", EnvPassphrase,
	// The model API keys (AgentKeys): tf injects them, the agent holds a
	// placeholder when tf does.
	"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
	"OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
}

// Placeholders are added to the child's environment by ScrubEnv so that
// clients which refuse to run without a token still work; the proxy
// replaces what they send. GH_TOKEN: gh will not make a request without a
// token, and with it set gh also ignores tokens stored in its own config.
// NPM_TOKEN and NODE_AUTH_TOKEN: npm installs fine without, but an .npmrc
// that says ${NPM_TOKEN} or ${NODE_AUTH_TOKEN} (the actions/setup-node
// convention) fails to load when the variable is unset, and npm publish
// refuses to start without a token.
var Placeholders = []string{"GH_TOKEN", "NPM_TOKEN", "NODE_AUTH_TOKEN"}

// ScrubEnv prepares the environment of the governed child process. It
// removes the token variables above, every TF_SECRET_* variable, npm_config_*
// variables that carry auth, and every variable whose value contains a
// managed secret value. Names in keep survive the name rules, but never the
// value rule: a variable that holds a secret tf manages is removed whatever
// its name, since the agent must not hold a real token. Entries without '='
// are dropped. Then each Placeholders name that is not set (and not kept)
// is set to PlaceholderValue. removed lists the removed names, sorted, each
// once; it never holds a value.
func ScrubEnv(env []string, managed []string, keep []string) (out []string, removed []string) {
	keepSet := map[string]bool{}
	for _, k := range keep {
		keepSet[strings.ToUpper(k)] = true
	}
	var secrets []string
	for _, m := range managed {
		if m != "" && m != PlaceholderValue {
			secrets = append(secrets, m)
		}
	}
	gone := map[string]bool{}
	present := map[string]bool{}
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		up := strings.ToUpper(name)
		drop := !keepSet[up] && scrubbedName(up)
		for _, s := range secrets {
			if strings.Contains(value, s) {
				drop = true
				break
			}
		}
		if drop {
			gone[name] = true
			continue
		}
		present[up] = true
		out = append(out, kv)
	}
	// A managed value found inside the placeholder itself (a trivially
	// short secret) rules the placeholders out: no output may hold it.
	placeholdersSafe := true
	for _, s := range secrets {
		if strings.Contains(PlaceholderValue, s) {
			placeholdersSafe = false
		}
	}
	for _, p := range Placeholders {
		if placeholdersSafe && !present[p] && !keepSet[p] {
			out = append(out, p+"="+PlaceholderValue)
		}
	}
	for n := range gone {
		removed = append(removed, n)
	}
	sort.Strings(removed)
	return out, removed
}

func scrubbedName(up string) bool {
	for _, n := range scrubbedNames {
		if up == n {
			return true
		}
	}
	if strings.HasPrefix(up, EnvSecretPfx) {
		return true
	}
	// npm reads any npm_config_* as config: _auth, _authToken, and
	// //registry/:_authToken style keys all carry credentials.
	return strings.HasPrefix(up, "NPM_CONFIG_") && strings.Contains(up, "AUTH")
}
