package audit

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSegmentBytes is the size at which a segment is closed and the
// next one started.
const DefaultSegmentBytes = 64 << 20

// maxBatch bounds how many records one write covers, so that a flood of
// appenders cannot make one batch arbitrarily large.
const maxBatch = 4096

// DefaultSyncWindow bounds, with SyncGroup, how long a written record
// waits before the fdatasync that makes it durable starts.
const DefaultSyncWindow = 5 * time.Millisecond

const (
	// holdCheck is how often a writer holding the lock looks whether
	// another writer wants it, and whether it has been idle.
	holdCheck = 10 * time.Millisecond
	// idleRelease: a writer idle this long releases the lock.
	idleRelease = 100 * time.Millisecond
	// yieldPause: after giving the lock up to another writer, this one
	// waits this long before taking it again, so the other gets its turn.
	yieldPause = 5 * time.Millisecond
	// contendPoll is how often a writer waiting for the lock tries again.
	contendPoll = 500 * time.Microsecond
	// headSyncEvery: the head file is fdatasync'd at most this often
	// (and at Close); its lag is allowed by the format.
	headSyncEvery = time.Second
	// wantOff is the byte of the lock file a waiting writer sets to ask
	// the holder to let go. Not byte 0: Windows locks that one, and
	// its locks are mandatory.
	wantOff = 8
)

// SyncMode is when a record becomes durable relative to Append returning.
type SyncMode string

const (
	// SyncGroup (the default): Append returns once the record is written
	// (write(2) done, in the page cache), so a killed process loses
	// nothing acknowledged; an fdatasync covering it starts within the
	// sync window, so a power loss loses at most the records of the last
	// window or so.
	SyncGroup SyncMode = "group"
	// SyncAlways: Append returns once the record is fdatasync'd; one
	// fdatasync covers every record of a batch.
	SyncAlways SyncMode = "always"
)

