// Package killswitch keeps the kill switch: scopes of traffic that every
// gateway refuses at once, persisted in $TF_HOME/killswitch.
package killswitch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/tameflare/tf/audit"
	tfhome "github.com/tameflare/tf/home"
)

// FileName is the kill switch file in $TF_HOME.
const FileName = "killswitch"

// Version is the version of the file format written by this package.
const Version = 1

// maxFileBytes bounds the file so that a reader works in bounded memory.
const maxFileBytes = 1 << 20

// Path is where the kill switch lives in a state directory.
func Path(home string) string { return filepath.Join(home, FileName) }

// A Scope is what one switch stops: everything, one connector's traffic,
// one gateway, or one agent of a shared gateway (tf serve). Exactly one
// field is set.
type Scope struct {
	All       bool   `json:"all,omitempty"`
	Connector string `json:"connector,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	Agent     string `json:"agent,omitempty"`
}

// Validate refuses a scope that names nothing or more than one thing.
func (s Scope) Validate() error {
	n := 0
	if s.All {
		n++
	}
	for _, v := range []string{s.Connector, s.Gateway, s.Agent} {
		if v != "" {
			n++
			if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return fmt.Errorf("kill switch scope %q holds control characters", v)
			}
		}
	}
	if n != 1 {
		return errors.New("a kill switch scope needs exactly one of all, connector, gateway or agent")
	}
	return nil
}

// String describes the scope: "all", "connector github", "gateway ci".
func (s Scope) String() string {
	switch {
	case s.All:
		return "all"
	case s.Connector != "":
		return "connector " + s.Connector
	case s.Gateway != "":
		return "gateway " + s.Gateway
	case s.Agent != "":
		return "agent " + s.Agent
	}
	return "none"
}

// Matches reports whether traffic of connector sent by agent through
// gateway is in scope. Traffic of no agent (tf run) is in no agent's
// scope.
func (s Scope) Matches(gateway, agent, connector string) bool {
	return s.All || (s.Connector != "" && s.Connector == connector) || (s.Gateway != "" && s.Gateway == gateway) ||
		(s.Agent != "" && s.Agent == agent)
}

// A Switch is one active kill switch.
type Switch struct {
	Scope  Scope     `json:"scope"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// Describe is the reason given to a refused agent.
func (w Switch) Describe() string {
	s := "the kill switch (" + w.Scope.String()
	if w.By != "" {
		s += ", by " + w.By
	}
	s += ") is active"
	if w.Reason != "" {
		s += ": " + w.Reason
	}
	return s
}

// State is the content of the kill switch file.
type State struct {
	Version  int      `json:"version"`
	Switches []Switch `json:"switches"`
	// Broken is set, never stored, when the file could not be read: the
	// state then stops everything (fail closed) until the file is fixed.
	Broken string `json:"broken,omitempty"`
}

// Active reports whether any switch is on.
func (s State) Active() bool { return len(s.Switches) > 0 }

// Match returns the first switch that stops connector's traffic sent by
// agent through gateway.
func (s State) Match(gateway, agent, connector string) (Switch, bool) {
	for _, w := range s.Switches {
		if w.Scope.Matches(gateway, agent, connector) {
			return w, true
		}
	}
	return Switch{}, false
}

// Parse decodes a kill switch file strictly: unknown fields, an unknown
// version or an invalid scope are errors.
func Parse(data []byte) (State, error) {
	var s State
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return State{}, fmt.Errorf("decoding kill switch: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return State{}, errors.New("decoding kill switch: data after the object")
	}
	if s.Version != Version {
		return State{}, fmt.Errorf("kill switch version %d: want %d", s.Version, Version)
	}
	if s.Broken != "" {
		return State{}, errors.New("kill switch file carries a broken marker")
	}
	for i, w := range s.Switches {
		if err := w.Scope.Validate(); err != nil {
			return State{}, fmt.Errorf("kill switch %d: %w", i+1, err)
		}
	}
	return s, nil
}

// Read reads the kill switch in home; a missing file means no switch is
// on.
func Read(home string) (State, error) {
	data, err := tfhome.ReadFile(Path(home), maxFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Version: Version}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading kill switch: %w", err)
	}
	return Parse(data)
}

// brokenState is what a gateway enforces when the file cannot be read.
func brokenState(err error) State {
	reason := "the kill switch file cannot be read, so everything is refused until it is fixed: " + err.Error()
	return State{Version: Version, Broken: reason, Switches: []Switch{{Scope: Scope{All: true}, Reason: reason}}}
}

