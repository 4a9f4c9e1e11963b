package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/tameflare/tf/rules"
)

// PollInterval is how often Follow looks for new records.
const PollInterval = 200 * time.Millisecond

// A Filter selects records. Zero fields select everything. Decision,
// Connector and Action select decision records only.
type Filter struct {
	Since time.Time // records at or after
	Until time.Time // records before
	Kind  Kind
	// Decision matches the effect, and also monitor-mode decisions that
	// would have had it, so that "deny" shows what a staged rule refuses.
	Decision  rules.Effect
	Connector string
	// Action is a glob over the action type; '*' matches any run of
	// characters, including dots.
	Action  string
	Gateway string
	// Before, when set, keeps only records with a lower seq: the page of
	// older records after one already shown.
	Before uint64
	// Agent keeps the decisions of one agent of a shared gateway.
	Agent string
}

// Validate refuses a filter that could never be meant.
func (f Filter) Validate() error {
	if f.Kind != "" && !f.Kind.Valid() {
		return fmt.Errorf("unknown record kind %q", f.Kind)
	}
	if f.Decision != "" && !f.Decision.Valid() {
		return fmt.Errorf("unknown decision %q (want allow, deny or require_approval)", f.Decision)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return errors.New("until is not after since")
	}
	return nil
}

// Match reports whether r passes the filter.
func (f Filter) Match(r *Record) bool {
	if f.Kind != "" && r.Kind != f.Kind {
		return false
	}
	if f.Before != 0 && r.Seq >= f.Before {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	if f.Gateway != "" && r.Gateway != f.Gateway {
		return false
	}
	if f.Decision == "" && f.Connector == "" && f.Action == "" && f.Agent == "" {
		return true
	}
	if r.Kind != KindDecision || r.Action == nil || r.Decision == nil {
		return false
	}
	if f.Decision != "" && r.Decision.Effect != f.Decision && !(r.Decision.Monitor && r.Decision.Would == f.Decision) {
		return false
	}
	if f.Connector != "" && r.Action.Connector != f.Connector {
		return false
	}
	if f.Agent != "" && r.Action.Agent != f.Agent {
		return false
	}
	return f.Action == "" || rules.GlobMatch(f.Action, r.Action.Type)
}

// Scan calls fn for every record that passes f, in log order, reading one
// line at a time. Each record's own hash and schema are checked (use
// Verify for the chain); a bad line stops the scan with an error naming
// it. An incomplete last line is a write in progress and is not read.
func Scan(dir string, f Filter, fn func(*Record) error) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("scanning audit log: %w", err)
	}
	return walkSince(dir, f.Since, func(r *Record) error {
		if f.Match(r) {
			return fn(r)
		}
		return nil
	})
}

func walk(dir string, fn func(*Record) error) error { return walkSince(dir, time.Time{}, fn) }

// walkSince walks the segments that may hold records at or after since
// (all of them when since is zero), in order.
func walkSince(dir string, since time.Time, fn func(*Record) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	segs = segmentsSince(dir, segs, since)
	for i, s := range segs {
		if err := walkSegment(dir, s, i == len(segs)-1, fn); err != nil {
			return err
		}
	}
	return nil
}

func walkSegment(dir string, s segment, last bool, fn func(*Record) error) error {
	rc, err := openSegment(dir, s)
	if err != nil {
		return err
	}
	defer rc.Close()
	return walkReader(rc, s.name(), last, fn)
}