// ParseSyncMode parses the audit sync setting; "" is SyncGroup.
func ParseSyncMode(s string) (SyncMode, error) {
	switch SyncMode(s) {
	case "", SyncGroup:
		return SyncGroup, nil
	case SyncAlways:
		return SyncAlways, nil
	}
	return "", fmt.Errorf("audit sync %q: want %q or %q", s, SyncGroup, SyncAlways)
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log is closed")

// Options configure a Log.
type Options struct {
	// SegmentBytes is the size after which a new segment is started;
	// zero means DefaultSegmentBytes. A single record larger than it still
	// goes into one segment.
	SegmentBytes int64
	// Compress gzips closed segments in the background.
	Compress bool
	// Gateway is used for records that name no gateway and for the log's
	// own events.
	Gateway string
	// Now is the clock for records without a time; nil means time.Now.
	Now func() time.Time
	// Sync is the durability mode; "" means SyncGroup.
	Sync SyncMode
	// SyncWindow is SyncGroup's bound; zero means DefaultSyncWindow.
	SyncWindow time.Duration
	// Durable, if set, is called after each fdatasync of a segment with
	// how long the oldest record it made durable had been written (for
	// metrics). It must not block.
	Durable func(lag time.Duration)
}

// Hooks for tests that simulate a failing disk or a power loss.
var (
	syncFile = datasync
	writeAt  = func(f *os.File, p []byte, off int64) (int, error) { return f.WriteAt(p, off) }
)

// A Log appends records to the audit log in one directory. Several Logs,
// in one process or many, may share a directory: a writer holds an
// exclusive flock while it writes, so all writers extend one chain.
//
// Within a Log there is no writer goroutine: an appender that finds no
// batch being written writes the queue itself (it leads), and appenders
// that arrive meanwhile queue behind it and wait; when its batch is done
// it answers them and hands the role to the first of those still waiting,
// who writes everything queued by then in one batch. An idle log thus
// costs a request no goroutine hand-off, and a busy one still writes once
// per batch.
type Log struct {
	dir    string
	opts   Options
	lockF  *os.File
	headF  *os.File
	exited chan struct{} // closed once Close's batch is written and the lock released
	bg     sync.WaitGroup
	bgMu   sync.Mutex
	bgErrs []error
	compMu sync.Mutex
	// segments being compressed by this Log
	pending map[uint64]bool

	// The syncer makes written records durable (SyncGroup) and writes
	// the head; dirty wakes it.
	dirty      chan struct{}
	syncerDone chan struct{}
	syncErr    atomic.Pointer[error] // sticky, from the syncer
	syncs      atomic.Uint64         // segment fdatasyncs (benchmarks)

	// Shared by the writer and the syncer.
	posMu sync.Mutex
	pos   head     // where the writer has written to
	posF  *os.File // the segment being written
	// written is when the oldest write not yet durable was made; zero
	// when all is durable. Kept only for Options.Durable.
	written time.Time
	// syncMu is held for every segment fdatasync, head write, rotation
	// and lock release.
	syncMu     sync.Mutex
	durable    head // position known to be fdatasync'd
	headAt     head // position the head file names
	headSlot   int  // slot headAt is in
	owned      bool // the lock is held: the head may be written
	headSynced time.Time

	// The queue, and who writes it. qmu guards these.
	qmu     sync.Mutex
	queue   []*request
	leading bool // an appender (or a timer) is writing: it owns the writer state
	closed  bool
	// asyncT writes records nobody waits for (AppendAsync) within the
	// sync window when no Append comes to take them; armed while the
	// queue holds only such records and nobody leads.
	asyncT     *time.Timer
	asyncArmed bool
	// holdT checks, every holdCheck while the lock is held, whether to
	// let it go; holdDue asks the leader to do it when holdT finds one.
	holdT   *time.Timer
	holdDue bool

	// The writer state: owned by whoever leads (and by Open).
	st       head     // what this writer last wrote or adopted
	seg      *os.File // segment st.Seg, open for writing
	segNum   uint64
	err      error // sticky: after a failed batch nothing more is written
	locked   bool  // the flock is held
	stale    bool  // the view must be checked against the head file
	busy     bool  // a batch since the last hold check
	idle     time.Duration
	notAfter time.Time // do not take the lock before (after yielding it)
	spare    []*request
	// batches counts committed batches; read only after Close (benchmarks).
	batches uint64
	buf     []byte
	sha     hash.Hash
}

type request struct {
	rec  *Record
	body []byte
	buf  *[]byte    // body's buffer, back to bodyBufs once the batch is written
	done chan error // nil for records nobody waits for
	// answered is set by the leader that wrote it (read by that leader).
	answered bool
	// closing marks Close's place at the end of the queue (rec is nil).
	closing bool
}

// errLead, sent to a waiting appender, makes it the writer.
var errLead = errors.New("audit: lead")

// Open opens (creating if needed) the audit log in dir and starts its
// writer. It continues the chain from the last acknowledged record and
// repairs a torn tail left by a writer that died, recording an
// audit.tail_repaired event when it does.
func Open(dir string, opts Options) (*Log, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	mode, err := ParseSyncMode(string(opts.Sync))
	if err != nil {
		return nil, err
	}
	opts.Sync = mode
	if opts.SyncWindow <= 0 {
		opts.SyncWindow = DefaultSyncWindow
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating audit directory: %w", err)
	}
	l := &Log{
		dir:        dir,
		opts:       opts,
		exited:     make(chan struct{}),
		pending:    map[uint64]bool{},
		sha:        sha256.New(),
		dirty:      make(chan struct{}, 1),
		syncerDone: make(chan struct{}),
		// Open leads until it returns: the timers wait for it.
		leading: true,
	}
	l.asyncT = time.AfterFunc(time.Hour, l.tick)
	l.asyncT.Stop()
	l.holdT = time.AfterFunc(time.Hour, l.holdTick)
	l.holdT.Stop()
	if l.lockF, err = os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		return nil, fmt.Errorf("opening audit lock: %w", err)
	}
	if err := l.init(); err != nil {
		l.holdT.Stop()
		if l.locked {
			unlockFile(l.lockF)
		}
		l.closeFiles()
		return nil, err
	}
	if opts.Compress {
		if err := l.compressClosed(); err != nil {
			l.holdT.Stop()
			l.release(false)
			l.closeFiles()
			return nil, err
		}
	}
	go l.syncer()
	l.qmu.Lock()
	l.leading = false
	l.qmu.Unlock()
	return l, nil
}

