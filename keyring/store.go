// Package keyring keeps tf's secrets (OS keyrings, an encrypted file, or TF_SECRET_* for CI), injects them into requests and redacts them from everything else.
package keyring

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	dk "github.com/99designs/keyring"

	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/keyring/injection"
)

// ServiceName is the name tf's items are stored under in OS keyrings.
const ServiceName = "tameflare"

// Environment variables read by this package.
const (
	EnvBackend    = "TF_KEYRING_BACKEND"
	EnvPassphrase = "TF_KEYRING_PASSPHRASE"
	EnvSecretPfx  = "TF_SECRET_"
)

// Backend names, as accepted in TF_KEYRING_BACKEND.
const (
	BackendSecretService = "secret-service"
	BackendKeychain      = "keychain"
	BackendWinCred       = "wincred"
	BackendKWallet       = "kwallet"
	BackendKeyctl        = "keyctl"
	BackendPass          = "pass"
	BackendFile          = "file"
)

// allBackends is every name TF_KEYRING_BACKEND accepts.
var allBackends = []string{BackendSecretService, BackendKeychain, BackendWinCred, BackendKWallet, BackendKeyctl, BackendPass, BackendFile}

// autoOrder is the preference when no backend is named. keyctl is left out:
// the kernel keyring forgets everything at reboot, which is a surprise no
// one should get by default. pass joins only when its store is set up.
var autoOrder = []string{BackendWinCred, BackendKeychain, BackendSecretService, BackendKWallet, BackendPass, BackendFile}

// Errors callers may test with errors.Is.
var (
	ErrNotFound         = errors.New("keyring: secret not found")
	ErrWrongPassphrase  = errors.New("keyring: wrong passphrase")
	ErrNoBackend        = errors.New("keyring: backend not available")
	ErrInvalidName      = injection.ErrInvalidName
	errNoPassphrase     = errors.New("keyring: no passphrase for the file keyring: set " + EnvPassphrase + " or run in a terminal")
	errEmptyPassphrase  = errors.New("keyring: empty passphrase refused")
	errPassphraseRepeat = errors.New("keyring: the passphrases did not match")
)

// PassphraseFunc returns the file keyring's passphrase; prompt says what for.
type PassphraseFunc func(prompt string) (string, error)

// Options configure Open. The zero value reads the environment.
type Options struct {
	// Backend is a backend name; empty means $TF_KEYRING_BACKEND, else the
	// best available (see Backends).
	Backend string
	// FileDir is the file backend's directory; empty means $TF_HOME/keyring.
	FileDir string
	// Passphrase supplies the file backend's passphrase; nil means
	// $TF_KEYRING_PASSPHRASE, else a no-echo prompt on the terminal.
	Passphrase PassphraseFunc
}

// Store is an open keyring holding tf's secrets. It is safe for concurrent
// use.
type Store struct {
	backend string
	mu      sync.Mutex // the 99designs backends are not safe for concurrent use
	kr      dk.Keyring // OS backends
	file    *fileStore // file backend
}

