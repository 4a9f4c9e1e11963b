package gateway

import (
	"os"
	"strings"
	"testing"
)

// The audit: sync setting is read from $TF_HOME/config.yaml; a value that
// is neither group nor always is an error naming the file, and stops the
// gateway from starting.
func TestConfigAuditSync(t *testing.T) {
	for _, tc := range []struct{ yaml, want, err string }{
		{"", "", ""},
		{"audit: {sync: always}\n", "always", ""},
		{"audit:\n  sync: group\n", "group", ""},
		{"audit: {sync: sometimes}\n", "", `audit sync "sometimes"`},
		{"audit: {fsync: always}\n", "", "fsync"},
	} {
		home := t.TempDir()
		if err := os.WriteFile(ConfigPath(home), []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfigFile(ConfigPath(home))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "config.yaml") {
				t.Errorf("%q: error %v, want one naming the file and %q", tc.yaml, err, tc.err)
			}
			if _, err := Start(Config{Home: home, Policy: policy(t, "version: 1\ndefault: deny\n")}); err == nil {
				t.Errorf("%q: the gateway started", tc.yaml)
			}
			continue
		}
		if err != nil || c.Audit.Sync != tc.want {
			t.Errorf("%q: sync %q, %v; want %q", tc.yaml, c.Audit.Sync, err, tc.want)
		}
	}
}