// init creates the head file of a new log, takes the lock and adopts the
// current tail, writing the repair event if there is one.
func (l *Log) init() error {
	if err := l.lock(); err != nil {
		return err
	}
	path := filepath.Join(l.dir, headName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		segs, err := listSegments(l.dir)
		if err != nil {
			return err
		}
		if len(segs) > 0 {
			// Without the head, truncation can no longer be detected:
			// refuse rather than start a chain that hides it.
			return fmt.Errorf("opening audit log in %s: segments exist but the head file is missing (run tf audit verify)", l.dir)
		}
		h := head{Seg: 1}
		if err := writeFileSync(path, h.encode()); err != nil {
			return fmt.Errorf("creating audit head: %w", err)
		}
		if err := syncDir(l.dir); err != nil {
			return fmt.Errorf("creating audit head: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("opening audit head: %w", err)
	}
	var err error
	if l.headF, err = os.OpenFile(path, os.O_RDWR, 0o600); err != nil {
		return fmt.Errorf("opening audit head: %w", err)
	}
	l.stale = true
	return l.commit(nil)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Append writes r to the log and returns once it is written: in the
// kernel with SyncGroup, fdatasync'd with SyncAlways (see Options.Sync).
// It fills in r's schema_version, seq, prev and hash, and its time and
// gateway when they are empty. Concurrent Appends share one write (and
// fsync). A record that cannot be written is refused with an error; after
// an I/O error the log refuses every further record (fail closed). ctx
// is checked before the record is queued; once queued, it is written
// whatever ctx does, and Append waits for it.
func (l *Log) Append(ctx context.Context, r *Record) error {
	req, err := l.prepare(r, true)
	if err != nil {
		return err
	}
	return l.submit(ctx, req)
}

// AppendAll writes recs, in order, and returns once all are written as
// Append would: one wait for several records (the actions of one
// request, the lines of a burst). Nothing is queued unless every record
// is valid. An error means some may not have been written.
func (l *Log) AppendAll(ctx context.Context, recs []*Record) error {
	if len(recs) == 0 {
		return nil
	}
	reqs := make([]*request, len(recs))
	for i, r := range recs {
		// Requests are written in order and a failed batch fails every
		// later one, so the last request's answer covers all.
		req, err := l.prepare(r, i == len(recs)-1)
		if err != nil {
			return err
		}
		reqs[i] = req
	}
	return l.submit(ctx, reqs...)
}

// AppendAsync queues r and returns without waiting for it to be written:
// for records nothing waits on, such as the outcome of an exchange whose
// decision is on record already. It never starts a batch of its own: it
// rides with the next Append's batch, or is written within the sync
// window; Close waits for it. It fails at once on a record Append would
// refuse and on a closed log; a write failure after that is sticky, and
// reported by every later Append and by Close. When maxBatch records
// wait and nobody writes, the caller writes them (back pressure).
func (l *Log) AppendAsync(r *Record) error {
	req, err := l.prepare(r, false)
	if err != nil {
		return err
	}
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return ErrClosed
	}
	l.queue = append(l.queue, req)
	lead := false
	if !l.leading {
		if len(l.queue) >= maxBatch {
			l.leading, lead = true, true
		} else if !l.asyncArmed {
			l.asyncArmed = true
			l.asyncT.Reset(l.opts.SyncWindow)
		}
	}
	l.qmu.Unlock()
	if lead {
		l.lead(nil)
	}
	return nil
}

// prepare fills in r's time and gateway, checks it and encodes its body.
func (l *Log) prepare(r *Record, wait bool) (*request, error) {
	if r == nil {
		return nil, errors.New("refusing audit record: nil record")
	}
	if r.Time.IsZero() {
		r.Time = l.opts.Now()
	}
	r.Time = r.Time.UTC()
	if r.Gateway == "" {
		r.Gateway = l.opts.Gateway
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("refusing audit record: %w", err)
	}
	buf := bodyBufs.Get().(*[]byte)
	body, err := r.appendBody((*buf)[:0])
	if err != nil {
		bodyBufs.Put(buf)
		return nil, fmt.Errorf("refusing audit record: %w", err)
	}
	// The writer adds schema_version, seq, prev and hash: under 256 bytes.
	if len(body)+256 > MaxRecordBytes {
		bodyBufs.Put(buf)
		return nil, fmt.Errorf("refusing audit record: %d bytes exceeds the %d byte limit", len(body), MaxRecordBytes)
	}
	*buf = body
	req := &request{rec: r, body: body, buf: buf}
	if wait {
		req.done = make(chan error, 1)
	}
	return req, nil
}

// submit queues reqs, together and in order, and waits for the last to
// be written. If nobody is writing, the caller writes (see Log).
func (l *Log) submit(ctx context.Context, reqs ...*request) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("appending audit record: %w", err)
	}
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return ErrClosed
	}
	l.queue = append(l.queue, reqs...)
	lead := !l.leading
	l.leading = true
	l.qmu.Unlock()
	return l.wait(reqs[len(reqs)-1], lead)
}

// wait waits for mine to be answered, writing when it leads or is
// handed the role.
func (l *Log) wait(mine *request, lead bool) error {
	for {
		if lead {
			l.lead(mine)
		}
		err := <-mine.done
		if err != errLead {
			return err
		}
		lead = true
	}
}