// Activate turns on a switch for w.Scope, replacing one of the same scope,
// and records kill_switch.activated in the audit log of home. The switch is
// written before it is recorded, so that stopping never waits for the log;
// the error then reports a failed record.
func Activate(ctx context.Context, home string, w Switch) (State, error) {
	if err := w.Scope.Validate(); err != nil {
		return State{}, err
	}
	st, err := update(home, func(s *State) bool {
		s.Switches = slices.DeleteFunc(s.Switches, func(o Switch) bool { return o.Scope == w.Scope })
		s.Switches = append(s.Switches, w)
		return true
	})
	if err != nil {
		return State{}, err
	}
	return st, record(ctx, home, audit.EventKillSwitchActivated, w)
}

// Deactivate turns off the switch of scope, or every switch when scope is
// All, and records kill_switch.deactivated for each, by who. The records
// are written first: a deactivation that cannot be recorded does not
// happen (fail closed). It returns the switches turned off.
func Deactivate(ctx context.Context, home string, scope Scope, by, reason string) ([]Switch, State, error) {
	if err := scope.Validate(); err != nil {
		return nil, State{}, err
	}
	unlock, err := lock(home)
	if err != nil {
		return nil, State{}, err
	}
	defer unlock()
	st, err := Read(home)
	if err != nil {
		return nil, State{}, err
	}
	var off []Switch
	st.Switches = slices.DeleteFunc(st.Switches, func(o Switch) bool {
		if scope.All || o.Scope == scope {
			off = append(off, o)
			return true
		}
		return false
	})
	if len(off) == 0 {
		return nil, st, nil
	}
	for _, o := range off {
		if err := record(ctx, home, audit.EventKillSwitchDeactivated, Switch{Scope: o.Scope, Reason: reason, By: by, At: time.Now()}); err != nil {
			return nil, State{}, fmt.Errorf("the kill switch stays on: %w", err)
		}
	}
	if err := write(home, st); err != nil {
		return nil, State{}, err
	}
	return off, st, nil
}

// update applies edit to the state under the file lock and writes it.
func update(home string, edit func(*State) bool) (State, error) {
	unlock, err := lock(home)
	if err != nil {
		return State{}, err
	}
	defer unlock()
	st, err := Read(home)
	if err != nil {
		// A broken file is replaced: activating must work even then.
		st = State{Version: Version}
	}
	if !edit(&st) {
		return st, nil
	}
	return st, write(home, st)
}

// LockWait bounds how long a writer waits for another writer of the
// file. A kill must not hang: a process that holds the lock (by accident
// or to stall the operator) gets an error after this, not a stuck tf kill.
var LockWait = 2 * time.Second

// ErrLockHeld is returned when the lock stays held for LockWait.
var ErrLockHeld = errors.New("the kill switch lock is held by another process")

// lock serializes writers of the file across processes, waiting at most
// LockWait.
func lock(home string) (func(), error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	path := Path(home) + ".lock"
	fl := flock.New(path, flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(context.Background(), LockWait)
	defer cancel()
	ok, err := fl.TryLockContext(ctx, 10*time.Millisecond)
	switch {
	case ok:
		return func() { _ = fl.Close() }, nil
	case err == nil || errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("%w (%s) for %v; find it with: fuser %s", ErrLockHeld, path, LockWait, path)
	default:
		return nil, fmt.Errorf("locking kill switch: %w", err)
	}
}

// write replaces the file atomically: a temporary file, fsync, rename,
// fsync of the directory.
func write(dir string, st State) error {
	st.Version = Version
	if st.Switches == nil {
		st.Switches = []Switch{}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding kill switch: %w", err)
	}
	if err := tfhome.WriteFile(Path(dir), append(data, '\n'), 0o600, true); err != nil {
		return fmt.Errorf("writing kill switch: %w", err)
	}
	return nil
}

// record appends a kill switch event to the audit log of home.
func record(ctx context.Context, home, event string, w Switch) error {
	log, err := audit.Open(audit.Dir(home), audit.Options{})
	if err != nil {
		return fmt.Errorf("recording %s: %w", event, err)
	}
	details := map[string]any{"scope": w.Scope.String(), "by": w.By}
	if w.Scope.Agent != "" {
		details["agent"] = w.Scope.Agent
	}
	if w.Reason != "" {
		details["reason"] = w.Reason
	}
	err = log.Append(ctx, &audit.Record{Kind: audit.KindEvent, Gateway: w.Scope.Gateway, Event: event, Details: details})
	if cerr := log.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording %s: %w", event, err)
	}
	return nil
}
