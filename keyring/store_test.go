package keyring

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	dk "github.com/99designs/keyring"
)

// isolate points every directory this package could touch at a temp dir and
// clears the variables that would change its choices.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TF_HOME", filepath.Join(dir, "tf"))
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("PASSWORD_STORE_DIR", filepath.Join(dir, "pass"))
	t.Setenv(EnvBackend, BackendFile)
	// Never ask the developer's terminal.
	promptTerminal = func(string) (string, error) { return "", errNoPassphrase }
	t.Cleanup(func() { promptTerminal = terminalPrompt })
	for _, k := range []string{EnvPassphrase} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, EnvSecretPfx) {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	return dir
}

func fixed(p string) PassphraseFunc { return func(string) (string, error) { return p, nil } }

func openFile(t *testing.T, dir, pass string) *Store {
	t.Helper()
	s, err := Open(Options{Backend: BackendFile, FileDir: dir, Passphrase: fixed(pass)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Backend() != BackendFile {
		t.Fatalf("backend %q", s.Backend())
	}
	return s
}

func TestFileStoreRoundTrip(t *testing.T) {
	dir := filepath.Join(isolate(t), "kr")
	s := openFile(t, dir, "pw")
	if names, err := s.List(); err != nil || len(names) != 0 {
		t.Fatalf("fresh List = %v, %v", names, err)
	}
	for name, v := range map[string]string{"gh-token": "ghp-one", "npm.token": "npm two", "b_3": "x\ty"} {
		if err := s.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set("gh-token", "ghp-rotated"); err != nil {
		t.Fatal(err)
	}
	names, err := s.List()
	if err != nil || !reflect.DeepEqual(names, []string{"b_3", "gh-token", "npm.token"}) {
		t.Fatalf("List = %v, %v", names, err)
	}
	// A second store, as another tf process would open it.
	s2 := openFile(t, dir, "pw")
	for name, want := range map[string]string{"gh-token": "ghp-rotated", "npm.token": "npm two", "b_3": "x\ty"} {
		if got, err := s2.Get(name); err != nil || got != want {
			t.Errorf("Get(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	if err := s2.Remove("npm.token"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("npm.token"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if err := s.Remove("npm.token"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode: %v %v", fi, err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temporary file left: %s", e.Name())
		}
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), fi.Mode())
		}
	}
}

func TestFileStoreDefaultsFromEnvironment(t *testing.T) {
	tmp := isolate(t)
	t.Setenv(EnvPassphrase, "from-env")
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(tmp, "tf", "keyring")
	if s.Backend() != BackendFile || s.Location() != want {
		t.Fatalf("opened %s at %s, want file at %s", s.Backend(), s.Location(), want)
	}
	if err := s.Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(want, "k")); err != nil {
		t.Fatal(err)
	}
	// Without the variable and without a terminal there is no passphrase:
	// a clear error, no hang.
	os.Unsetenv(EnvPassphrase)
	prompts := 0
	promptTerminal = func(string) (string, error) { prompts++; return "", errNoPassphrase }
	t.Cleanup(func() { promptTerminal = terminalPrompt })
	s2, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get("k"); err == nil || !strings.Contains(err.Error(), EnvPassphrase) || prompts != 1 {
		t.Fatalf("Get without passphrase: %v (%d prompts)", err, prompts)
	}
}

