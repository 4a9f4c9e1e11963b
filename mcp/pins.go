package mcp

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"github.com/tameflare/tf/home"
)

// Tool pinning against rug pulls: a server that shows a harmless tool
// first and changes what it says (its description, which the model reads
// as instructions, or its input schema) once the tool is trusted. The
// first listing of each tool of a listed server pins a digest of it; a
// later listing that differs marks the tool changed until a person
// accepts the change (tf mcp tools accept).

// ToolDigest is a tool as a tools/list answer shows it: its name and the
// digest of its name, description and input schema.
type ToolDigest struct {
	Name   string
	Digest string
}

// digestCache remembers the digests of tools by the bytes of their list
// item: servers list the same tools again and again (every session, every
// list_changed), and the same bytes have the same digest.
var digestCache struct {
	sync.Mutex
	m map[string]string
}

// maxDigestCache bounds digestCache; it starts over when full.
const maxDigestCache = 4096

// itemDigest is toolDigest of the tool whose list item is item.
func itemDigest(item []byte, name string, description, inputSchema []byte) string {
	digestCache.Lock()
	d, ok := digestCache.m[string(item)]
	digestCache.Unlock()
	if ok {
		return d
	}
	d = toolDigest(name, description, inputSchema)
	digestCache.Lock()
	if digestCache.m == nil || len(digestCache.m) >= maxDigestCache {
		digestCache.m = map[string]string{}
	}
	digestCache.m[string(item)] = d
	digestCache.Unlock()
	return d
}

// toolDigest digests a tool: SHA-256 over its name, its description and
// its input schema as the server sent them (raw JSON), NUL-separated.
func toolDigest(name string, description, inputSchema []byte) string {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(description)
	h.Write([]byte{0})
	h.Write(inputSchema)
	var sum [sha256.Size]byte
	return "sha256:" + hex.EncodeToString(h.Sum(sum[:0]))
}

// Pin is one tool's pin.
type Pin struct {
	// Digest is the pinned digest, PinnedAt when it was pinned or
	// accepted.
	Digest   string    `json:"digest"`
	PinnedAt time.Time `json:"pinned_at"`
	// Changed is the digest of a later listing that differs and is not
	// accepted, ChangedAt when it was first seen.
	Changed   string    `json:"changed,omitempty"`
	ChangedAt time.Time `json:"changed_at,omitzero"`
}

// PinFile holds the pins of one server.
type PinFile struct {
	Server string         `json:"server"`
	Tools  map[string]Pin `json:"tools"`
}

// PinStore keeps the pins of every server, a file each, under dir
// ($TF_HOME/mcp/pins). Files are replaced atomically; what another
// process changes (an accepted change) is seen at the next look, which
// costs a stat and reads the file only when it changed.
type PinStore struct {
	dir string
	now func() time.Time
	mu  sync.Mutex
	// cache holds each server's file as last read or written.
	cache map[string]*pinCache
}

type pinCache struct {
	path  string // the file, its name checked once
	file  PinFile
	mtime time.Time
	size  int64
}

// OpenPins returns the store in dir; now is the clock (nil: time.Now).
func OpenPins(dir string, now func() time.Time) *PinStore {
	if now == nil {
		now = time.Now
	}
	return &PinStore{dir: dir, now: now, cache: map[string]*pinCache{}}
}

// PinDir is where the pins of the state directory home live.
func PinDir(home string) string { return filepath.Join(home, "mcp", "pins") }

func (s *PinStore) path(server string) (string, error) {
	if err := ValidServerName(server); err != nil {
		return "", fmt.Errorf("pins of server %q: %w", server, err)
	}
	return filepath.Join(s.dir, server+".json"), nil
}

// load returns server's file, fresh from disk when it changed there; s.mu
// is held.
func (s *PinStore) load(server string) (*pinCache, error) {
	c := s.cache[server]
	var p string
	if c != nil {
		p = c.path
	} else {
		var err error
		if p, err = s.path(server); err != nil {
			return nil, err
		}
	}
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c = &pinCache{path: p, file: PinFile{Server: server, Tools: map[string]Pin{}}}
	case err != nil:
		return nil, err
	case c != nil && st.ModTime().Equal(c.mtime) && st.Size() == c.size:
	default:
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		c = &pinCache{path: p, mtime: st.ModTime(), size: st.Size()}
		if err := json.Unmarshal(b, &c.file); err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		if c.file.Tools == nil {
			c.file.Tools = map[string]Pin{}
		}
	}
	s.cache[server] = c
	return c, nil
}

// save writes c for server; s.mu is held.
func (s *PinStore) save(server string, c *pinCache) error {
	p, err := s.path(server)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c.file, "", "  ")
	if err != nil {
		return err
	}
	if err := home.WriteFile(p, append(b, '\n'), 0o600, false); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if st, err := os.Stat(p); err == nil {
		c.mtime, c.size = st.ModTime(), st.Size()
	}
	return nil
}