// lead writes the queue, a batch of at most maxBatch at a time, until
// mine is written (one batch when mine is nil), and then hands the role
// to the first appender still waiting in the queue, or gives it up. The
// caller has set l.leading.
func (l *Log) lead(mine *request) {
	for {
		l.qmu.Lock()
		if l.asyncArmed {
			l.asyncArmed = false
			l.asyncT.Stop()
		}
		batch := l.queue
		if len(batch) > maxBatch {
			batch = append(l.spare[:0], l.queue[:maxBatch]...)
			l.queue = append(l.queue[:0], l.queue[maxBatch:]...)
		} else {
			l.queue = l.spare[:0]
		}
		holdDue := l.holdDue
		l.holdDue = false
		l.qmu.Unlock()

		var closing *request
		if n := len(batch); n > 0 && batch[n-1].closing {
			closing, batch = batch[n-1], batch[:n-1]
		}
		if len(batch) > 0 {
			l.commitBatch(batch)
		}
		if holdDue {
			l.checkHold()
		}
		clear(batch)
		l.spare = batch[:0]
		if closing != nil {
			// Close is last in the queue: nothing follows it, and the
			// role is never given up again.
			l.holdT.Stop()
			l.release(false)
			close(l.exited)
			closing.done <- nil
			return
		}
		if mine != nil && !mine.answered {
			continue
		}
		l.stepDown()
		return
	}
}

// stepDown hands the writer's role to the first appender waiting in the
// queue or, if none waits, gives it up (records nobody waits for then
// wait for the sync window).
func (l *Log) stepDown() {
	l.qmu.Lock()
	var next *request
	for _, r := range l.queue {
		if r.done != nil {
			next = r
			break
		}
	}
	if next == nil {
		l.leading = false
		if len(l.queue) > 0 && !l.asyncArmed {
			l.asyncArmed = true
			l.asyncT.Reset(l.opts.SyncWindow)
		}
	}
	l.qmu.Unlock()
	if next != nil {
		next.done <- errLead
	}
}

// tick writes what waits when the sync window of a record nobody waits
// for has passed and no Append came to take it.
func (l *Log) tick() {
	l.qmu.Lock()
	if l.leading || l.closed {
		// The timer has fired: whoever leads (an appender, or the hold
		// check, which writes nothing) arms it again as it steps down if
		// records still wait. Left set, the flag would stop that, and
		// the records would wait for the next Append.
		l.asyncArmed = false
		l.qmu.Unlock()
		return
	}
	l.leading, l.asyncArmed = true, false
	l.qmu.Unlock()
	l.lead(nil)
}

// holdTick runs every holdCheck while the lock is held: it checks whether
// to let it go, or asks the leader to.
func (l *Log) holdTick() {
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return
	}
	if l.leading {
		// Busy: the leader checks after its batch. Look again later in
		// case that leader was Open, or its batch the last for a while.
		l.holdDue = true
		l.holdT.Reset(holdCheck)
		l.qmu.Unlock()
		return
	}
	l.leading = true
	l.qmu.Unlock()
	l.checkHold()
	l.stepDown()
}

// Event appends an event record.
func (l *Log) Event(ctx context.Context, gateway, name string, details map[string]any) error {
	return l.Append(ctx, &Record{Kind: KindEvent, Gateway: gateway, Event: name, Details: details})
}

// Close waits for queued records, makes them durable, writes and syncs
// the head, releases the lock, stops background compression, and closes
// the files.
func (l *Log) Close() error {
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return nil
	}
	l.closed = true
	// Close's place at the end of the queue: whoever writes it has
	// written everything before it, and releases the lock.
	mine := &request{closing: true, done: make(chan error, 1)}
	l.queue = append(l.queue, mine)
	lead := !l.leading
	l.leading = true
	l.qmu.Unlock()
	l.wait(mine, lead)
	<-l.exited
	l.asyncT.Stop()
	close(l.dirty)
	<-l.syncerDone
	var headErr error
	if err := syncFile(l.headF); err != nil {
		headErr = fmt.Errorf("syncing audit head: %w", err)
	}
	l.bg.Wait()
	errs := l.closeFiles()
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	// l.err is the writer's, which has exited: a failed batch, which
	// records queued by AppendAsync learn of only here.
	return errors.Join(append(l.bgErrs, l.err, l.loadSyncErr(), headErr, errs)...)
}

