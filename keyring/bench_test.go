package keyring

import (
	"path/filepath"
	"testing"
)

func benchFileResolver(b *testing.B) (*Resolver, *Store) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "kr")
	b.Setenv("TF_HOME", b.TempDir())
	s, err := Open(Options{Backend: BackendFile, FileDir: dir, Passphrase: fixed("pw")})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Set("gh-token", "ghp_0123456789abcdefghijABCDEFGHIJ012345"); err != nil {
		b.Fatal(err)
	}
	r := NewResolver(s, ResolverOptions{LookupEnv: func(string) (string, bool) { return "", false }})
	if err := r.Resolve("gh-token"); err != nil {
		b.Fatal(err)
	}
	return r, s
}

// BenchmarkResolverGetFileCached is the hot path: one stat per request.
func BenchmarkResolverGetFileCached(b *testing.B) {
	r, _ := benchFileResolver(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Get("gh-token"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreGetFile is what every request would cost without the
// cache: read the file, derive the key (PBKDF2, 8192 rounds), decrypt.
func BenchmarkStoreGetFile(b *testing.B) {
	_, s := benchFileResolver(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get("gh-token"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResolverGetEnv(b *testing.B) {
	r := NewResolver(nil, ResolverOptions{LookupEnv: func(string) (string, bool) { return "from-env-value", true }})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Get("gh-token"); err != nil {
			b.Fatal(err)
		}
	}
}

// typicalParams is a 20-key params map as an MCP tool call or a GitHub
// action carries it: mostly plain values, a few secrets, some nesting.
func typicalParams() map[string]any {
	return map[string]any{
		"owner": "acme", "repo": "app", "branch": "feature/x", "base": "main", "number": float64(42),
		"title": "Fix the flaky test", "body": "This change makes the retry loop bounded.", "draft": false,
		"labels":  []any{"bug", "ci"},
		"head":    map[string]any{"ref": "feature/x", "sha": "0123456789abcdef0123456789abcdef01234567"},
		"api_key": "k-1", "access_token": "t-1", "password": "p", "query": "is:open label:bug",
		"limit": float64(50), "page": float64(2), "max_tokens": float64(1024), "path": "src/main.go",
		"headers": map[string]any{"Authorization": "Bearer abcdefghijk", "Accept": "application/json"},
		"options": map[string]any{"recursive": true, "depth": float64(3)},
	}
}

func BenchmarkRedactParams(b *testing.B) {
	p := typicalParams()
	if len(p) != 20 {
		b.Fatalf("%d keys", len(p))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = RedactParams(p)
	}
}

func BenchmarkRedactorRedact(b *testing.B) {
	r := NewRedactor("ghp_0123456789abcdefghijABCDEFGHIJ012345", "npm_abcdefghijklmnopqrstuvwxyz0123456789", "docs-token-value")
	msg := "upstream said 401 for https://api.github.com/repos/acme/app/pulls?per_page=100: bad credentials, retrying with backoff"
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Redact(msg)
	}
}
