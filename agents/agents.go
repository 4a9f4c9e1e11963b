// Package agents keeps the proxy credentials of the agents a shared
// gateway (tf serve) governs: a name and the SHA-256 of a random token per
// agent, persisted in $TF_HOME/agents.json.
package agents

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	tfhome "github.com/tameflare/tf/home"

	"github.com/gofrs/flock"
)

// FileName is the agents file in $TF_HOME.
const FileName = "agents.json"

// Version is the version of the file format written by this package.
const Version = 1

// TokenPrefix starts every agent token, so that secret scanners (and
// people) recognise one in a log, a diff or a paste.
const TokenPrefix = "tfa_"

// tokenBytes is the entropy of a token: 256 bits, so that its unsalted
// SHA-256 is as good as a password hash would be (nothing to guess).
const tokenBytes = 32

// maxFileBytes bounds the file so that a reader works in bounded memory.
const maxFileBytes = 4 << 20

// Path is where the agents file lives in a state directory.
func Path(home string) string { return filepath.Join(home, FileName) }

// An Agent is one agent's credential as stored: never the token itself.
type Agent struct {
	Name    string    `json:"name"`
	Hash    string    `json:"sha256"` // hex SHA-256 of the token
	Created time.Time `json:"created"`
	// LastUsed is when a gateway last let the agent in, as far as the
	// used file knows (written every 30 s and when the gateway stops);
	// List fills it in, the agents file never holds it.
	LastUsed time.Time `json:"-"`
}

// UsedFileName keeps when each agent last authenticated, apart from the
// agents file so that a busy gateway never rewrites the credentials.
const UsedFileName = "agents-used.json"

// MarkUsed merges seen (agent → time) into the used file, keeping the
// later time of each agent.
func MarkUsed(home string, seen map[string]time.Time) error {
	path := filepath.Join(home, UsedFileName)
	all := readUsed(home)
	for n, t := range seen {
		if t.After(all[n]) {
			all[n] = t
		}
	}
	data, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return tfhome.WriteFile(path, data, 0o600, false)
}

// readUsed reads the used file; what cannot be read is no information.
func readUsed(home string) map[string]time.Time {
	all := map[string]time.Time{}
	data, err := os.ReadFile(filepath.Join(home, UsedFileName))
	if err != nil || len(data) > maxFileBytes {
		return all
	}
	_ = json.Unmarshal(data, &all)
	return all
}

// File is the content of the agents file.
type File struct {
	Version int     `json:"version"`
	Agents  []Agent `json:"agents"`
}

// ErrNotFound is returned for an agent name the file does not hold.
var ErrNotFound = errors.New("no such agent")

// ErrExists is returned when adding a name the file holds already.
var ErrExists = errors.New("agent exists")