// Backends lists the backends usable on this machine, best first. An OS
// backend is listed when its service was reachable when tf started (the
// 99designs package probes D-Bus once); pass when its program is installed.
func Backends() []string {
	have := map[string]bool{}
	for _, b := range dk.AvailableBackends() {
		have[string(b)] = true
	}
	if have[BackendPass] {
		if _, err := exec.LookPath("pass"); err != nil {
			have[BackendPass] = false
		}
	}
	var out []string
	for _, b := range allBackends {
		if have[b] {
			out = append(out, b)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

func rank(b string) int {
	for i, a := range autoOrder {
		if a == b {
			return i
		}
	}
	return len(autoOrder) // keyctl: listed, never chosen on its own
}

// Choose returns the backend Open would try first: opts.Backend, else
// $TF_KEYRING_BACKEND, else the best available. It validates the name.
func Choose(opts Options) (string, error) {
	cands, err := candidates(opts)
	if err != nil {
		return "", err
	}
	return cands[0], nil
}

func candidates(opts Options) ([]string, error) {
	name := opts.Backend
	if name == "" {
		name = os.Getenv(EnvBackend)
	}
	avail := Backends()
	if name != "" {
		if !contains(allBackends, name) {
			return nil, fmt.Errorf("keyring: unknown backend %q (known: %s)", name, strings.Join(allBackends, ", "))
		}
		if !contains(avail, name) {
			return nil, fmt.Errorf("%w: %s (available here: %s)", ErrNoBackend, name, strings.Join(avail, ", "))
		}
		return []string{name}, nil
	}
	var out []string
	for _, b := range avail {
		if b == BackendKeyctl || b == BackendPass && !passStoreReady() {
			continue
		}
		out = append(out, b)
	}
	if len(out) == 0 { // cannot happen while the file backend is compiled in
		return nil, ErrNoBackend
	}
	return out, nil
}

// passStoreReady reports whether pass has been initialised (pass init
// writes .gpg-id); an uninitialised pass would fail at the first set.
func passStoreReady() bool {
	dir := os.Getenv("PASSWORD_STORE_DIR")
	if dir == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return false
		}
		dir = filepath.Join(h, ".password-store")
	}
	_, err := os.Stat(filepath.Join(dir, ".gpg-id"))
	return err == nil
}

// Open opens the keyring chosen by opts. With no backend named it tries the
// available ones best first and keeps the first that opens. The file
// backend asks for its passphrase only when a secret is read or written.
func Open(opts Options) (*Store, error) {
	cands, err := candidates(opts)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, b := range cands {
		s, err := openBackend(b, opts)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func openBackend(b string, opts Options) (*Store, error) {
	if b == BackendFile {
		dir := opts.FileDir
		if dir == "" {
			h, err := home.Dir()
			if err != nil {
				return nil, fmt.Errorf("keyring: locating the file keyring: %w", err)
			}
			dir = filepath.Join(h, "keyring")
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("keyring: file keyring directory %s: %w", dir, err)
		}
		f, err := newFileStore(abs, opts.Passphrase)
		if err != nil {
			return nil, err
		}
		return &Store{backend: b, file: f}, nil
	}
	kr, err := dk.Open(dk.Config{
		AllowedBackends:          []dk.BackendType{dk.BackendType(b)},
		ServiceName:              ServiceName,
		LibSecretCollectionName:  ServiceName,
		KWalletAppID:             ServiceName,
		KWalletFolder:            ServiceName,
		KeyCtlScope:              "user",
		PassPrefix:               ServiceName,
		WinCredPrefix:            ServiceName,
		KeychainTrustApplication: true,
		// Never reached for the OS backends; set so a prompt can never
		// go to stdout, where the 99designs default writes it.
		FilePasswordFunc: func(string) (string, error) { return "", errNoPassphrase },
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: opening %s: %w", b, err)
	}
	return &Store{backend: b, kr: kr}, nil
}

// Backend names the backend in use.
func (s *Store) Backend() string { return s.backend }

// Location is where the backend keeps secrets: the directory of the file
// backend, else the backend's name.
func (s *Store) Location() string {
	if s.file != nil {
		return s.file.dir
	}
	return s.backend
}

// Set stores value under name, replacing any earlier value.
func (s *Store) Set(name, value string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := injection.ValidSecretValue(value); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		return s.file.set(name, value)
	}
	err := s.kr.Set(dk.Item{Key: name, Data: []byte(value), Label: ServiceName + " " + name, Description: "secret injected by tf"})
	if err != nil {
		return fmt.Errorf("keyring: storing %q in %s: %w", name, s.backend, err)
	}
	return nil
}

// Get returns the value stored under name, or an error wrapping ErrNotFound.
func (s *Store) Get(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		return s.file.get(name)
	}
	it, err := s.kr.Get(name)
	if errors.Is(err, dk.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: %q in %s", ErrNotFound, name, s.backend)
	}
	if err != nil {
		return "", fmt.Errorf("keyring: reading %q from %s: %w", name, s.backend, err)
	}
	return string(it.Data), nil
}

// Remove deletes name; removing a missing secret is an error wrapping
// ErrNotFound, so a typo does not pass for success.
func (s *Store) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		return s.file.remove(name)
	}
	// Not every backend reports a missing item on Remove, so look first.
	keys, err := s.kr.Keys()
	if err != nil {
		return fmt.Errorf("keyring: listing %s: %w", s.backend, err)
	}
	if !contains(keys, name) {
		return fmt.Errorf("%w: %q in %s", ErrNotFound, name, s.backend)
	}
	err = s.kr.Remove(name)
	if errors.Is(err, dk.ErrKeyNotFound) || errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %q in %s", ErrNotFound, name, s.backend)
	}
	if err != nil {
		return fmt.Errorf("keyring: removing %q from %s: %w", name, s.backend, err)
	}
	return nil
}

// List returns the names of the stored secrets, sorted. Entries that are
// not valid secret names (the file backend's own files, other programs'
// items) are left out.
func (s *Store) List() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	var err error
	if s.file != nil {
		keys, err = s.file.keys()
	} else {
		keys, err = s.kr.Keys()
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: listing %s: %w", s.Location(), err)
	}
	out := keys[:0]
	for _, k := range keys {
		if ValidateName(k) == nil {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// ValidateName reports whether name can name a secret: letters, digits,
// '-', '_' and '.', starting with a letter or digit, at most 128 bytes.
func ValidateName(name string) error {
	if err := injection.ValidSecretName(name); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return nil
}

// EnvName maps a secret name to the variable that provides it without a
// keyring: upper case, '-' and '.' become '_' (gh-token → TF_SECRET_GH_TOKEN).
// The mapping is many to one (gh-token and gh.token share a variable).
func EnvName(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if c == '-' || c == '.' {
			b[i] = '_'
		}
	}
	return EnvSecretPfx + string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
