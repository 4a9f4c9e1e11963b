package keyring

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestScrubEnv(t *testing.T) {
	const secret = "real-token-value"
	cases := []struct {
		name        string
		env         []string
		managed     []string
		keep        []string
		wantOut     []string
		wantRemoved []string
	}{
		{
			name:        "token variables go, placeholders come",
			env:         []string{"PATH=/bin", "GITHUB_TOKEN=a", "GH_TOKEN=b", "GH_ENTERPRISE_TOKEN=c", "GITHUB_ENTERPRISE_TOKEN=d", "NPM_TOKEN=e", "NODE_AUTH_TOKEN=f", "TF_KEYRING_PASSPHRASE=g", "TF_SECRET_GH_TOKEN=h", "HOME=/h"},
			wantOut:     []string{"PATH=/bin", "HOME=/h", "GH_TOKEN=tf-managed", "NPM_TOKEN=tf-managed", "NODE_AUTH_TOKEN=tf-managed"},
			wantRemoved: []string{"GH_ENTERPRISE_TOKEN", "GH_TOKEN", "GITHUB_ENTERPRISE_TOKEN", "GITHUB_TOKEN", "NODE_AUTH_TOKEN", "NPM_TOKEN", "TF_KEYRING_PASSPHRASE", "TF_SECRET_GH_TOKEN"},
		},
		{
			name:        "any name holding a managed value goes, even kept",
			env:         []string{"MY_TOKEN=" + secret, "URL=https://x-access-token:" + secret + "@github.com/a/b", "OTHER=fine", "GH_TOKEN=" + secret},
			managed:     []string{secret, "", PlaceholderValue},
			keep:        []string{"MY_TOKEN", "GH_TOKEN"},
			wantOut:     []string{"OTHER=fine", "NPM_TOKEN=tf-managed", "NODE_AUTH_TOKEN=tf-managed"},
			wantRemoved: []string{"GH_TOKEN", "MY_TOKEN", "URL"},
		},
		{
			name:        "keep spares names from the list",
			env:         []string{"GITHUB_TOKEN=other-instance", "NPM_TOKEN=x"},
			keep:        []string{"github_token", "NPM_TOKEN"},
			wantOut:     []string{"GITHUB_TOKEN=other-instance", "NPM_TOKEN=x", "GH_TOKEN=tf-managed", "NODE_AUTH_TOKEN=tf-managed"},
			wantRemoved: nil,
		},
		{
			name:        "npm auth config, lower case names, malformed entries",
			env:         []string{"npm_config__authToken=x", "NPM_CONFIG_//registry.npmjs.org/:_auth=y", "npm_config_cache=/c", "gh_token=z", "no-equals", "=C:=C:\\"},
			wantOut:     []string{"npm_config_cache=/c", "GH_TOKEN=tf-managed", "NPM_TOKEN=tf-managed", "NODE_AUTH_TOKEN=tf-managed"},
			wantRemoved: []string{"NPM_CONFIG_//registry.npmjs.org/:_auth", "gh_token", "npm_config__authToken"},
		},
		{
			name:        "a managed value inside the placeholder rules placeholders out",
			env:         []string{"A=unmanaged", "B=x"},
			managed:     []string{"managed"},
			wantOut:     []string{"B=x"},
			wantRemoved: []string{"A"},
		},
		{
			name:        "the placeholder value is never treated as a secret",
			env:         []string{"GH_TOKEN=tf-managed"},
			managed:     []string{PlaceholderValue},
			wantOut:     []string{"NPM_TOKEN=tf-managed", "NODE_AUTH_TOKEN=tf-managed", "GH_TOKEN=tf-managed"},
			wantRemoved: []string{"GH_TOKEN"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, removed := ScrubEnv(c.env, c.managed, c.keep)
			sorted := func(s []string) []string { s = append([]string(nil), s...); sort.Strings(s); return s }
			if !reflect.DeepEqual(sorted(out), sorted(c.wantOut)) {
				t.Errorf("out = %q\nwant  %q", out, c.wantOut)
			}
			if !reflect.DeepEqual(removed, c.wantRemoved) {
				t.Errorf("removed = %q, want %q", removed, c.wantRemoved)
			}
			for _, r := range removed {
				if strings.Contains(r, secret) {
					t.Errorf("removed lists a value: %q", r)
				}
			}
		})
	}
}

func FuzzScrubEnv(f *testing.F) {
	f.Add("PATH=/bin\x00GH_TOKEN=x\x00A=secretvalue", "secretvalue", "A")
	f.Add("=\x00x\x00TF_SECRET_=1", "", "")
	f.Fuzz(func(t *testing.T, envs, secret, keep string) {
		env := strings.Split(envs, "\x00")
		out, removed := ScrubEnv(env, []string{secret}, strings.Split(keep, ","))
		for _, kv := range out {
			name, value, ok := strings.Cut(kv, "=")
			if !ok || name == "" {
				t.Fatalf("malformed entry kept: %q", kv)
			}
			if secret != "" && secret != PlaceholderValue && strings.Contains(value, secret) {
				t.Fatalf("%s still holds the managed value", name)
			}
			if strings.HasPrefix(strings.ToUpper(name), EnvSecretPfx) && !strings.Contains(","+strings.ToUpper(keep)+",", ","+strings.ToUpper(name)+",") {
				t.Fatalf("%s kept", name)
			}
		}
		if !sort.StringsAreSorted(removed) {
			t.Fatalf("removed not sorted: %q", removed)
		}
	})
}