// ValidName checks an agent name: 1 to 64 letters, digits, '-', '_' or
// '.', so that it fits a proxy URL's user name, a log line and a rule.
func ValidName(name string) error {
	if name == "" || len(name) > 64 || name == "." || name == ".." {
		return fmt.Errorf("agent name %q: want 1 to 64 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("agent name %q: use letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// Parse decodes an agents file strictly: unknown fields, another version,
// an invalid name or hash, or a name given twice are errors.
func Parse(data []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("decoding agents file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return File{}, errors.New("decoding agents file: data after the object")
	}
	if f.Version != Version {
		return File{}, fmt.Errorf("agents file version %d: want %d", f.Version, Version)
	}
	seen := make(map[string]bool, len(f.Agents))
	for i, a := range f.Agents {
		if err := ValidName(a.Name); err != nil {
			return File{}, fmt.Errorf("agent %d: %w", i+1, err)
		}
		if seen[a.Name] {
			return File{}, fmt.Errorf("agent %d: %s is listed twice", i+1, a.Name)
		}
		seen[a.Name] = true
		if b, err := hex.DecodeString(a.Hash); err != nil || len(b) != sha256.Size {
			return File{}, fmt.Errorf("agent %s: sha256 is not 64 hex digits", a.Name)
		}
	}
	return f, nil
}

// Read reads the agents file of home; a missing file holds no agent.
func Read(home string) (File, error) {
	data, err := tfhome.ReadFile(Path(home), maxFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return File{Version: Version}, nil
	}
	if err != nil {
		return File{}, fmt.Errorf("reading agents file: %w", err)
	}
	return Parse(data)
}

// NewToken returns a fresh token: the prefix and 256 random bits.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// hashToken is what the file keeps of a token.
func hashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// Add creates agent name and returns its token, which is stored nowhere:
// the caller shows it once.
func Add(home, name string, now time.Time) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	token, err := NewToken()
	if err != nil {
		return "", err
	}
	h := hashToken(token)
	err = update(home, func(f *File) error {
		if slices.ContainsFunc(f.Agents, func(a Agent) bool { return a.Name == name }) {
			return fmt.Errorf("%w: %s (tf agents rm %s first to replace its token)", ErrExists, name, name)
		}
		f.Agents = append(f.Agents, Agent{Name: name, Hash: hex.EncodeToString(h[:]), Created: now.UTC().Truncate(time.Second)})
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// Remove deletes agent name: its token stops working in running gateways
// within their reload interval.
func Remove(home, name string) error {
	return update(home, func(f *File) error {
		n := len(f.Agents)
		f.Agents = slices.DeleteFunc(f.Agents, func(a Agent) bool { return a.Name == name })
		if len(f.Agents) == n {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return nil
	})
}

// List returns the agents of home, sorted by name, with when they were
// last let in.
func List(home string) ([]Agent, error) {
	f, err := Read(home)
	if err != nil {
		return nil, err
	}
	used := readUsed(home)
	for i := range f.Agents {
		// An agent removed and added again starts afresh.
		if t := used[f.Agents[i].Name]; !t.Before(f.Agents[i].Created) {
			f.Agents[i].LastUsed = t
		}
	}
	slices.SortFunc(f.Agents, func(a, b Agent) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return f.Agents, nil
}

// update applies edit to the file under its lock and writes it back.
func update(home string, edit func(*File) error) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	fl := flock.New(Path(home)+".lock", flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := fl.TryLockContext(ctx, 10*time.Millisecond); !ok {
		return fmt.Errorf("locking the agents file: %v", errors.Join(err, errors.New("another tf holds the lock")))
	}
	defer fl.Close()
	f, err := Read(home)
	if err != nil {
		return err
	}
	if err := edit(&f); err != nil {
		return err
	}
	return write(home, f)
}

// write replaces the file atomically (temporary file, fsync, rename), mode
// 0600: the hashes are not secrets, but who may use the gateway is the
// operator's business.
func write(home string, f File) error {
	f.Version = Version
	if f.Agents == nil {
		f.Agents = []Agent{}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := tfhome.WriteFile(Path(home), append(data, '\n'), 0o600, true); err != nil {
		return fmt.Errorf("writing agents file: %w", err)
	}
	return nil
}

// A Table answers who a proxy credential belongs to. Its lookups are O(1)
// in the number of agents and compare hashes in constant time.
type Table struct {
	byName map[string][sha256.Size]byte
	byHash map[[sha256.Size]byte]string
}

// NewTable indexes the agents of f.
func NewTable(f File) *Table {
	t := &Table{byName: make(map[string][sha256.Size]byte, len(f.Agents)), byHash: make(map[[sha256.Size]byte]string, len(f.Agents))}
	for _, a := range f.Agents {
		var h [sha256.Size]byte
		if b, err := hex.DecodeString(a.Hash); err == nil && len(b) == sha256.Size {
			copy(h[:], b)
			t.byName[a.Name] = h
			t.byHash[h] = a.Name
		}
	}
	return t
}

// Len is the number of agents.
func (t *Table) Len() int { return len(t.byName) }

// noAgent is compared against when the name is unknown, so that a wrong
// name costs what a wrong token does.
var noAgent = sha256.Sum256([]byte("tf: no such agent"))

// Authenticate returns the agent that user and token identify. With a
// user (Basic proxy credentials) the token must be that agent's; without
// one (Bearer) the token alone names its agent.
func (t *Table) Authenticate(user, token string) (string, bool) {
	h := hashToken(token)
	if user == "" {
		// A lookup by the hash of a 256-bit token leaks nothing a guesser
		// can use: the hash of a guess says nothing about the token.
		name, ok := t.byHash[h]
		return name, ok
	}
	want, ok := t.byName[user]
	if !ok {
		want = noAgent
	}
	if subtle.ConstantTimeCompare(h[:], want[:]) != 1 || !ok {
		return "", false
	}
	return user, true
}
