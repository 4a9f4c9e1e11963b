package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRegistry stands in for registry.npmjs.org: it serves the packuments
// and tarballs of the packages added to it, answers 404 for others (what
// npm publish expects of a new package), and accepts publishes, so that a
// publish tf failed to stop would succeed and the test would see it.
type fakeRegistry struct {
	addr, caFile string

	mu         sync.Mutex
	pkgs       map[string]*fakePackage
	requests   []npmRequest
	unexpected []string
}

// npmRequest is one request the fake registry received.
type npmRequest struct {
	Method, Path, Authorization string
}

// fakePackage is one published version of a package, with its tarball.
type fakePackage struct {
	Name, Version string
	Tarball       []byte
	Integrity     string // sha512-<base64>, as npm's lock file says
	Shasum        string // sha1, hex
}

// registryHost is the only registry the npm tests use.
const registryHost = "registry.npmjs.org"

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{pkgs: map[string]*fakePackage{}}
	f.addr, f.caFile = startFakeTLS(t, f, registryHost)
	return f
}

// args returns the tf run flags that send registry.npmjs.org to the fake.
func (f *fakeRegistry) args() []string { return upstreamArgs(f.addr, f.caFile, registryHost) }

// add publishes version of name on the fake with files (paths inside the
// package, such as package.json) as its tarball.
func (f *fakeRegistry) add(t *testing.T, name, version string, files map[string]string) *fakePackage {
	t.Helper()
	tgz, err := packageTarball(files)
	if err != nil {
		t.Fatalf("building the tarball of %s: %v", name, err)
	}
	sum512 := sha512.Sum512(tgz)
	sum1 := sha1.Sum(tgz)
	p := &fakePackage{
		Name: name, Version: version, Tarball: tgz,
		Integrity: "sha512-" + base64.StdEncoding.EncodeToString(sum512[:]),
		Shasum:    hex.EncodeToString(sum1[:]),
	}
	f.mu.Lock()
	f.pkgs[name] = p
	f.mu.Unlock()
	return p
}

// tarballURL is where the packument says the tarball of p is.
func (p *fakePackage) tarballURL() string {
	return fmt.Sprintf("https://%s/%s/-/%s-%s.tgz", registryHost, p.Name, p.Name, p.Version)
}

// packageTarball builds an npm package tarball: a gzipped tar whose
// entries sit under package/, in a stable order and with a fixed time so
// that the same files always give the same integrity.
func packageTarball(files map[string]string) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	mtime := time.Date(1985, 10, 26, 8, 15, 0, 0, time.UTC) // what npm pack uses
	for _, n := range names {
		body := []byte(files[n])
		hdr := &tar.Header{Name: "package/" + n, Mode: 0o644, Size: int64(len(body)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing the header of %s: %w", n, err)
		}
		if _, err := tw.Write(body); err != nil {
			return nil, fmt.Errorf("writing %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the tar stream: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("closing the gzip stream: %w", err)
	}
	return buf.Bytes(), nil
}

// received returns a copy of the requests so far.
func (f *fakeRegistry) received() []npmRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]npmRequest(nil), f.requests...)
}

// sawMethod reports whether any request used method.
func (f *fakeRegistry) sawMethod(method string) bool {
	for _, r := range f.received() {
		if r.Method == method {
			return true
		}
	}
	return false
}

// sawRequest reports whether the fake received method path.
func (f *fakeRegistry) sawRequest(method, path string) bool {
	for _, r := range f.received() {
		if r.Method == method && r.Path == path {
			return true
		}
	}
	return false
}

func (f *fakeRegistry) unexpectedRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.unexpected...)
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, err := url.PathUnescape(r.URL.EscapedPath())
	f.mu.Lock()
	f.requests = append(f.requests, npmRequest{Method: r.Method, Path: r.URL.EscapedPath(), Authorization: r.Header.Get("Authorization")})
	f.mu.Unlock()
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch {
	case err != nil || r.Host != registryHost:
		f.notFound(w, r, true)
	case len(segs) == 1 && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		f.mu.Lock()
		p, ok := f.pkgs[segs[0]]
		f.mu.Unlock()
		if !ok {
			// An unknown package: npm publish asks before publishing.
			f.notFound(w, r, false)
			return
		}
		body, err := json.Marshal(p.packument())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	case len(segs) == 3 && segs[1] == "-" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		f.mu.Lock()
		p, ok := f.pkgs[segs[0]]
		f.mu.Unlock()
		if !ok || segs[2] != p.Name+"-"+p.Version+".tgz" {
			f.notFound(w, r, true)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(p.Tarball)
	case len(segs) == 1 && r.Method == http.MethodPut:
		// A publish: accepted, as the real registry would.
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"id":%q}`+"\n", segs[0])
	default:
		f.notFound(w, r, true)
	}
}

func (f *fakeRegistry) notFound(w http.ResponseWriter, r *http.Request, unexpected bool) {
	if unexpected {
		f.mu.Lock()
		f.unexpected = append(f.unexpected, r.Method+" "+r.Host+r.URL.RequestURI())
		f.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte(`{"error":"Not found"}` + "\n"))
}

// packument is the registry's document of p's package: the full form,
// which npm also accepts when it asks for the abbreviated one.
func (p *fakePackage) packument() map[string]any {
	when := "2024-01-02T03:04:05.000Z"
	return map[string]any{
		"_id": p.Name, "name": p.Name,
		"dist-tags": map[string]string{"latest": p.Version},
		"versions": map[string]any{p.Version: map[string]any{
			"_id": p.Name + "@" + p.Version, "name": p.Name, "version": p.Version,
			"main": "index.js", "license": "MIT",
			"dist": map[string]any{"tarball": p.tarballURL(), "integrity": p.Integrity, "shasum": p.Shasum},
		}},
		"time":     map[string]string{"created": when, "modified": when, p.Version: when},
		"modified": when,
	}
}
