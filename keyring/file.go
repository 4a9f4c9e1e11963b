package keyring

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	dk "github.com/99designs/keyring"
	"golang.org/x/term"
)

// checkKey names the item that proves a passphrase right. It is not a valid
// secret name, so it never shows in List and cannot be overwritten by Set.
const (
	checkKey   = "@tameflare-passphrase-check"
	checkValue = "tameflare"
	tmpPrefix  = ".tmp-"
)

// fileStore is the encrypted file backend: one JWE file per secret
// (PBES2-HS256+A128KW, A256GCM, written by 99designs/keyring) in dir.
type fileStore struct {
	dir    string
	passFn PassphraseFunc
	kr     dk.Keyring // set once unlocked
	err    error      // a wrong passphrase, remembered: asking again cannot help
}

func newFileStore(dir string, fn PassphraseFunc) (*fileStore, error) {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("keyring: %s is not a directory", dir)
	}
	return &fileStore{dir: dir, passFn: fn}, nil
}

// passphrase returns the passphrase and whether a person typed it (then a
// new keyring asks for it twice).
func (f *fileStore) passphrase(prompt string) (string, bool, error) {
	if f.passFn != nil {
		p, err := f.passFn(prompt)
		return p, false, err
	}
	if v, ok := os.LookupEnv(EnvPassphrase); ok {
		return v, false, nil
	}
	p, err := promptTerminal(prompt)
	return p, true, err
}

// unlock obtains the passphrase and proves it against the check item, or
// against an existing secret when the directory has none; a fresh directory
// gets the check item. Without the check, a wrong passphrase would silently
// start a second set of secrets under another key.
func (f *fileStore) unlock() error {
	if f.kr != nil {
		return nil
	}
	if f.err != nil {
		return f.err
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("keyring: creating %s: %w", f.dir, err)
	}
	pass, typed, err := f.passphrase(fmt.Sprintf("Passphrase for the tf keyring in %s", f.dir))
	if err != nil {
		return fmt.Errorf("keyring: reading the passphrase: %w", err)
	}
	if pass == "" {
		return errEmptyPassphrase
	}
	kr, err := dk.Open(dk.Config{
		AllowedBackends:  []dk.BackendType{dk.FileBackend},
		FileDir:          f.dir,
		FilePasswordFunc: dk.FixedStringPrompt(pass),
	})
	if err != nil {
		return fmt.Errorf("keyring: opening %s: %w", f.dir, err)
	}
	_, err = kr.Get(checkKey)
	switch {
	case err == nil:
	case errors.Is(err, dk.ErrKeyNotFound):
		names, lerr := f.keys()
		if lerr != nil {
			return fmt.Errorf("keyring: listing %s: %w", f.dir, lerr)
		}
		var valid []string
		for _, n := range names {
			if ValidateName(n) == nil {
				valid = append(valid, n)
			}
		}
		if len(valid) > 0 {
			if _, err := kr.Get(valid[0]); err != nil {
				return f.decryptErr(err)
			}
		} else if typed {
			again, err := promptTerminal("Repeat the passphrase for the new keyring")
			if err != nil {
				return fmt.Errorf("keyring: reading the passphrase: %w", err)
			}
			if again != pass {
				return errPassphraseRepeat
			}
		}
		if err := atomicSet(kr, f.dir, checkKey, checkValue); err != nil {
			return fmt.Errorf("keyring: writing %s: %w", f.dir, err)
		}
	default:
		return f.decryptErr(err)
	}
	f.kr = kr
	return nil
}

// decryptErr tells a read failure from a failed decryption. The latter is
// a wrong passphrase: AES-GCM and the key wrap check integrity, so a wrong
// key cannot yield a garbled value.
func (f *fileStore) decryptErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("keyring: reading %s: %w", f.dir, err)
	}
	f.err = fmt.Errorf("%w for %s", ErrWrongPassphrase, f.dir)
	return f.err
}

func (f *fileStore) get(name string) (string, error) {
	if _, err := os.Stat(filepath.Join(f.dir, name)); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %q in %s", ErrNotFound, name, f.dir)
	}
	if err := f.unlock(); err != nil {
		return "", err
	}
	it, err := f.kr.Get(name)
	switch {
	case errors.Is(err, dk.ErrKeyNotFound):
		return "", fmt.Errorf("%w: %q in %s", ErrNotFound, name, f.dir)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("keyring: reading %q from %s: %w", name, f.dir, err)
		}
		// The passphrase was proved, so this file is damaged or was
		// written under another passphrase. The decoder's message is
		// not passed on: it is of no use to the reader.
		return "", fmt.Errorf("keyring: cannot decrypt %q in %s: the file is damaged or was written with another passphrase", name, f.dir)
	}
	return string(it.Data), nil
}

func (f *fileStore) set(name, value string) error {
	if err := f.unlock(); err != nil {
		return err
	}
	if err := atomicSet(f.kr, f.dir, name, value); err != nil {
		return fmt.Errorf("keyring: storing %q in %s: %w", name, f.dir, err)
	}
	return nil
}

// atomicSet writes the item under a temporary name and renames it into
// place, so a running gateway never reads a half-written file.
func atomicSet(kr dk.Keyring, dir, name, value string) error {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := tmpPrefix + name + "-" + hex.EncodeToString(rnd[:])
	if err := kr.Set(dk.Item{Key: tmp, Data: []byte(value)}); err != nil {
		_ = os.Remove(filepath.Join(dir, tmp))
		return err
	}
	if err := os.Rename(filepath.Join(dir, tmp), filepath.Join(dir, name)); err != nil {
		_ = os.Remove(filepath.Join(dir, tmp))
		return err
	}
	return nil
}

// remove needs no passphrase: anyone who can write the directory can delete
// a file anyway, and a forgotten passphrase should not pin a secret.
func (f *fileStore) remove(name string) error {
	err := os.Remove(filepath.Join(f.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q in %s", ErrNotFound, name, f.dir)
	}
	if err != nil {
		return fmt.Errorf("keyring: removing %q from %s: %w", name, f.dir, err)
	}
	return nil
}

// keys lists the regular files in dir (names only; no passphrase needed).
func (f *fileStore) keys() ([]string, error) {
	ents, err := os.ReadDir(f.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), tmpPrefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// stat returns the file info of name's file: the Resolver's cheap check
// that a cached value is still current.
func (f *fileStore) stat(name string) (os.FileInfo, error) {
	return os.Stat(filepath.Join(f.dir, name))
}

// promptTerminal is terminalPrompt; tests replace it so that a developer's
// terminal is never asked.
var promptTerminal = terminalPrompt

// terminalPrompt asks on the controlling terminal without echo. It prefers
// /dev/tty so that a secret piped into stdin and a typed passphrase do not
// compete for the same stream.
func terminalPrompt(prompt string) (string, error) {
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		defer tty.Close()
		return readNoEcho(tty, tty, prompt)
	}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		return readNoEcho(os.Stdin, os.Stderr, prompt)
	}
	return "", errNoPassphrase
}

func readNoEcho(in *os.File, out *os.File, prompt string) (string, error) {
	if !term.IsTerminal(int(in.Fd())) {
		return "", errNoPassphrase
	}
	if _, err := fmt.Fprintf(out, "%s: ", prompt); err != nil {
		return "", err
	}
	b, err := term.ReadPassword(int(in.Fd()))
	_, _ = fmt.Fprintln(out)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