func TestInteractiveNewKeyringAsksTwice(t *testing.T) {
	dir := filepath.Join(isolate(t), "kr")
	answers := []string{"typed", "typo"}
	promptTerminal = func(string) (string, error) { a := answers[0]; answers = answers[1:]; return a, nil }
	t.Cleanup(func() { promptTerminal = terminalPrompt })
	s, err := Open(Options{Backend: BackendFile, FileDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set("k", "v"); err == nil || !strings.Contains(err.Error(), "did not match") {
		t.Fatalf("mismatched repeat: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files written after a mismatch: %v", ents)
	}
	answers = []string{"typed", "typed"}
	if err := s.Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	// An existing keyring asks once.
	answers = []string{"typed"}
	s2, _ := Open(Options{Backend: BackendFile, FileDir: dir})
	if v, err := s2.Get("k"); err != nil || v != "v" || len(answers) != 0 {
		t.Fatalf("Get = %q, %v; %d answers left", v, err, len(answers))
	}
}

func TestWrongPassphrase(t *testing.T) {
	dir := filepath.Join(isolate(t), "kr")
	if err := openFile(t, dir, "right").Set("gh-token", "secret-value"); err != nil {
		t.Fatal(err)
	}
	want := "keyring: wrong passphrase for " + dir
	wrong := openFile(t, dir, "wrong")
	_, err := wrong.Get("gh-token")
	if !errors.Is(err, ErrWrongPassphrase) || err.Error() != want {
		t.Fatalf("Get: %v, want %q", err, want)
	}
	// Writing is refused too: a wrong passphrase must not start a second
	// set of secrets under another key.
	if err := wrong.Set("other", "v"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Set: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Set with the wrong passphrase wrote a file")
	}
	// A keyring written without the check item (by an older tf or by hand
	// through 99designs) is checked against an existing secret.
	if err := os.Remove(filepath.Join(dir, checkKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := openFile(t, dir, "wrong").Get("gh-token"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Get without check item: %v", err)
	}
	if v, err := openFile(t, dir, "right").Get("gh-token"); err != nil || v != "secret-value" {
		t.Fatalf("right passphrase: %q, %v", v, err)
	}
	if _, err := os.Stat(filepath.Join(dir, checkKey)); err != nil {
		t.Fatalf("check item not restored: %v", err)
	}
	if _, err := openFile(t, dir, "").Get("gh-token"); err == nil || !strings.Contains(err.Error(), "empty passphrase") {
		t.Fatalf("empty passphrase: %v", err)
	}
}

func TestDamagedFile(t *testing.T) {
	dir := filepath.Join(isolate(t), "kr")
	s := openFile(t, dir, "pw")
	if err := s.Set("a", "value-a"); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"", "garbage", "a.b.c.d.e", "eyJhbGciOiJub25lIn0.e30."} {
		if err := os.WriteFile(filepath.Join(dir, "a"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := openFile(t, dir, "pw").Get("a")
		if err == nil || !strings.Contains(err.Error(), `cannot decrypt "a"`) {
			t.Errorf("content %q: %v", content, err)
		}
	}
}

func TestNameValidation(t *testing.T) {
	s := openFile(t, filepath.Join(isolate(t), "kr"), "pw")
	for _, n := range []string{"", "a b", "../x", "a/b", "-rf", ".hidden", checkKey, "ü"} {
		if err := s.Set(n, "v"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Set(%q): %v", n, err)
		}
		if _, err := s.Get(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get(%q): %v", n, err)
		}
		if err := s.Remove(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Remove(%q): %v", n, err)
		}
	}
	err := s.Set("a b", "v")
	if !strings.HasPrefix(err.Error(), `keyring: invalid secret name "a b": use letters, digits`) {
		t.Fatalf("message: %v", err)
	}
	for _, v := range []string{"", "line\nbreak", "cr\r", "nul\x00"} {
		err := s.Set("ok", v)
		if err == nil {
			t.Errorf("value %q accepted", v)
		} else if v != "" && strings.Contains(err.Error(), v) {
			t.Errorf("error shows the value: %v", err)
		}
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"gh-token": "TF_SECRET_GH_TOKEN", "npm.token": "TF_SECRET_NPM_TOKEN", "A_b9": "TF_SECRET_A_B9"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBackendChoice(t *testing.T) {
	isolate(t)
	bs := Backends()
	if len(bs) == 0 || !contains(bs, BackendFile) {
		t.Fatalf("Backends = %v", bs)
	}
	if got, err := Choose(Options{}); err != nil || got != BackendFile {
		t.Fatalf("Choose with %s=file: %q, %v", EnvBackend, got, err)
	}
	if _, err := Choose(Options{Backend: "vault"}); err == nil || !strings.Contains(err.Error(), `unknown backend "vault"`) {
		t.Fatalf("unknown backend: %v", err)
	}
	// A known backend that does not exist here is refused, not replaced.
	for _, b := range allBackends {
		if !contains(bs, b) {
			if _, err := Open(Options{Backend: b}); !errors.Is(err, ErrNoBackend) {
				t.Errorf("Open(%s) not available here: %v", b, err)
			}
		}
	}
	// With nothing named, keyctl (forgets at reboot) is never chosen.
	os.Unsetenv(EnvBackend)
	got, err := Choose(Options{})
	if err != nil || got == BackendKeyctl || !contains(bs, got) {
		t.Fatalf("auto choice %q, %v from %v", got, err, bs)
	}
}

// arrayStore is a Store over 99designs' in-memory keyring: the path every
// OS backend takes, without touching the machine's keyrings.
func arrayStore() *Store {
	return &Store{backend: "array", kr: dk.NewArrayKeyring(nil)}
}

func TestOSBackendPath(t *testing.T) {
	s := arrayStore()
	if err := s.Set("a", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get("a"); err != nil || v != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if _, err := s.Get("b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	if names, err := s.List(); err != nil || !reflect.DeepEqual(names, []string{"a"}) {
		t.Fatalf("List = %v, %v", names, err)
	}
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove missing: %v", err)
	}
}

func TestResolverEnvWins(t *testing.T) {
	s := arrayStore()
	if err := s.Set("gh-token", "from-keyring"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TF_SECRET_GH_TOKEN": "from-env", "TF_SECRET_ONLY_ENV": "e2", "TF_SECRET_BAD": "a\nb"}
	r := NewResolver(s, ResolverOptions{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if v, err := r.Get("gh-token"); err != nil || v != "from-env" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := r.Get("only-env"); err != nil || v != "e2" {
		t.Fatalf("env only = %q, %v", v, err)
	}
	if _, err := r.Get("bad"); err == nil || strings.Contains(err.Error(), "a\nb") || !strings.Contains(err.Error(), "TF_SECRET_BAD") {
		t.Fatalf("bad env value: %v", err)
	}
	delete(env, "TF_SECRET_GH_TOKEN")
	if v, err := r.Get("gh-token"); err != nil || v != "from-keyring" {
		t.Fatalf("after unsetting env = %q, %v", v, err)
	}
	// No keyring at all (CI): the environment alone.
	ci := NewResolver(nil, ResolverOptions{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err := ci.Resolve("only-env"); err != nil {
		t.Fatal(err)
	}
	if _, err := ci.Get("gh-token"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "TF_SECRET_GH_TOKEN") {
		t.Fatalf("missing in CI: %v", err)
	}
}

func TestResolveNamesEveryMissingSecret(t *testing.T) {
	s := arrayStore()
	_ = s.Set("present", "v")
	r := NewResolver(s, ResolverOptions{LookupEnv: func(string) (string, bool) { return "", false }})
	err := r.Resolve("present", "missing-a", "missing-b")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "missing-a, missing-b") || strings.Contains(err.Error(), "present") {
		t.Fatalf("Resolve: %v", err)
	}
	if err := r.Resolve("present"); err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve("bad name"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("invalid name: %v", err)
	}
}

func TestResolverSeesRotationInFile(t *testing.T) {
	dir := filepath.Join(isolate(t), "kr")
	cli := openFile(t, dir, "pw")
	if err := cli.Set("gh-token", "v1"); err != nil {
		t.Fatal(err)
	}
	gw := NewResolver(openFile(t, dir, "pw"), ResolverOptions{})
	if err := gw.Resolve("gh-token"); err != nil {
		t.Fatal(err)
	}
	if v, _ := gw.Get("gh-token"); v != "v1" {
		t.Fatalf("first Get %q", v)
	}
	// Same length, written at once: the rename gives a new file, so even a
	// coarse mtime cannot hide the change.
	if err := openFile(t, dir, "pw").Set("gh-token", "v2"); err != nil {
		t.Fatal(err)
	}
	if v, err := gw.Get("gh-token"); err != nil || v != "v2" {
		t.Fatalf("after rotation %q, %v", v, err)
	}
	if err := cli.Remove("gh-token"); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Get("gh-token"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after removal: %v", err)
	}
	red := gw.Redactor().Redact("old v1 new v2")
	if red != "old [redacted] new [redacted]" {
		t.Fatalf("redactor did not learn both values: %q", red)
	}
}

func TestResolverTTLForOSBackends(t *testing.T) {
	s := arrayStore()
	_ = s.Set("k", "v1")
	now := time.Unix(1000, 0)
	r := NewResolver(s, ResolverOptions{
		TTL:       time.Second,
		LookupEnv: func(string) (string, bool) { return "", false },
		Now:       func() time.Time { return now },
	})
	if v, _ := r.Get("k"); v != "v1" {
		t.Fatal(v)
	}
	_ = s.Set("k", "v2")
	now = now.Add(999 * time.Millisecond)
	if v, _ := r.Get("k"); v != "v1" {
		t.Fatalf("within TTL: %q", v)
	}
	now = now.Add(time.Millisecond)
	if v, _ := r.Get("k"); v != "v2" {
		t.Fatalf("after TTL: %q", v)
	}
	_ = s.Remove("k")
	now = now.Add(time.Second)
	if _, err := r.Get("k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after removal: %v", err)
	}
}

// TestNoPlaintextOnDiskOrOutput runs the command functions with a known
// secret and checks that it shows nowhere: not in the files of the file
// backend, not in any output or error.
func TestNoPlaintextOnDiskOrOutput(t *testing.T) {
	tmp := isolate(t)
	dir := filepath.Join(tmp, "tf", "keyring")
	t.Setenv(EnvPassphrase, "correct horse")
	const secret = "ghp_LeakCanary0123456789abcdefghijklmnop"
	forms := []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawStdEncoding.EncodeToString([]byte(secret))}
	var out, errOut bytes.Buffer
	con := func(in string) Console {
		return Console{In: strings.NewReader(in), Out: &out, Err: &errOut, LookupEnv: os.LookupEnv}
	}
	var errs []string
	run := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	run(CmdSet(Options{}, []string{"gh-token"}, con(secret+"\n")))
	run(CmdList(Options{}, nil, con("")))
	run(CmdBackends(Options{}, nil, con("")))
	if len(errs) > 0 {
		t.Fatalf("commands failed: %v", errs)
	}
	if v, err := openFile(t, dir, "correct horse").Get("gh-token"); err != nil || v != secret {
		t.Fatalf("stored value wrong (%v)", err)
	}
	checkDir := func() {
		t.Helper()
		err := filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			for _, f := range forms {
				if bytes.Contains(b, []byte(f)) || strings.Contains(p, f) {
					t.Errorf("%s holds the secret in plain text", p)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	checkDir()
	// Failing paths print errors; they must not carry the value either.
	run(CmdSet(Options{}, []string{"gh-token", secret}, con("")))
	run(CmdSet(Options{}, []string{secret}, con("x")))
	run(CmdSet(Options{}, []string{"bad name"}, con(secret)))
	run(CmdSet(Options{}, []string{"x"}, con(secret+"\nmore\n")))
	t.Setenv(EnvPassphrase, "wrong")
	run(CmdSet(Options{}, []string{"gh-token"}, con(secret)))
	t.Setenv(EnvPassphrase, "correct horse")
	run(CmdRemove(Options{}, []string{"gh-token"}, con("")))
	run(CmdRemove(Options{}, []string{"gh-token"}, con("")))
	if len(errs) != 6 {
		t.Fatalf("want 6 refusals, got %d: %q", len(errs), errs)
	}
	checkDir()
	all := out.String() + errOut.String() + strings.Join(errs, "\n")
	for _, f := range forms {
		if strings.Contains(all, f) {
			t.Fatalf("output holds the secret:\n%s", all)
		}
	}
	for _, want := range []string{"stored gh-token in file (" + dir + ")", "backend: file (" + dir + ")\ngh-token\n", "* file\n", "removed gh-token from file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out.String())
		}
	}
}

func TestResolverConcurrentRotation(t *testing.T) {
	dir := filepath.Join(isolate(t), "kr")
	w := openFile(t, dir, "pw")
	if err := w.Set("k", "v0"); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(openFile(t, dir, "pw"), ResolverOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50 && ctx.Err() == nil; i++ {
				v, err := r.Get("k")
				if err != nil || !strings.HasPrefix(v, "v") {
					errs <- fmt.Errorf("Get = %q, %v", v, err)
					return
				}
			}
		}()
	}
	for i := 1; i <= 5; i++ {
		if err := w.Set("k", fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v, err := r.Get("k"); err != nil || v != "v5" {
		t.Fatalf("final Get = %q, %v", v, err)
	}
}