// Observe records what a tools/list answer of server showed: a tool seen
// for the first time is pinned, one whose digest differs from its pin is
// marked changed. It returns the tools changed and not accepted, and
// those of them that this listing found changed (or changed again).
//
// Other processes (gateways, tf mcp tools accept) write the same file:
// a listing that changes it reads it again under the file's lock and
// writes it before letting go, so that no pin or mark is lost to a write
// made from an older copy.
func (s *PinStore) Observe(server string, tools []ToolDigest) (changed map[string]bool, newly []ToolDigest, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	c, err := s.load(server)
	if err != nil {
		return nil, nil, err
	}
	changed, newly, dirty := observe(&c.file, tools, now)
	if !dirty {
		return changed, newly, nil
	}
	err = s.update(server, func(c *pinCache) bool {
		var dirty bool
		changed, newly, dirty = observe(&c.file, tools, now)
		return dirty
	})
	return changed, newly, err
}

// observe applies a listing of tools to f; dirty says f changed.
func observe(f *PinFile, tools []ToolDigest, now time.Time) (changed map[string]bool, newly []ToolDigest, dirty bool) {
	for _, t := range tools {
		pin, ok := f.Tools[t.Name]
		switch {
		case !ok:
			f.Tools[t.Name] = Pin{Digest: t.Digest, PinnedAt: now.UTC()}
			dirty = true
			continue
		case pin.Digest == t.Digest && pin.Changed == "":
			continue
		case pin.Digest != t.Digest && pin.Changed != t.Digest:
			pin.Changed, pin.ChangedAt = t.Digest, now.UTC()
			f.Tools[t.Name] = pin
			dirty = true
			newly = append(newly, t)
		}
		if changed == nil {
			changed = map[string]bool{}
		}
		changed[t.Name] = true
	}
	return changed, newly, dirty
}

// pinLockWait bounds the wait for another process's write of a pin file.
const pinLockWait = 5 * time.Second

// update reads server's file afresh under its lock (a file beside it,
// which every process writing pins takes), lets change modify it, and
// writes it when change reports a change; s.mu is held.
func (s *PinStore) update(server string, change func(c *pinCache) bool) error {
	p, err := s.path(server)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	lock := flock.New(p+".lock", flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(context.Background(), pinLockWait)
	defer cancel()
	ok, err := lock.TryLockContext(ctx, 5*time.Millisecond)
	if err != nil || !ok {
		return fmt.Errorf("locking %s: %v", p, cmp.Or(err, errors.New("busy")))
	}
	defer lock.Unlock()
	delete(s.cache, server)
	c, err := s.load(server)
	if err != nil {
		return err
	}
	if !change(c) {
		return nil
	}
	if err := s.save(server, c); err != nil {
		// What is cached is not what is on disk.
		delete(s.cache, server)
		return err
	}
	return nil
}

// Changed reports whether tool of server has a change not accepted.
func (s *PinStore) Changed(server, tool string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.load(server)
	if err != nil {
		return true // a store tf cannot read cannot vouch for the tool
	}
	return c.file.Tools[tool].Changed != ""
}

// List returns the pins of server, or of every server when server is
// empty, in name order.
func (s *PinStore) List(server string) ([]PinFile, error) {
	var servers []string
	if server != "" {
		servers = []string{server}
	} else {
		ents, err := os.ReadDir(s.dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && ValidServerName(name) == nil {
				servers = append(servers, name)
			}
		}
	}
	slices.Sort(servers)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PinFile
	for _, name := range servers {
		delete(s.cache, name)
		c, err := s.load(name)
		if err != nil {
			return nil, err
		}
		out = append(out, c.file)
	}
	return out, nil
}

// Accept makes the changed digest of each of tools (every changed tool of
// server when tools is empty) its pin, and returns the tools it accepted.
func (s *PinStore) Accept(server string, tools []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var accepted []string
	var missing error
	err := s.update(server, func(c *pinCache) bool {
		names := tools
		if len(names) == 0 {
			for name, pin := range c.file.Tools {
				if pin.Changed != "" {
					names = append(names, name)
				}
			}
			slices.Sort(names)
		}
		for _, name := range names {
			if _, ok := c.file.Tools[name]; !ok {
				missing = fmt.Errorf("server %s has no pinned tool %q", server, name)
				return false
			}
		}
		for _, name := range names {
			pin := c.file.Tools[name]
			if pin.Changed == "" {
				continue
			}
			c.file.Tools[name] = Pin{Digest: pin.Changed, PinnedAt: now.UTC()}
			accepted = append(accepted, name)
		}
		return len(accepted) > 0
	})
	if err = cmp.Or(missing, err); err != nil {
		delete(s.cache, server)
		return nil, err
	}
	return accepted, nil
}
