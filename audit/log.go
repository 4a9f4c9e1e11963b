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
	"time"
)

// DefaultSegmentBytes is the size at which a segment is closed and the
// next one started.
const DefaultSegmentBytes = 64 << 20

// maxBatch bounds how many records one fsync covers, so that a flood of
// appenders cannot make one batch arbitrarily large.
const maxBatch = 4096

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
}

// A Log appends records to the audit log in one directory. Several Logs,
// in one process or many, may share a directory: each batch is written
// under an exclusive flock, so all writers extend one chain.
type Log struct {
	dir     string
	opts    Options
	lockF   *os.File
	headF   *os.File
	mu      sync.RWMutex // held for reading while sending to reqs
	closed  bool
	reqs    chan *request
	exited  chan struct{}
	bg      sync.WaitGroup
	bgMu    sync.Mutex
	bgErrs  []error
	compMu  sync.Mutex
	pending map[uint64]bool // segments being compressed by this Log

	// The head is fdatasync'd by its own goroutine, overlapping the next
	// batch, so an Append waits for one fsync rather than two.
	headSync   chan struct{}
	headSynced chan struct{}
	headMu     sync.Mutex
	headErr    error

	// Owned by the writer goroutine (and by Open before it starts).
	st     head     // what this writer last wrote or adopted
	seg    *os.File // segment st.Seg, open for writing
	segNum uint64
	err    error // sticky: after a failed batch nothing more is written
	// batches counts committed batches; read only after Close (benchmarks).
	batches uint64
	buf     []byte
	sha     hash.Hash
}

type request struct {
	rec  *Record
	body []byte
	done chan error
}

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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating audit directory: %w", err)
	}
	l := &Log{
		dir:     dir,
		opts:    opts,
		reqs:    make(chan *request, maxBatch),
		exited:  make(chan struct{}),
		pending: map[uint64]bool{},
		sha:     sha256.New(),

		headSync:   make(chan struct{}, 1),
		headSynced: make(chan struct{}),
	}
	var err error
	if l.lockF, err = os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		return nil, fmt.Errorf("opening audit lock: %w", err)
	}
	if err := l.init(); err != nil {
		l.closeFiles()
		return nil, err
	}
	if opts.Compress {
		if err := l.compressClosed(); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	go l.run()
	go l.syncHead()
	return l, nil
}

// init creates the head file of a new log and adopts the current tail.
func (l *Log) init() error {
	if err := lockFile(l.lockF); err != nil {
		return err
	}
	defer unlockFile(l.lockF)
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
	return l.commitLocked(nil)
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

// Append writes r to the log and returns once it is durable (fsync'd).
// It fills in r's schema_version, seq, prev and hash, and its time and
// gateway when they are empty. Concurrent Appends share one fsync. A
// record that cannot be written is refused with an error; after an I/O
// error the log refuses every further record (fail closed). Once queued,
// a record is written even if ctx ends, so Append then still waits.
func (l *Log) Append(ctx context.Context, r *Record) error {
	req, err := l.prepare(r, true)
	if err != nil {
		return err
	}
	if err := l.enqueue(ctx, req); err != nil {
		return err
	}
	return <-req.done
}

// AppendAll writes recs, in order, and returns once all are durable: one
// wait for several records (the actions of one request, the lines of a
// burst). Nothing is queued unless every record is valid. An error means
// some may not have been written.
func (l *Log) AppendAll(ctx context.Context, recs []*Record) error {
	if len(recs) == 0 {
		return nil
	}
	reqs := make([]*request, len(recs))
	for i, r := range recs {
		// The writer takes requests in order and a failed batch fails
		// every later one, so the last request's answer covers all.
		req, err := l.prepare(r, i == len(recs)-1)
		if err != nil {
			return err
		}
		reqs[i] = req
	}
	if err := l.enqueue(ctx, reqs...); err != nil {
		return err
	}
	return <-reqs[len(reqs)-1].done
}

// AppendAsync queues r and returns without waiting for it to be written:
// for records nothing waits on, such as the outcome of an exchange whose
// decision is on record already. The record is written, durably, with the
// next batch, and Close waits for it. It fails at once on a record Append
// would refuse and on a closed log; a write failure after that is sticky,
// and reported by every later Append and by Close. Queueing waits only
// while the queue is full.
func (l *Log) AppendAsync(r *Record) error {
	req, err := l.prepare(r, false)
	if err != nil {
		return err
	}
	return l.enqueue(context.Background(), req)
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
	body, err := r.body()
	if err != nil {
		return nil, fmt.Errorf("refusing audit record: %w", err)
	}
	// The writer adds schema_version, seq, prev and hash: under 256 bytes.
	if len(body)+256 > MaxRecordBytes {
		return nil, fmt.Errorf("refusing audit record: %d bytes exceeds the %d byte limit", len(body), MaxRecordBytes)
	}
	req := &request{rec: r, body: body}
	if wait {
		req.done = make(chan error, 1)
	}
	return req, nil
}

// enqueue hands reqs to the writer, in order. ctx bounds only the wait
// for room for the first: once it is queued the rest follow, whatever ctx
// does, so that a group is never half-written for a context.
func (l *Log) enqueue(ctx context.Context, reqs ...*request) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	select {
	case l.reqs <- reqs[0]:
	case <-ctx.Done():
		return fmt.Errorf("appending audit record: %w", ctx.Err())
	}
	for _, req := range reqs[1:] {
		l.reqs <- req
	}
	return nil
}

