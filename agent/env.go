// Package agent runs the governed process: its environment, which routes
// every request through the gateway and trusts the local CA, and its life,
// with terminal, signals and exit code passed through.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tameflare/tf/home"
)

// EnvSpec is what the child's environment must say.
type EnvSpec struct {
	// ProxyURL is the gateway's proxy with its session credential:
	// http://tf:TOKEN@127.0.0.1:PORT.
	ProxyURL string
	// CABundle is a PEM file holding the system roots and the local CA.
	CABundle string
	// Remove lists variables to drop (secrets the agent must not hold);
	// a name ending in * drops every variable with that prefix.
	Remove []string
	// Set adds or replaces variables (placeholders such as GH_TOKEN).
	Set map[string]string
}

// proxyVars route HTTP clients through the proxy. curl reads only the
// lower-case http_proxy, other clients only upper case.
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}

// bundleVars replace a client's trust store, so they point at a bundle of
// the system roots plus the local CA.
var bundleVars = []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "npm_config_cafile", "NODE_EXTRA_CA_CERTS", "DENO_CERT"}

// gitRewrites send SSH remotes of GitHub over HTTPS, through the proxy, so
// that a push cannot slip past it over SSH.
var gitRewrites = [][2]string{
	{"url.https://github.com/.insteadOf", "git@github.com:"},
	{"url.https://github.com/.insteadOf", "ssh://git@github.com/"},
}

// Env returns the child's environment: base without the removed and
// replaced variables, plus the proxy, trust and git settings.
func Env(base []string, s EnvSpec) []string {
	drop := map[string]bool{"NO_PROXY": true, "no_proxy": true}
	var prefixes []string
	for _, k := range s.Remove {
		if p, ok := strings.CutSuffix(k, "*"); ok {
			prefixes = append(prefixes, p)
		} else {
			drop[k] = true
		}
	}
	set := map[string]string{"NODE_USE_ENV_PROXY": "1"}
	for _, k := range proxyVars {
		set[k] = s.ProxyURL
	}
	for _, k := range bundleVars {
		set[k] = s.CABundle
	}
	for k, v := range s.Set {
		set[k] = v
	}

	// Keep the parent's own git configuration entries, then add ours.
	n := 0
	gitCfg := map[string]string{}
	out := make([]string, 0, len(base)+len(set)+6)
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case drop[k] || hasAnyPrefix(k, prefixes):
			continue
		case k == "GIT_CONFIG_COUNT":
			n, _ = strconv.Atoi(v)
			continue
		case strings.HasPrefix(k, "GIT_CONFIG_KEY_") || strings.HasPrefix(k, "GIT_CONFIG_VALUE_"):
			gitCfg[k] = v
			continue
		}
		if _, replaced := set[k]; replaced {
			continue
		}
		out = append(out, kv)
	}
	for i := range n {
		k, v := fmt.Sprintf("GIT_CONFIG_KEY_%d", i), fmt.Sprintf("GIT_CONFIG_VALUE_%d", i)
		out = append(out, k+"="+gitCfg[k], v+"="+gitCfg[v])
	}
	for i, kv := range gitRewrites {
		out = append(out, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", n+i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", n+i, kv[1]))
	}
	out = append(out, fmt.Sprintf("GIT_CONFIG_COUNT=%d", n+len(gitRewrites)))
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+set[k])
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// systemBundles are where operating systems keep their root certificates,
// the same list Go's crypto/x509 reads.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine, macOS, BSDs
}

// SystemRoots returns the PEM of the system's root certificates: the file
// named by SSL_CERT_FILE in tf's own environment, else the first system
// bundle that exists.
func SystemRoots() ([]byte, error) {
	candidates := systemBundles
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		candidates = append([]string{f}, candidates...)
	}
	for _, f := range candidates {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) {
			return b, nil
		}
	}
	return nil, errors.New("no system root certificates found; set SSL_CERT_FILE to a PEM bundle")
}

// WriteBundle writes the system roots followed by the local CA to path
// (atomically, mode 0644: certificates are public).
func WriteBundle(path string, caPEM []byte) error {
	roots, err := SystemRoots()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.Write(roots)
	if len(roots) > 0 && roots[len(roots)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString("# tf local interception CA (trusted by the governed process only)\n")
	b.Write(caPEM)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return home.WriteFile(path, b.Bytes(), 0o644, false)
}
