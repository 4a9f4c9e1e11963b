package httpproxy

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCACreatedOnceAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.Certificate()
	if !cert.IsCA || !strings.HasPrefix(cert.Subject.CommonName, "tf local interception CA (") ||
		len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "tf" {
		t.Errorf("subject %v, CA %v", cert.Subject, cert.IsCA)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("lifetime %v", life)
	}
	if ca.CertPath() != filepath.Join(dir, "ca.pem") {
		t.Errorf("cert path %s", ca.CertPath())
	}
	onDisk, err := os.ReadFile(ca.CertPath())
	if err != nil || !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Errorf("ca.pem differs from CertPEM: %v", err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "ca-key.pem"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %#o, want %#o", path, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporary files)", len(entries))
	}

	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) || !again.key.Equal(ca.key) {
		t.Error("second load created a new CA")
	}
}

func TestCAConcurrentCreation(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	cas := make([]*CA, 8)
	errs := make([]error, 8)
	for i := range cas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cas[i], errs[i] = LoadOrCreateCA(dir)
		}()
	}
	wg.Wait()
	for i := range cas {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(cas[i].CertPEM(), cas[0].CertPEM()) {
			t.Error("concurrent creators disagree on the CA")
		}
	}
}

func TestCARefusesBadState(t *testing.T) {
	t.Run("key readable by others", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadOrCreateCA(dir); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o644)
		if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "0600") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("certificate without key", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadOrCreateCA(dir); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "ca-key.pem"))
		if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "has no key") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("mismatched key", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		if _, err := LoadOrCreateCA(a); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateCA(b); err != nil {
			t.Fatal(err)
		}
		key, _ := os.ReadFile(filepath.Join(b, "ca-key.pem"))
		os.WriteFile(filepath.Join(a, "ca-key.pem"), key, 0o600)
		if _, err := LoadOrCreateCA(a); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("not pem"), 0o644)
		os.WriteFile(filepath.Join(dir, "ca-key.pem"), []byte("not pem"), 0o600)
		if _, err := LoadOrCreateCA(dir); err == nil {
			t.Error("garbage CA loaded")
		}
	})
}

func TestLeafCertificates(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	for _, host := range []string{"api.example.test", "API.Example.Test.", "127.0.0.1", "::1"} {
		leaf, err := ca.Leaf(host)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		name := strings.TrimSuffix(strings.ToLower(host), ".")
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
		if ip := net.ParseIP(host); ip != nil && (len(leaf.Leaf.IPAddresses) != 1 || len(leaf.Leaf.DNSNames) != 0) {
			t.Errorf("%s: SANs %v %v", host, leaf.Leaf.IPAddresses, leaf.Leaf.DNSNames)
		}
		if len(leaf.Certificate) != 2 {
			t.Errorf("%s: chain of %d", host, len(leaf.Certificate))
		}
	}
	if a, _ := ca.Leaf("api.example.test"); a == nil {
		t.Fatal("no leaf")
	} else if b, _ := ca.Leaf("API.EXAMPLE.TEST"); a != b {
		t.Error("same host issued twice")
	}
	for _, bad := range []string{"", "a b", "*.example.test", "x..y", "example.1", "[::1]", "fe80::1%eth0", strings.Repeat("a", 64) + ".test"} {
		if _, err := ca.Leaf(bad); err == nil {
			t.Errorf("%q: leaf issued", bad)
		}
	}
}

func TestLeafConcurrentFirstRequests(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	leaves := make([]any, 64)
	for i := range leaves {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ca.Leaf("race.example.test")
			if err != nil {
				t.Error(err)
			}
			leaves[i] = c
		}()
	}
	wg.Wait()
	if n := ca.issued.Load(); n != 1 {
		t.Errorf("issued %d, want 1", n)
	}
	for _, l := range leaves {
		if l != leaves[0] {
			t.Fatal("callers got different leaves")
		}
	}
}

func TestLeafCacheBoundedAndRenewed(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca.max = 3
	for _, h := range []string{"a.test", "b.test", "c.test", "a.test", "d.test"} {
		if _, err := ca.Leaf(h); err != nil {
			t.Fatal(err)
		}
	}
	// a was used again before d arrived, so b (least recently used) went.
	if ca.lru.Len() != 3 || ca.cache["b.test"] != nil || ca.cache["a.test"] == nil {
		t.Errorf("cache holds %d, b %v, a %v", ca.lru.Len(), ca.cache["b.test"] != nil, ca.cache["a.test"] != nil)
	}
	if n := ca.issued.Load(); n != 4 {
		t.Errorf("issued %d, want 4", n)
	}
	first, _ := ca.Leaf("a.test")
	ca.now = func() time.Time { return time.Now().Add(leafLifetime - time.Hour) }
	renewed, _ := ca.Leaf("a.test")
	if renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("leaf near expiry was not renewed")
	}
}