// Event appends an event record.
func (l *Log) Event(ctx context.Context, gateway, name string, details map[string]any) error {
	return l.Append(ctx, &Record{Kind: KindEvent, Gateway: gateway, Event: name, Details: details})
}

// Close waits for queued records, stops the writer and background
// compression, and closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.exited
	close(l.headSync)
	<-l.headSynced
	l.bg.Wait()
	errs := l.closeFiles()
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	l.headMu.Lock()
	defer l.headMu.Unlock()
	// l.err is the writer's, which has exited: a failed batch, which
	// records queued by AppendAsync learn of only here.
	return errors.Join(append(l.bgErrs, l.err, l.headErr, errs)...)
}

// syncHead makes head updates durable, one fdatasync for however many
// were written since the last, and a final one at Close.
func (l *Log) syncHead() {
	defer close(l.headSynced)
	for range l.headSync {
		if err := datasync(l.headF); err != nil {
			l.headMu.Lock()
			if l.headErr == nil {
				l.headErr = fmt.Errorf("syncing audit head: %w", err)
			}
			l.headMu.Unlock()
		}
	}
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

// run is the single writer: it takes every queued record, writes them
// with one fsync and then releases their Appends.
func (l *Log) run() {
	defer close(l.exited)
	batch := make([]*request, 0, maxBatch)
	for r := range l.reqs {
		batch = append(batch[:0], r)
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		err := l.err
		if err == nil {
			if err = l.commit(batch); err != nil {
				l.err = fmt.Errorf("audit log refuses records after a write failure: %w", err)
			}
			l.batches++
		}
		for _, r := range batch {
			if r.done != nil {
				r.done <- err
			}
		}
		clear(batch)
	}
}

func (l *Log) commit(batch []*request) error {
	if err := lockFile(l.lockF); err != nil {
		return err
	}
	err := l.commitLocked(batch)
	return errors.Join(err, unlockFile(l.lockF))
}

// commitLocked writes a batch while holding the lock: adopt what other
// writers did, write the lines (rotating as needed), fsync, then advance
// the head.
func (l *Log) commitLocked(batch []*request) error {
	l.headMu.Lock()
	err := l.headErr
	l.headMu.Unlock()
	if err != nil {
		return err
	}
	repair, err := l.sync()
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
		pending = l.assemble(pending, r)
		lineLen := int64(len(pending) - start)
		if before := l.st.Off + int64(start); before > 0 && before+lineLen > l.opts.SegmentBytes {
			if err := l.write(pending[:start]); err != nil {
				return err
			}
			if err := l.rotate(); err != nil {
				return err
			}
			pending = append(pending[:0], pending[start:]...)
		}
	}
	l.buf = pending[:0]
	if err := l.write(pending); err != nil {
		return err
	}
	return l.writeHead()
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

func (l *Log) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := l.seg.WriteAt(p, l.st.Off); err != nil {
		return fmt.Errorf("writing audit segment %s: %w", segmentName(l.segNum), err)
	}
	if err := datasync(l.seg); err != nil {
		return fmt.Errorf("syncing audit segment %s: %w", segmentName(l.segNum), err)
	}
	l.st.Off += int64(len(p))
	return nil
}

// rotate starts the next segment. The previous one is already synced.
func (l *Log) rotate() error {
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
	if l.opts.Compress {
		l.compressLater(old)
	}
	return nil
}

// writeHead records the new tail in the older of the two slots and asks
// for it to be synced. The segment is already synced, so the head never
// names data that is not durable; after a power loss it may lag by the
// last batch or two (see doc.go).
func (l *Log) writeHead() error {
	slot := 1 - l.st.slot
	if _, err := l.headF.WriteAt(l.st.encode(), int64(slot*headSlot)); err != nil {
		return fmt.Errorf("writing audit head: %w", err)
	}
	l.st.slot = slot
	select {
	case l.headSync <- struct{}{}:
	default: // a sync is already pending and will cover this write
	}
	return nil
}

// sync brings the writer's view up to date with the head file, which
// another writer may have advanced, and repairs bytes past the head left
// by a writer that died. It returns the repair details, or nil.
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
	if l.seg != nil && l.segNum == h.Seg && h.Seq == l.st.Seq && h.Off == l.st.Off && h.Hash == l.st.Hash {
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
