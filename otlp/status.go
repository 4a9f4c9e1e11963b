package otlp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	tfhome "github.com/tameflare/tf/home"

	"github.com/tameflare/tf/audit"
)

// Status is what tf status shows of audit shipping. It never holds a
// header value, only the names.
type Status struct {
	Endpoint string   `json:"endpoint"`
	Headers  []string `json:"headers,omitempty"`
	Gateway  string   `json:"gateway"`
	PID      int      `json:"pid"`
	// State is "shipping" or "standby: ..." (another gateway ships).
	State string `json:"state,omitempty"`
	// Acked is the seq of the last record the collector acknowledged,
	// AckedTime that record's time.
	Acked     uint64    `json:"acked"`
	AckedTime time.Time `json:"acked_time,omitzero"`
	// PendingSince is the time of the oldest record read and not yet
	// acknowledged.
	PendingSince time.Time `json:"pending_since,omitzero"`
	// Error is the last problem, ErrorSince when problems began; both
	// empty while shipping works.
	Error      string    `json:"error,omitempty"`
	ErrorSince time.Time `json:"error_since,omitzero"`
	Updated    time.Time `json:"updated"`
	// Behind and Age are the lag: records not yet acknowledged and the
	// age of the oldest of them.
	Behind uint64        `json:"behind"`
	Age    time.Duration `json:"age_ns"`
}

func statusPath(home string) string { return filepath.Join(Dir(home), "status.json") }

// saveStatus writes the status file, at most once a second unless force.
func (s *Shipper) saveStatus(force bool) error {
	now := nowUTC()
	s.mu.Lock()
	if !force && now.Sub(s.lastSave) < time.Second {
		s.mu.Unlock()
		return nil
	}
	s.lastSave = now
	st := s.st
	s.mu.Unlock()
	st.Acked = s.acked.Load()
	if p := s.pendingSince.Load(); p != 0 {
		st.PendingSince = time.Unix(0, p).UTC()
	}
	st.Updated = now
	st.Behind, st.Age = s.Lag()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return tfhome.WriteFile(statusPath(s.opts.Home), append(b, '\n'), 0o600, false)
}

// ErrNotShipping is returned by ReadStatus when no gateway of this
// $TF_HOME ever shipped.
var ErrNotShipping = errors.New("audit shipping is not configured")

// ReadStatus reads the status the shipping gateway keeps in $TF_HOME and
// brings the lag up to date against the log and the cursor.
func ReadStatus(home string, now time.Time) (Status, error) {
	var st Status
	b, err := os.ReadFile(statusPath(home))
	if errors.Is(err, fs.ErrNotExist) {
		return st, ErrNotShipping
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", statusPath(home), err)
	}
	if c, err := ReadCursor(home); err == nil && c.Seq > st.Acked {
		st.Acked, st.AckedTime = c.Seq, c.Time
	}
	st.Behind, st.Age = 0, 0
	if end, err := audit.End(audit.Dir(home)); err == nil && end > st.Acked {
		st.Behind = end - st.Acked
	}
	if st.Behind > 0 && !st.PendingSince.IsZero() {
		st.Age = now.Sub(st.PendingSince)
	}
	return st, nil
}
