package keyring

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/term"
)

// MaxSecretSize bounds a secret read from stdin; more is refused rather than
// cut.
const MaxSecretSize = 64 << 10

// Console is the terminal side of a `tf creds` command.
type Console struct {
	In       io.Reader
	Out, Err io.Writer
	// InTerminal reports whether In is a terminal; then the value is read
	// with ReadHidden instead of from In.
	InTerminal bool
	// ReadHidden reads one line without echo.
	ReadHidden func(prompt string) (string, error)
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// StdConsole is the Console of the running process.
func StdConsole() Console {
	fd := int(os.Stdin.Fd())
	return Console{
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		InTerminal: term.IsTerminal(fd),
		ReadHidden: func(prompt string) (string, error) {
			return readNoEcho(os.Stdin, os.Stderr, prompt)
		},
	}
}

func (c Console) lookupEnv(k string) (string, bool) {
	if c.LookupEnv != nil {
		return c.LookupEnv(k)
	}
	return os.LookupEnv(k)
}

// ReadValue reads a secret value: from a no-echo prompt when stdin is a
// terminal, else all of stdin with one trailing newline (\n or \r\n)
// removed, so `echo "$TOKEN" | tf creds set x` and a file with a final
// newline both work while inner whitespace is kept as given.
func ReadValue(c Console, name string) (string, error) {
	if c.InTerminal {
		if c.ReadHidden == nil {
			return "", errors.New("keyring: no way to read from the terminal")
		}
		v, err := c.ReadHidden(fmt.Sprintf("Value for %s", name))
		if err != nil {
			return "", fmt.Errorf("keyring: reading the value: %w", err)
		}
		return v, nil
	}
	b, err := io.ReadAll(io.LimitReader(c.In, MaxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("keyring: reading the value from stdin: %w", err)
	}
	if len(b) > MaxSecretSize {
		return "", fmt.Errorf("keyring: the value on stdin is longer than %d bytes", MaxSecretSize)
	}
	s := string(b)
	if strings.HasSuffix(s, "\n") {
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	}
	return s, nil
}

// CmdSet is `tf creds set NAME`: it reads the value (never from the
// command line) and stores it.
func CmdSet(opts Options, args []string, c Console) error {
	name, err := oneName(args)
	if err != nil {
		return err
	}
	v, err := ReadValue(c, name)
	if err != nil {
		return err
	}
	s, err := Open(opts)
	if err != nil {
		return err
	}
	if err := s.Set(name, v); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "stored %s in %s\n", name, describe(s))
	if _, ok := c.lookupEnv(EnvName(name)); ok {
		fmt.Fprintf(c.Err, "note: %s is set in this environment and takes precedence over the keyring\n", EnvName(name))
	}
	return nil
}

// CmdRemove is `tf creds rm NAME`.
func CmdRemove(opts Options, args []string, c Console) error {
	name, err := oneName(args)
	if err != nil {
		return err
	}
	s, err := Open(opts)
	if err != nil {
		return err
	}
	if err := s.Remove(name); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "removed %s from %s\n", name, describe(s))
	return nil
}

// CmdList is `tf creds list`: the backend, the stored names, and the
// TF_SECRET_* variables set in the environment. Never a value.
func CmdList(opts Options, args []string, c Console) error {
	if len(args) > 0 {
		return fmt.Errorf("keyring: list takes no arguments")
	}
	s, err := Open(opts)
	if err != nil {
		return err
	}
	names, err := s.List()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "backend: %s\n", describe(s))
	for _, n := range names {
		fmt.Fprintln(c.Out, n)
	}
	if env := secretVars(); len(env) > 0 {
		fmt.Fprintf(c.Out, "environment (takes precedence): %s\n", strings.Join(env, ", "))
	}
	return nil
}

// CmdBackends is `tf creds backends`: the usable backends, the chosen one
// marked with '*'.
func CmdBackends(opts Options, args []string, c Console) error {
	if len(args) > 0 {
		return fmt.Errorf("keyring: backends takes no arguments")
	}
	chosen, err := Choose(opts)
	for _, b := range Backends() {
		mark := " "
		if b == chosen {
			mark = "*"
		}
		fmt.Fprintf(c.Out, "%s %s\n", mark, b)
	}
	if err != nil {
		return err
	}
	return nil
}

func oneName(args []string) (string, error) {
	switch {
	case len(args) == 0:
		return "", errors.New("keyring: missing secret NAME")
	case len(args) > 1:
		// Never echo the arguments: the extra one may be the value.
		return "", fmt.Errorf("keyring: expected only a secret NAME, got %d arguments; the value is read from stdin or a prompt, never from the command line", len(args))
	}
	name := args[0]
	if SecretValue(name) {
		return "", errors.New("keyring: the NAME looks like a token; give a name such as gh-token, and the value on stdin or at the prompt")
	}
	if err := ValidateName(name); err != nil {
		return "", err
	}
	return name, nil
}

func describe(s *Store) string {
	if s.file != nil {
		return fmt.Sprintf("%s (%s)", s.backend, s.file.dir)
	}
	return s.backend
}

func secretVars() []string {
	var out []string
	for _, kv := range os.Environ() {
		if name, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(name, EnvSecretPfx) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