// walkReader calls fn for each record of one segment's content, in order.
// Parsing a line (hash check and JSON decoding) is most of the cost of
// reading the log, so lines are parsed in batches on every core while fn
// still sees one record at a time, in file order.
func walkReader(r io.Reader, name string, last bool, fn func(*Record) error) error {
	workers := runtime.GOMAXPROCS(0)
	if workers < 2 {
		return walkLines(newLineReader(r), name, last, fn)
	}
	type batch struct {
		lines [][]byte
		first int // line number of lines[0]
		recs  []*Record
		err   error // the first parse error, after recs
		tail  error // what ended reading after this batch, if anything
		done  chan struct{}
	}
	stop := make(chan struct{})
	defer close(stop)
	jobs := make(chan *batch, workers)
	ordered := make(chan *batch, 2*workers)
	go func() {
		defer close(jobs)
		defer close(ordered)
		lr := newLineReader(r)
		for lineNo := 1; ; {
			b := &batch{first: lineNo, done: make(chan struct{})}
		fill:
			for len(b.lines) < scanBatch {
				line, complete, tooLong, err := lr.next()
				switch {
				case errors.Is(err, io.EOF):
					b.tail = io.EOF
				case err != nil:
					b.tail = fmt.Errorf("reading %s: %w", name, err)
				case !complete && last:
					b.tail = io.EOF // a torn last line is verify's to report
				case !complete:
					b.tail = fmt.Errorf("%s:%d: incomplete line", name, lineNo)
				case tooLong:
					b.tail = fmt.Errorf("%s:%d: line exceeds the %d byte limit", name, lineNo, MaxRecordBytes)
				default:
					b.lines = append(b.lines, bytes.Clone(line))
					lineNo++
					continue
				}
				break fill
			}
			select {
			case ordered <- b:
			case <-stop:
				return
			}
			select {
			case jobs <- b:
			case <-stop:
				return
			}
			if b.tail != nil {
				return
			}
		}
	}()
	for range workers {
		go func() {
			for b := range jobs {
				for i, line := range b.lines {
					rec, err := parseLine(line)
					if err != nil {
						b.err = fmt.Errorf("%s:%d: %w", name, b.first+i, err)
						break
					}
					rec.Line = line
					b.recs = append(b.recs, rec)
				}
				close(b.done)
			}
		}()
	}
	for b := range ordered {
		<-b.done
		for _, rec := range b.recs {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if b.err != nil {
			return b.err
		}
		if errors.Is(b.tail, io.EOF) {
			return nil
		}
		if b.tail != nil {
			return b.tail
		}
	}
	return nil
}

// scanBatch is the number of lines parsed together.
const scanBatch = 256

// walkLines is walkReader on one core.
func walkLines(lr *lineReader, name string, last bool, fn func(*Record) error) error {
	for lineNo := 1; ; lineNo++ {
		line, complete, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		if !complete {
			if last {
				return nil
			}
			return fmt.Errorf("%s:%d: incomplete line", name, lineNo)
		}
		if tooLong {
			return fmt.Errorf("%s:%d: line exceeds the %d byte limit", name, lineNo, MaxRecordBytes)
		}
		rec, err := parseLine(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		rec.Line = bytes.Clone(line)
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// Last returns the last n records that pass f, oldest first, holding at
// most n records in memory.
func Last(dir string, f Filter, n int) ([]*Record, error) {
	if n <= 0 {
		return nil, nil
	}
	ring := make([]*Record, 0, min(n, 4096))
	next := 0
	err := Scan(dir, f, func(r *Record) error {
		if len(ring) < n {
			ring = append(ring, r)
			return nil
		}
		ring[next] = r
		next = (next + 1) % n
		return nil
	})
	if err != nil {
		return nil, err
	}
	return append(ring[next:], ring[:next]...), nil
}

// End returns the seq of the last acknowledged record, 0 for an empty log.
func End(dir string) (uint64, error) {
	h, err := readHead(dir)
	if errors.Is(err, errNoHead) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// A writer advances the head lazily: count the complete, chained
	// records written past it.
	for seg := h.Seg; ; seg++ {
		// The segment may have been compressed since the head was
		// written: openSegment falls back to its .gz.
		f, err := openSegment(dir, segment{num: seg, plain: true})
		if errors.Is(err, fs.ErrNotExist) {
			return h.Seq, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading audit segment: %w", err)
		}
		if seg == h.Seg && h.Off > 0 {
			if plain, ok := f.(*os.File); ok {
				_, err = plain.Seek(h.Off, io.SeekStart)
			} else {
				_, err = io.CopyN(io.Discard, f, h.Off)
			}
			if err != nil {
				f.Close()
				return 0, fmt.Errorf("reading audit segment: %w", err)
			}
		}
		lr := newLineReader(f)
		clean := false
		for {
			line, complete, tooLong, err := lr.next()
			if errors.Is(err, io.EOF) {
				clean = true
			}
			if err != nil || !complete || tooLong {
				break
			}
			rec, perr := parseLine(line)
			if perr != nil || rec.Seq != h.Seq+1 || rec.Prev != hex.EncodeToString(h.Hash[:]) {
				break
			}
			h.Seq, h.Hash = rec.Seq, lineHash(line)
		}
		f.Close()
		if !clean {
			return h.Seq, nil
		}
	}
}

// Follow calls fn for each record with a seq above after that passes f,
// waiting for new ones (polling every PollInterval) until ctx ends, which
// returns nil. Use End for after to see only new records.
func Follow(ctx context.Context, dir string, f Filter, after uint64, fn func(*Record) error) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("following audit log: %w", err)
	}
	deliver := func(r *Record) error {
		if r.Seq <= after {
			return nil
		}
		after = r.Seq
		if f.Match(r) {
			return fn(r)
		}
		return nil
	}
	num, err := startSegment(dir, after)
	if err != nil {
		return err
	}
	var file *os.File
	var off int64
	defer func() {
		if file != nil {
			file.Close()
		}
	}()
	for {
		if file == nil {
			file, err = os.Open(filepath.Join(dir, segmentName(num)))
			switch {
			case err == nil:
				off = 0
			case errors.Is(err, fs.ErrNotExist):
				file = nil
				gz := segment{num: num, gz: true}
				if _, serr := os.Stat(filepath.Join(dir, gz.name())); serr == nil {
					// A compressed segment is closed: read it whole.
					if err := walkSegment(dir, gz, false, deliver); err != nil {
						return err
					}
					num++
					continue
				}
			default:
				return fmt.Errorf("following audit log: %w", err)
			}
		}
		// Once the next segment exists this one is final, so reading it
		// to the end after this check sees everything.
		final := segmentExists(dir, num+1)
		if file != nil {
			n, err := readFrom(file, off, segmentName(num), deliver)
			off += n
			if err != nil {
				return err
			}
		}
		if final {
			if file != nil {
				file.Close()
				file = nil
			}
			num++
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(PollInterval):
		}
	}
}

// readFrom delivers the complete lines of f from off and returns how many
// bytes they took; an incomplete last line is left for the next poll.
func readFrom(f *os.File, off int64, name string, fn func(*Record) error) (int64, error) {
	lr := newLineReader(io.NewSectionReader(f, off, math.MaxInt64-off))
	var n int64
	for {
		line, complete, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) || (err == nil && !complete) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading %s: %w", name, err)
		}
		if tooLong {
			return n, fmt.Errorf("%s at byte %d: line exceeds the %d byte limit", name, off+n, MaxRecordBytes)
		}
		rec, err := parseLine(line)
		if err != nil {
			return n, fmt.Errorf("%s at byte %d: %w", name, off+n, err)
		}
		rec.Line = bytes.Clone(line)
		n += int64(len(line)) + 1
		if err := fn(rec); err != nil {
			return n, err
		}
	}
}