func (l *Log) loadSyncErr() error {
	if p := l.syncErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{l.seg, l.headF, l.lockF} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// commitBatch writes a batch and answers its waiters.
func (l *Log) commitBatch(batch []*request) {
	err := l.err
	if err == nil {
		err = l.loadSyncErr()
	}
	if err == nil {
		if err = l.commit(batch); err != nil {
			l.err = fmt.Errorf("audit log refuses records after a write failure: %w", err)
			err = l.err
		}
		l.batches++
		l.busy = true
	}
	for _, r := range batch {
		// The batch is in pending (written or not): the bodies are done
		// with. r.done is answered last, as the appender may reuse r.
		recycleBody(r)
		if r.done != nil {
			r.answered = true
			r.done <- err
		}
	}
}

// bodyBufs recycles the buffers records are encoded into, two per
// request a gateway forwards.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func recycleBody(r *request) {
	if r.buf == nil {
		return
	}
	if cap(*r.buf) <= 64<<10 { // keep the pool's buffers small
		*r.buf = (*r.buf)[:0]
		bodyBufs.Put(r.buf)
	}
	r.buf, r.body = nil, nil
}

// checkHold runs every holdCheck while the lock is held (see holdTick):
// it lets the lock go when another writer asks for it (the want byte) or
// when this one has been idle for idleRelease, and otherwise checks again
// after holdCheck. The caller leads.
func (l *Log) checkHold() {
	if !l.locked {
		return
	}
	if l.busy {
		l.busy, l.idle = false, 0
	} else {
		l.idle += holdCheck
	}
	var b [1]byte
	_, err := l.lockF.ReadAt(b[:], wantOff)
	want := err == nil && b[0] != 0
	if !want && l.idle < idleRelease {
		l.holdT.Reset(holdCheck)
		return
	}
	l.release(want)
}

// lock takes the flock. If another writer holds it, it asks for it (the
// want byte, which the holder checks every holdCheck) and tries again
// until it gets it.
func (l *Log) lock() error {
	if d := time.Until(l.notAfter); d > 0 {
		time.Sleep(d)
	}
	asked := false
	for {
		ok, err := tryLockFile(l.lockF)
		if err != nil {
			return err
		}
		if ok {
			l.locked = true
			l.busy, l.idle = true, 0
			l.holdT.Reset(holdCheck)
			return nil
		}
		if !asked {
			if _, err := l.lockF.WriteAt([]byte{1}, wantOff); err != nil {
				return fmt.Errorf("asking for the audit lock: %w", err)
			}
			asked = true
		}
		time.Sleep(contendPoll)
	}
}

// release makes what was written durable, records it in the head and
// lets the lock go. yield keeps this writer from taking it again at
// once, so that the writer that asked for it gets it.
func (l *Log) release(yield bool) {
	if !l.locked {
		return
	}
	l.syncMu.Lock()
	err := l.syncLocked(true)
	if err == nil {
		err = l.writeHeadLocked()
	}
	l.owned = false
	l.syncMu.Unlock()
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("audit log refuses records after a write failure: %w", err)
	}
	// Clear a request for the lock: the asker is polling and takes it now.
	l.lockF.WriteAt([]byte{0}, wantOff)
	if err := unlockFile(l.lockF); err != nil && l.err == nil {
		l.err = err
	}
	l.locked = false
	if yield {
		l.notAfter = time.Now().Add(yieldPause)
	}
}

// acquire takes the lock if this writer does not hold it, and brings its
// view up to date with the head (another writer may have appended, or
// died mid-batch). It returns the repair details, or nil.
func (l *Log) acquire() (map[string]any, error) {
	if !l.locked {
		if err := l.lock(); err != nil {
			return nil, err
		}
		l.stale = true
	}
	if !l.stale {
		return nil, nil
	}
	repair, err := l.sync()
	if err != nil {
		l.locked = false
		return nil, errors.Join(err, unlockFile(l.lockF))
	}
	l.posMu.Lock()
	l.pos, l.posF = l.st, l.seg
	l.posMu.Unlock()
	l.syncMu.Lock()
	l.durable, l.headAt, l.headSlot, l.owned = l.st, l.st, l.st.slot, true
	l.syncMu.Unlock()
	l.stale = false
	return repair, nil
}

