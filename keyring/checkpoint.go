package keyring

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// CheckpointKeyName is the secret that holds the key tf signs audit
// checkpoints with (the base64 of an Ed25519 seed). It is kept in the
// keyring, or in TF_SECRET_AUDIT_CHECKPOINT_KEY, never beside the log.
const CheckpointKeyName = "audit-checkpoint-key"

// ErrNoCheckpointKey means no checkpoint key is configured.
var ErrNoCheckpointKey = errors.New("no audit checkpoint key (tf audit checkpoint creates one in the keyring)")

// CheckpointKey returns the audit checkpoint key: from the environment,
// else from the keyring opts opens; with create, a new key is made and
// stored there when there is none.
func CheckpointKey(opts Options, create bool) (ed25519.PrivateKey, error) {
	if v, ok := os.LookupEnv(EnvName(CheckpointKeyName)); ok {
		return parseCheckpointKey(v)
	}
	s, err := Open(opts)
	if err != nil {
		if create {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrNoCheckpointKey, err)
	}
	v, err := s.Get(CheckpointKeyName)
	switch {
	case err == nil:
		return parseCheckpointKey(v)
	case !errors.Is(err, ErrNotFound):
		return nil, err
	case !create:
		return nil, ErrNoCheckpointKey
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	if err := s.Set(CheckpointKeyName, base64.StdEncoding.EncodeToString(seed)); err != nil {
		return nil, fmt.Errorf("storing the audit checkpoint key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func parseCheckpointKey(v string) (ed25519.PrivateKey, error) {
	seed, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is not the base64 of a %d-byte Ed25519 seed", CheckpointKeyName, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// EnvPassphraseOnly gives the file keyring's passphrase from the
// environment and never prompts: for work done without a person present.
func EnvPassphraseOnly(string) (string, error) {
	if v, ok := os.LookupEnv(EnvPassphrase); ok {
		return v, nil
	}
	return "", errNoPassphrase
}