func segmentExists(dir string, n uint64) bool {
	for _, name := range []string{segmentName(n), segmentName(n) + ".gz"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// startSegment returns the segment holding the record after seq after:
// the last one whose first record is at most after+1.
func startSegment(dir string, after uint64) (uint64, error) {
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		return 1, err
	}
	for i := len(segs) - 1; i > 0; i-- {
		first, err := firstSeq(dir, segs[i])
		if err != nil {
			return 0, err
		}
		if first != 0 && first <= after+1 {
			return segs[i].num, nil
		}
	}
	return segs[0].num, nil
}

func firstSeq(dir string, s segment) (uint64, error) {
	rc, err := openSegment(dir, s)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	line, complete, _, err := newLineReader(rc).next()
	if errors.Is(err, io.EOF) || (err == nil && !complete) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", s.name(), err)
	}
	return looseSeq(line), nil
}

// A Row is a decision and, when the log holds it, its outcome.
type Row struct {
	Decision *Record
	Outcome  *Record
}

// rowWindow is how many decisions Rows holds while waiting for their
// outcomes when it is asked for all of them.
const rowWindow = 4096

// Rows calls fn for each decision record that passes f, joined with the
// outcome of the same request_id when that follows within a window of
// decisions. With last > 0 only the last that many are delivered. Memory
// stays bounded by the window or by last.
func Rows(dir string, f Filter, last int, fn func(Row) error) error {
	if f.Kind != "" && f.Kind != KindDecision {
		return fmt.Errorf("rows are decisions: kind %q cannot be selected", f.Kind)
	}
	f.Kind = KindDecision
	var queue []*Row
	byID := map[string]*Row{}
	pop := func() *Row {
		r := queue[0]
		queue[0] = nil
		queue = queue[1:]
		if id := r.Decision.RequestID; id != "" && byID[id] == r {
			delete(byID, id)
		}
		return r
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("scanning audit log: %w", err)
	}
	err := walk(dir, func(r *Record) error {
		switch {
		case r.Kind == KindOutcome:
			if row := byID[r.RequestID]; row != nil && row.Outcome == nil {
				row.Outcome = r
			}
		case f.Match(r):
			row := &Row{Decision: r}
			queue = append(queue, row)
			if r.RequestID != "" {
				byID[r.RequestID] = row
			}
			if last > 0 && len(queue) > last {
				pop()
			}
		}
		if last > 0 {
			return nil
		}
		for len(queue) > 0 && (queue[0].Outcome != nil || len(queue) > rowWindow) {
			if err := fn(*pop()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for len(queue) > 0 {
		if err := fn(*pop()); err != nil {
			return err
		}
	}
	return nil
}

// Label is the decision as people read it: the effect, or "would deny"
// and the like when monitor mode let the action through.
func (r *Record) Label() string {
	if r.Decision == nil {
		return ""
	}
	d := r.Decision
	if d.Monitor && d.Would != "" && d.Would != d.Effect {
		return "would " + string(d.Would)
	}
	if d.KillSwitch {
		return string(d.Effect) + " (kill switch)"
	}
	return string(d.Effect)
}

// Target names what an action is about: owner/repo, a package, an MCP
// server and tool, or a host.
func (r *Record) Target() string {
	if r.Action == nil {
		return ""
	}
	res := r.Action.Resource
	switch {
	case res["owner"] != "" && res["repo"] != "":
		return res["owner"] + "/" + res["repo"]
	case res["package"] != "":
		return res["package"]
	case res["server"] != "" && res["tool"] != "":
		return res["server"] + "/" + res["tool"]
	case res["server"] != "":
		return res["server"]
	case res["host"] != "":
		return res["host"]
	}
	return r.Action.Request.Host
}

// Status is the outcome's HTTP status, "error" when it failed without one,
// or "" when no outcome is known.
func (w Row) Status() string {
	switch {
	case w.Outcome == nil:
		return ""
	case w.Outcome.Status != 0:
		return strconv.Itoa(w.Outcome.Status)
	case w.Outcome.Error != "":
		return "error"
	}
	return ""
}

// Tokens is the row's token usage for a table: "in 10 out 5", with
// "cache r3 w2" when caching was reported, "?" when the usage of a model
// call could not be read, "" for a request that is not a model call.
func (w Row) Tokens() string {
	if w.Outcome == nil || w.Outcome.Usage == nil {
		return ""
	}
	u := w.Outcome.Usage
	if u.Unknown != "" {
		return "?"
	}
	s := "in " + strconv.FormatInt(u.Input, 10) + " out " + strconv.FormatInt(u.Output, 10)
	if u.CacheRead != 0 || u.CacheWrite != 0 {
		s += " cache r" + strconv.FormatInt(u.CacheRead, 10) + " w" + strconv.FormatInt(u.CacheWrite, 10)
	}
	return s
}
