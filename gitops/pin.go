// Package gitops keeps tf's policy in a git repository: the pin, reading a policy at a commit, planning a change against recorded traffic, and applying it.
package gitops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	tfhome "github.com/tameflare/tf/home"
)

// PinFile is the name of the pin inside $TF_HOME.
const PinFile = "pin"

// PinVersion is the version of the pin file format written by WritePin.
const PinVersion = 1

// maxPinBytes bounds the pin file; a real one is a few hundred bytes.
const maxPinBytes = 64 << 10

// ErrNoPin is returned by ReadPin when $TF_HOME has no pin yet.
var ErrNoPin = errors.New("no policy is pinned (run tf init, or tf policy apply)")

// A Pin names the policy that gateways enforce: a commit of a repository.
// Only a committed tree takes effect, never a working copy.
type Pin struct {
	Version int `json:"version"`
	// Repository is an absolute local path or a remote URL (https, ssh, file).
	Repository string `json:"repository"`
	// Ref is the branch that plans compare against by default.
	Ref string `json:"ref"`
	// Commit is the full hex hash of the pinned commit.
	Commit string `json:"commit"`
	// RequireSigned refuses to apply commits not signed by a trusted key.
	RequireSigned bool `json:"require_signed"`
	// AppliedBy and AppliedAt say who moved the pin to Commit, and when
	// (tf init, apply and rollback write them; the audit log's
	// policy.applied record says the same).
	AppliedBy string    `json:"applied_by,omitempty"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Applied is the apply commit of the remote's applied ref that this
	// pin follows (pin: {remote, ref} in config.yaml); empty for a pin
	// moved locally.
	Applied string `json:"applied,omitempty"`
}

// Short is the first 12 hex digits of the commit.
func (p *Pin) Short() string { return shortHash(p.Commit) }

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Validate refuses a pin that cannot name one commit of one repository.
func (p *Pin) Validate() error {
	switch {
	case p.Version != PinVersion:
		return fmt.Errorf("unsupported pin version %d (this tf reads version %d)", p.Version, PinVersion)
	case strings.TrimSpace(p.Repository) == "":
		return errors.New("pin names no repository")
	case strings.ContainsFunc(p.Repository, unicode.IsControl):
		return errors.New("pin repository contains control characters")
	case !isRemote(p.Repository) && !filepath.IsAbs(p.Repository):
		return fmt.Errorf("pin repository %q is neither an absolute path nor a URL", p.Repository)
	case !validRef(p.Ref):
		return fmt.Errorf("pin ref %q is not a branch name", p.Ref)
	case !isHexHash(p.Commit):
		return fmt.Errorf("pin commit %q is not a full hex commit hash", p.Commit)
	case p.Applied != "" && !isHexHash(p.Applied):
		return fmt.Errorf("pin applied %q is not a full hex commit hash", p.Applied)
	}
	return nil
}

// isHexHash accepts a full SHA-1 or SHA-256 object name in lower case.
func isHexHash(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validRef accepts branch names as git does, conservatively: no spaces,
// control characters, "..", or the characters git reserves.
func validRef(r string) bool {
	if r == "" || len(r) > 255 || strings.HasPrefix(r, "-") || strings.HasPrefix(r, "/") ||
		strings.HasSuffix(r, "/") || strings.HasSuffix(r, ".lock") || strings.HasSuffix(r, ".") ||
		strings.Contains(r, "..") || strings.Contains(r, "//") || strings.Contains(r, "@{") {
		return false
	}
	for _, c := range r {
		if c <= ' ' || c == 0x7f || strings.ContainsRune("~^:?*[\\", c) {
			return false
		}
	}
	return true
}

// ParsePin decodes and validates a pin file. Unknown keys are errors: a
// pin that says more than this tf understands is not guessed at.
func ParsePin(data []byte) (*Pin, error) {
	if len(data) > maxPinBytes {
		return nil, fmt.Errorf("pin file larger than %d bytes", maxPinBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Pin
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decoding pin: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decoding pin: data after the pin object")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Marshal encodes the pin as written to disk.
func (p *Pin) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadPin reads $TF_HOME/pin from home; ErrNoPin when there is none.
func ReadPin(home string) (*Pin, error) {
	data, err := tfhome.ReadFile(filepath.Join(home, PinFile), maxPinBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoPin
	}
	if err != nil {
		return nil, fmt.Errorf("reading pin: %w", err)
	}
	p, err := ParsePin(data)
	if err != nil {
		return nil, fmt.Errorf("pin %s: %w", filepath.Join(home, PinFile), err)
	}
	return p, nil
}

// WritePin validates p and replaces $TF_HOME/pin atomically (write a
// temporary file, fsync, rename, fsync the directory), so that a watcher
// never reads half a pin.
func WritePin(home string, p *Pin) error {
	if p.Version == 0 {
		p.Version = PinVersion
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("refusing to write pin: %w", err)
	}
	data, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("encoding pin: %w", err)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", home, err)
	}
	return writeFileAtomic(filepath.Join(home, PinFile), data, 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := tfhome.WriteFile(path, data, mode, true); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
