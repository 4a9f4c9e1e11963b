package keyring

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sealedFD names the descriptor on which a re-executed tf finds the
// secrets its environment held.
const sealedFD = "TF_SEALED_FD"

// SealProcess keeps tf's own process from being a secret store for other
// processes of the same user: it marks the process non-dumpable, so they
// cannot read its memory or environment through /proc, and when its
// environment holds secrets (TF_SECRET_*, TF_KEYRING_PASSPHRASE, the
// AgentKeys variables) it
// executes itself again without them, handing them over in an anonymous
// memory file, so /proc/PID/environ never shows them. Call it first in
// main; it returns only in the process that goes on.
func SealProcess() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("marking tf non-dumpable: %w", err)
	}
	if v, ok := os.LookupEnv(sealedFD); ok {
		os.Unsetenv(sealedFD)
		return adoptSealed(v)
	}
	var secret, rest []string
	for _, kv := range os.Environ() {
		if isSecretVar(kv) {
			secret = append(secret, kv)
		} else {
			rest = append(rest, kv)
		}
	}
	if len(secret) == 0 {
		return nil
	}
	fd, err := unix.MemfdCreate("tf-secrets", 0) // inherited by the exec
	if err != nil {
		return fmt.Errorf("sealing secrets: %w", err)
	}
	f := os.NewFile(uintptr(fd), "tf-secrets")
	if _, err := f.WriteString(strings.Join(secret, "\x00")); err != nil {
		f.Close()
		return fmt.Errorf("sealing secrets: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("sealing secrets: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		f.Close()
		return fmt.Errorf("sealing secrets: %w", err)
	}
	rest = append(rest, sealedFD+"="+strconv.Itoa(fd))
	err = unix.Exec(exe, os.Args, rest)
	f.Close()
	return fmt.Errorf("sealing secrets: executing tf again: %w", err)
}

func isSecretVar(kv string) bool {
	return strings.HasPrefix(kv, EnvSecretPfx) || strings.HasPrefix(kv, EnvPassphrase+"=") || isAgentKeyVar(kv)
}

// adoptSealed reads the secrets handed over on fd into this process's own
// environment (which /proc does not show) and closes fd.
func adoptSealed(v string) error {
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q is not a descriptor tf passed", sealedFD, v)
	}
	f := os.NewFile(uintptr(fd), "tf-secrets")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return fmt.Errorf("reading sealed secrets: %w", err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, val, ok := strings.Cut(string(kv), "=")
		if ok && isSecretVar(string(kv)) {
			os.Setenv(k, val)
		}
	}
	return nil
}