// commit writes a batch under the lock: take it (adopting what other
// writers did), write the lines (rotating as needed), fdatasync with
// SyncAlways, and wake the syncer.
func (l *Log) commit(batch []*request) error {
	repair, err := l.acquire()
	if err != nil {
		return err
	}
	if repair != nil {
		ev := &Record{Time: l.opts.Now().UTC(), Kind: KindEvent, Gateway: l.opts.Gateway, Event: EventTailRepaired, Details: repair}
		body, err := ev.body()
		if err != nil {
			return err
		}
		batch = append([]*request{{rec: ev, body: body}}, batch...)
	}
	if len(batch) == 0 {
		return nil
	}
	pending := l.buf[:0]
	for _, r := range batch {
		start := len(pending)
		// assemble advances the chain: keep where the bytes before this
		// line end, should they go into the segment without it.
		prevSeq, prevHash := l.st.Seq, l.st.Hash
		pending = l.assemble(pending, r)
		lineLen := int64(len(pending) - start)
		if before := l.st.Off + int64(start); before > 0 && before+lineLen > l.opts.SegmentBytes {
			if err := l.write(pending[:start], prevSeq, prevHash); err != nil {
				return err
			}
			if err := l.rotate(prevSeq, prevHash); err != nil {
				return err
			}
			pending = append(pending[:0], pending[start:]...)
		}
	}
	l.buf = pending[:0]
	if err := l.write(pending, l.st.Seq, l.st.Hash); err != nil {
		return err
	}
	if l.opts.Sync == SyncAlways {
		// The leader syncs its own batch, holding the role: the next
		// batch waits. Writing it meanwhile and syncing it from a
		// goroutine of its own right after was measured (tf run, 16
		// clients, 2-core VM) and gained nothing: there the path is
		// CPU-bound, and what an fdatasync costs is the disk's (its
		// cache flush; on a VM, the notifications to the host), not
		// the wait between syncs.
		l.syncMu.Lock()
		err := l.syncLocked(true)
		l.syncMu.Unlock()
		if err != nil {
			return err
		}
	}
	select {
	case l.dirty <- struct{}{}:
	default: // the syncer is already due
	}
	return nil
}

// syncer makes written records durable within the sync window
// (SyncGroup) and keeps the head file close behind, syncing it lazily.
func (l *Log) syncer() {
	defer close(l.syncerDone)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for range l.dirty {
		t.Reset(l.opts.SyncWindow)
		select {
		case <-t.C:
		case <-l.exited: // Close: the writer has synced what it wrote
		}
		l.syncMu.Lock()
		err := l.syncLocked(l.opts.Sync == SyncGroup)
		if err == nil && l.owned {
			err = l.writeHeadLocked()
		}
		due := err == nil && time.Since(l.headSynced) >= headSyncEvery
		if due {
			l.headSynced = time.Now()
		}
		l.syncMu.Unlock()
		if due {
			err = syncFile(l.headF)
		}
		if err != nil {
			l.syncErr.CompareAndSwap(nil, &err)
		}
	}
}

// syncLocked fdatasyncs the segment up to where the writer has written,
// if that is past what is durable; segment says whether to sync at all.
// syncMu is held.
func (l *Log) syncLocked(segment bool) error {
	l.posMu.Lock()
	p, f, written := l.pos, l.posF, l.written
	l.posMu.Unlock()
	if !segment || f == nil || p.sameAs(l.durable) {
		return nil
	}
	var started time.Time
	if l.opts.Durable != nil {
		started = time.Now()
	}
	if err := syncFile(f); err != nil {
		return fmt.Errorf("syncing audit segment %s: %w", segmentName(p.Seg), err)
	}
	l.syncs.Add(1)
	l.durable = p
	if l.opts.Durable != nil && !written.IsZero() {
		l.posMu.Lock()
		if l.pos.sameAs(p) {
			l.written = time.Time{}
		} else {
			// Written since p was read, so no earlier than started.
			l.written = started
		}
		l.posMu.Unlock()
		l.opts.Durable(time.Since(written))
	}
	return nil
}

// writeHeadLocked records the durable position in the older of the two
// head slots. The head never names data that is not durable; after a
// power loss it may lag (see doc.go). syncMu is held.
func (l *Log) writeHeadLocked() error {
	if l.durable.sameAs(l.headAt) {
		return nil
	}
	slot := 1 - l.headSlot
	if _, err := l.headF.WriteAt(l.durable.encode(), int64(slot*headSlot)); err != nil {
		return fmt.Errorf("writing audit head: %w", err)
	}
	l.headAt, l.headSlot = l.durable, slot
	return nil
}

// assemble appends the record's line to buf: the writer-owned fields
// first, the caller's body, prev, then the hash over everything before it.
func (l *Log) assemble(buf []byte, r *request) []byte {
	start := len(buf)
	seq := l.st.Seq + 1
	// prev and hash in hex, side by side: one string for the record.
	var hexes [4 * sha256.Size]byte
	hex.Encode(hexes[:2*sha256.Size], l.st.Hash[:])
	buf = append(buf, lineHeader...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, ',')
	buf = append(buf, r.body[1:len(r.body)-1]...)
	buf = append(buf, prevKey...)
	buf = append(buf, hexes[:2*sha256.Size]...)
	buf = append(buf, '"')
	l.sha.Reset()
	l.sha.Write(buf[start:])
	l.sha.Write([]byte{'}'})
	var sum [sha256.Size]byte
	hex.Encode(hexes[2*sha256.Size:], l.sha.Sum(sum[:0]))
	buf = append(buf, hashKey...)
	buf = append(buf, hexes[2*sha256.Size:]...)
	buf = append(buf, '"', '}')
	l.st.Seq = seq
	l.st.Hash = lineHash(buf[start:])
	buf = append(buf, '\n')
	both := string(hexes[:])
	r.rec.SchemaVersion, r.rec.Seq, r.rec.Prev, r.rec.Hash = SchemaVersion, seq, both[:2*sha256.Size], both[2*sha256.Size:]
	return buf
}

// write writes p at the end of the segment; seq and hash are those of
// its last line, for the syncer and the head.
func (l *Log) write(p []byte, seq uint64, hash [32]byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := writeAt(l.seg, p, l.st.Off); err != nil {
		return fmt.Errorf("writing audit segment %s: %w", segmentName(l.segNum), err)
	}
	l.st.Off += int64(len(p))
	l.posMu.Lock()
	l.pos = head{Seq: seq, Hash: hash, Seg: l.st.Seg, Off: l.st.Off}
	if l.opts.Durable != nil && l.written.IsZero() {
		l.written = time.Now()
	}
	l.posMu.Unlock()
	return nil
}

// rotate makes the segment durable and starts the next one; seq and hash
// are those of the last line written.
func (l *Log) rotate(seq uint64, hash [32]byte) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if err := l.syncLocked(true); err != nil {
		return err
	}
	if err := l.writeHeadLocked(); err != nil {
		return err
	}
	old := l.segNum
	f, err := os.OpenFile(filepath.Join(l.dir, segmentName(old+1)), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("starting audit segment: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("starting audit segment: %w", err)
	}
	l.seg.Close()
	l.seg, l.segNum = f, old+1
	l.st.Seg, l.st.Off = old+1, 0
	l.posMu.Lock()
	l.pos, l.posF = head{Seq: seq, Hash: hash, Seg: old + 1}, f
	// An empty segment is durable as it stands.
	l.durable = l.pos
	l.posMu.Unlock()
	if l.opts.Compress {
		l.compressLater(old)
	}
	return nil
}

// sync brings the writer's view up to date with the head file, which
// another writer may have advanced, and repairs bytes past the head left
// by a writer that died. It returns the repair details, or nil. It runs
// when the writer takes the lock, not per batch.
func (l *Log) sync() (map[string]any, error) {
	var b [2 * headSlot]byte
	n, err := l.headF.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading audit head: %w", err)
	}
	h, err := parseHead(b[:n])
	if err != nil {
		return nil, err
	}
	if l.seg != nil && l.segNum == h.Seg && h.sameAs(l.st) {
		fi, err := l.seg.Stat()
		if err != nil {
			return nil, fmt.Errorf("checking audit segment: %w", err)
		}
		_, nextErr := os.Lstat(filepath.Join(l.dir, segmentName(h.Seg+1)))
		if fi.Size() == h.Off && errors.Is(nextErr, fs.ErrNotExist) {
			l.st.slot = h.slot
			return nil, nil
		}
	}
	return l.reconcile(h)
}

// reconcile adopts complete, chained records past the head (written by a
// writer that died before advancing the head) and truncates anything
// else there: a torn line is never kept.
func (l *Log) reconcile(h head) (map[string]any, error) {
	l.st = h
	var dropped int64
	var recovered int
	var repairedSeg string
	for {
		if err := l.openSegment(l.st.Seg, l.st.Off == 0); err != nil {
			return nil, err
		}
		fi, err := l.seg.Stat()
		if err != nil {
			return nil, fmt.Errorf("checking audit segment: %w", err)
		}
		size := fi.Size()
		if size < l.st.Off {
			return nil, fmt.Errorf("audit segment %s is shorter than its head (%d < %d bytes): records were removed (run tf audit verify)",
				segmentName(l.st.Seg), size, l.st.Off)
		}
		if size > l.st.Off {
			repairedSeg = segmentName(l.st.Seg)
			lr := newLineReader(io.NewSectionReader(l.seg, l.st.Off, size-l.st.Off))
			for {
				line, complete, tooLong, err := lr.next()
				if err != nil || !complete || tooLong {
					break
				}
				rec, perr := parseLine(line)
				if perr != nil || rec.Seq != l.st.Seq+1 || rec.Prev != hex.EncodeToString(l.st.Hash[:]) {
					break
				}
				l.st.Seq, l.st.Hash = rec.Seq, lineHash(line)
				l.st.Off += int64(len(line)) + 1
				recovered++
			}
			if l.st.Off < size {
				if err := l.seg.Truncate(l.st.Off); err != nil {
					return nil, fmt.Errorf("truncating torn audit tail: %w", err)
				}
				if err := datasync(l.seg); err != nil {
					return nil, fmt.Errorf("truncating torn audit tail: %w", err)
				}
				dropped += size - l.st.Off
			}
		}
		if _, err := os.Lstat(filepath.Join(l.dir, segmentName(l.st.Seg+1))); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			return nil, fmt.Errorf("checking audit segments: %w", err)
		}
		// A writer died right after starting the next segment.
		l.st.Seg, l.st.Off = l.st.Seg+1, 0
	}
	if dropped == 0 && recovered == 0 {
		return nil, nil
	}
	if recovered > 0 {
		// The adopted records may never have been synced by their writer.
		if err := syncFile(l.seg); err != nil {
			return nil, fmt.Errorf("syncing adopted audit records: %w", err)
		}
	}
	return map[string]any{
		"segment":           repairedSeg,
		"dropped_bytes":     dropped,
		"recovered_records": recovered,
		"head_seq":          h.Seq,
	}, nil
}

// openSegment makes l.seg the segment n; create allows it not to exist yet.
func (l *Log) openSegment(n uint64, create bool) error {
	if l.seg != nil && l.segNum == n {
		return nil
	}
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	path := filepath.Join(l.dir, segmentName(n))
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return fmt.Errorf("opening audit segment %s (named by the head): %w", segmentName(n), err)
	}
	if create {
		if err := syncDir(l.dir); err != nil {
			f.Close()
			return fmt.Errorf("creating audit segment: %w", err)
		}
	}
	if l.seg != nil {
		l.seg.Close()
		if l.opts.Compress && l.segNum < n {
			l.compressLater(l.segNum)
		}
	}
	l.seg, l.segNum = f, n
	return nil
}

// compressClosed compresses segments before the head's that are still
// plain, and removes plain copies whose compressed twin is complete.
func (l *Log) compressClosed() error {
	segs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s.num >= l.st.Seg || !s.plain {
			continue
		}
		if s.gz {
			// The .gz is renamed into place only when complete.
			if err := os.Remove(filepath.Join(l.dir, segmentName(s.num))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing compressed audit segment: %w", err)
			}
			continue
		}
		l.compressLater(s.num)
	}
	return nil
}

func (l *Log) compressLater(n uint64) {
	l.compMu.Lock()
	defer l.compMu.Unlock()
	if l.pending[n] {
		return
	}
	l.pending[n] = true
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		if err := compressSegment(l.dir, n); err != nil {
			l.bgMu.Lock()
			l.bgErrs = append(l.bgErrs, err)
			l.bgMu.Unlock()
		}
	}()
}

// compressSegment writes audit-N.jsonl.gz next to a closed segment and
// removes the plain file. Readers find the data in one or the other at
// every moment.
func compressSegment(dir string, n uint64) error {
	src := filepath.Join(dir, segmentName(n))
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // another writer compressed it
	}
	if err != nil {
		return fmt.Errorf("compressing audit segment: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, segmentName(n)+".gz.tmp-*")
	if err != nil {
		return fmt.Errorf("compressing audit segment: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	zw := gzip.NewWriter(tmp)
	_, err = io.Copy(zw, in)
	err = errors.Join(err, zw.Close())
	if err == nil {
		err = tmp.Sync()
	}
	if err = errors.Join(err, tmp.Close()); err != nil {
		return fmt.Errorf("compressing audit segment %s: %w", segmentName(n), err)
	}
	if err := os.Rename(tmp.Name(), src+".gz"); err != nil {
		return fmt.Errorf("compressing audit segment: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("compressing audit segment: %w", err)
	}
	if err := os.Remove(src); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing compressed audit segment: %w", err)
	}
	return nil
}
