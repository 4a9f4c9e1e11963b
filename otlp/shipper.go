// Package otlp ships the audit log to an OpenTelemetry collector as OTLP
// log records, one per audit record, from a cursor persisted in $TF_HOME.
//
// The local log stays the source of truth. The shipper follows it the way
// tf logs -f does (it is never on the append path), batches what it reads,
// posts each batch as an OTLP/HTTP export request, and advances the cursor
// only after the collector answered 2xx: after a restart or an outage it
// resumes from the cursor, so every record arrives at least once.
//
// Neither the OpenTelemetry log SDK nor its OTLP exporter is used. The
// SDK's BatchProcessor drops records when its queue is full and never
// tells which records a collector acknowledged, which is what a cursor
// needs; and the exporter's work per record (an SDK record, its transform
// into generated messages, proto.Marshal: about 9 µs and 45 allocations)
// was more than the shipper's whole budget at 50,000 records/s on a
// machine of two cores shared with the collector. The shipper encodes each
// batch with protowire into a reused buffer (encode.go; the tests hold it
// equal to the official exporter's requests) and posts it with net/http,
// keeping what the exporter did: the standard environment, gzip, TLS
// certificates, partial success, Retry-After. A few batches are in flight
// at once so that encoding the next batch overlaps the collector's work on
// the last; the cursor moves in log order, past a batch only when it and
// every batch before it were acknowledged.
package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	tfhome "github.com/tameflare/tf/home"

	"github.com/gofrs/flock"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/version"
)

// Defaults of Options.
const (
	DefaultMaxBatch      = 1024
	DefaultMaxBatchBytes = 4 << 20
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultExportTimeout = 10 * time.Second
	// DefaultConcurrency is how many batches are in flight at once. Since
	// tf encodes a record in under a microsecond, the collector is the
	// slower side; four batches keep it busy, and a busy collector spends
	// less per record (17-19 µs against 19-26 µs with two, which left it
	// idle between requests): BenchmarkShipInFlight, decisions only,
	// 55-59k records/s with four, 42-56k with two.
	DefaultConcurrency = 4
	// DefaultDrainTimeout bounds how long Close keeps trying to ship what
	// is left; what it cannot ship goes at the next start.
	DefaultDrainTimeout = 3 * time.Second
)

// Options configure a Shipper.
type Options struct {
	// Home is $TF_HOME: the audit log, the cursor and the status file.
	Home string
	// Gateway names the shipping gateway (resource attribute tf.gateway).
	Gateway string
	// Config says where to ship.
	Config Config
	// Warn is told about a problem once when it starts, not per record,
	// and once when shipping recovers. It never receives a header value.
	Warn func(msg string)
	// Zero values mean the defaults above (ExportTimeout: Config.Timeout,
	// then DefaultExportTimeout).
	MaxBatch      int
	MaxBatchBytes int
	FlushInterval time.Duration
	ExportTimeout time.Duration
	DrainTimeout  time.Duration
	Concurrency   int
	// RetryMin and RetryMax bound the wait between failed exports
	// (default 100ms and 5s).
	RetryMin, RetryMax time.Duration
}

// A Shipper ships the audit log of one $TF_HOME. Of several gateways that
// share a $TF_HOME, the one that holds $TF_HOME/otel/lock ships; the
// others wait to take over.
type Shipper struct {
	opts Options
	dir  string // the audit log
	url  string // redacted, for messages
	// post is where batches go; header is every request's header.
	post   string
	header http.Header
	client *http.Client
	gzip   bool
	// slots has one encoder per batch in flight, each with its buffers.
	slots chan *slot
	lock  *flock.Flock

	acked        atomic.Uint64 // the last acknowledged seq
	end          atomic.Uint64 // the last seq known to be in the log
	pendingSince atomic.Int64  // unix nanos of the oldest unacknowledged record read, 0 when none
	shipped      atomic.Uint64 // records acknowledged since Start

	mu       sync.Mutex
	st       Status
	warned   string
	lastSave time.Time

	stopFollow context.CancelFunc // ends the follow: drain and stop
	hardStop   context.CancelFunc // ends everything
	done       chan struct{}
}

// Start checks the configuration and starts shipping in the background.
// A configuration that cannot work (a malformed endpoint, an unsupported
// protocol) is an error, also written to the status file for tf status.
func Start(opts Options) (*Shipper, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.ExportTimeout <= 0 {
		opts.ExportTimeout = opts.Config.Timeout
	}
	if opts.ExportTimeout <= 0 {
		opts.ExportTimeout = DefaultExportTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 100 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Second
	}
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	s := &Shipper{opts: opts, dir: audit.Dir(opts.Home), done: make(chan struct{})}
	s.st = Status{Gateway: opts.Gateway, PID: os.Getpid(), Headers: opts.Config.headerNames()}
	if err := os.MkdirAll(Dir(opts.Home), 0o700); err != nil {
		return nil, fmt.Errorf("audit shipping: %w", err)
	}
	u, err := opts.Config.LogsURL()
	if err == nil {
		s.url = Redact(u.String())
		err = opts.Config.check(u)
	}
	var tc *tls.Config
	if err == nil {
		tc, err = opts.Config.tlsConfig()
	}
	if err != nil {
		s.st.Endpoint = s.url
		if s.st.Endpoint == "" {
			s.st.Endpoint = Redact(opts.Config.LogsEndpoint + opts.Config.Endpoint)
		}
		s.st.Error, s.st.ErrorSince = err.Error(), nowUTC()
		_ = s.saveStatus(true)
		return nil, fmt.Errorf("audit shipping: %w", err)
	}
	s.st.Endpoint = s.url
	s.post = u.String()
	s.header = http.Header{}
	for k, v := range opts.Config.Headers {
		s.header.Set(k, v)
	}
	s.header.Set("Content-Type", "application/x-protobuf")
	s.header.Set("User-Agent", "tf/"+version.Get().Short())
	if opts.Config.Compression == CompressionGzip {
		s.gzip = true
		s.header.Set("Content-Encoding", "gzip")
	}
	// net/http's default transport's settings, as the exporter had (its
	// own copy, whatever another package does to http.DefaultTransport).
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   opts.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       tc,
	}
	s.client = &http.Client{Timeout: opts.ExportTimeout, Transport: tr}
	s.slots = make(chan *slot, opts.Concurrency)
	enc, err := newEncoder(opts.Gateway)
	if err != nil {
		return nil, fmt.Errorf("audit shipping: %w", err)
	}
	s.slots <- &slot{enc: enc}
	for range opts.Concurrency - 1 {
		s.slots <- &slot{enc: enc.another()}
	}
	s.lock = flock.New(filepath.Join(Dir(opts.Home), "lock"))
	if c, err := ReadCursor(opts.Home); err == nil {
		s.acked.Store(c.Seq)
	}
	if end, err := audit.End(s.dir); err == nil {
		s.end.Store(end)
	}
	followCtx, stopFollow := context.WithCancel(context.Background())
	hardCtx, hardStop := context.WithCancel(context.Background())
	s.stopFollow, s.hardStop = stopFollow, hardStop
	go s.run(followCtx, hardCtx)
	return s, nil
}

// Dir is where the shipper keeps its cursor, lock and status.
func Dir(home string) string { return filepath.Join(home, "otel") }

// Lag is how far shipping is behind the log: records written and not yet
// acknowledged by the collector, and the age of the oldest of them. It is
// cheap (three atomic loads) and safe to call from any goroutine, e.g. a
// metrics gauge.
func (s *Shipper) Lag() (records uint64, age time.Duration) {
	end, acked := s.end.Load(), s.acked.Load()
	if end > acked {
		records = end - acked
	}
	if p := s.pendingSince.Load(); p != 0 {
		age = time.Since(time.Unix(0, p))
	}
	return records, age
}

// Shipped is how many records the collector acknowledged since Start.
func (s *Shipper) Shipped() uint64 { return s.shipped.Load() }

// Status is the shipper's state as tf status shows it.
func (s *Shipper) Status() Status {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.Acked = s.acked.Load()
	st.Behind, st.Age = s.Lag()
	return st
}

// Close stops following the log, ships what it has read within the drain
// timeout, and stops. Whatever is left is shipped at the next start.
func (s *Shipper) Close() error {
	s.stopFollow()
	t := time.AfterFunc(s.opts.DrainTimeout, s.hardStop)
	<-s.done
	t.Stop()
	s.hardStop()
	s.mu.Lock()
	standby := strings.HasPrefix(s.st.State, "standby")
	s.mu.Unlock()
	if !standby {
		_ = s.saveStatus(true)
	}
	_ = s.lock.Unlock()
	s.client.CloseIdleConnections()
	return nil
}

// run takes the lock and ships until told to stop.
func (s *Shipper) run(followCtx, hardCtx context.Context) {
	defer close(s.done)
	go s.watchEnd(hardCtx)
	for {
		ok, err := s.lock.TryLock()
		if err != nil {
			s.fail(fmt.Errorf("locking %s: %w", s.lock.Path(), err))
		}
		if ok {
			break
		}
		s.setState("standby: another gateway of this $TF_HOME ships")
		select {
		case <-followCtx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	s.setState("shipping")
	// After takes over from another shipper, the cursor may have moved.
	if c, err := ReadCursor(s.opts.Home); err == nil && c.Seq > s.acked.Load() {
		s.acked.Store(c.Seq)
	}
	wait := s.opts.RetryMin
	for {
		err := s.follow(followCtx, hardCtx)
		if followCtx.Err() != nil || hardCtx.Err() != nil {
			return
		}
		if err != nil {
			s.fail(err)
		}
		select {
		case <-followCtx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.opts.RetryMax)
	}
}

// watchEnd keeps the log's end current for Lag, once a second.
func (s *Shipper) watchEnd(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if end, err := audit.End(s.dir); err == nil && end > s.end.Load() {
			s.end.Store(end)
		}
		s.mu.Lock()
		standby := strings.HasPrefix(s.st.State, "standby")
		s.mu.Unlock()
		if standby {
			if c, err := ReadCursor(s.opts.Home); err == nil {
				s.acked.Store(c.Seq)
			}
		}
	}
}

// follow reads the log from the cursor and ships it in batches until
// followCtx ends (then it ships what it read) or reading fails.
func (s *Shipper) follow(followCtx, hardCtx context.Context) error {
	recs := make(chan *audit.Record, 2*s.opts.MaxBatch)
	ferr := make(chan error, 1)
	after := s.acked.Load()
	go func() {
		defer close(recs)
		deliver := func(r *audit.Record) error {
			if r.Seq > s.end.Load() {
				s.end.Store(r.Seq) // for Lag, even while the batch waits
			}
			if r.Seq%yieldEvery == 0 {
				runtime.Gosched()
			}
			select {
			case recs <- r:
				after = r.Seq
				return nil
			case <-hardCtx.Done():
				return hardCtx.Err()
			}
		}
		err := audit.Follow(followCtx, s.dir, audit.Filter{}, after, deliver)
		if err == nil && followCtx.Err() != nil {
			// Follow stops at its next poll without reading what was
			// written since the last one; a Follow with an ended
			// context reads to the end once and returns.
			err = audit.Follow(followCtx, s.dir, audit.Filter{}, after, deliver)
		}
		ferr <- err
	}()
	var (
		batch  []*audit.Record
		size   int
		timer  = time.NewTimer(time.Hour)
		flying []*flight // in log order
	)
	timer.Stop()
	defer timer.Stop()
	// land takes the outcome of the oldest batch in flight and, if the
	// collector took it, moves the cursor past it.
	land := func(err error) error {
		f := flying[0]
		flying = flying[1:]
		if err != nil {
			return err
		}
		next := int64(0) // the oldest record still unacknowledged
		if len(flying) > 0 {
			next = flying[0].batch[0].Time.UnixNano()
		} else if len(batch) > 0 {
			next = batch[0].Time.UnixNano()
		}
		s.acknowledge(f.batch, next)
		return nil
	}
	// landAll waits for every batch in flight, also after an error, so
	// that no export outlives follow.
	landAll := func(err error) error {
		for len(flying) > 0 {
			if lerr := land(<-flying[0].done); lerr != nil && err == nil {
				err = lerr
			}
			if err != nil {
				// Later batches must not move the cursor past this one.
				for _, f := range flying {
					<-f.done
				}
				flying = nil
			}
		}
		return err
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		for len(flying) >= s.opts.Concurrency {
			if err := land(<-flying[0].done); err != nil {
				return err
			}
		}
		f := &flight{batch: batch, done: make(chan error, 1)}
		go func() { f.done <- s.ship(hardCtx, f.batch) }()
		flying = append(flying, f)
		batch, size = make([]*audit.Record, 0, len(batch)), 0
		return nil
	}
	for {
		var landed chan error
		if len(flying) > 0 {
			landed = flying[0].done
		}
		select {
		case err := <-landed:
			if err := land(err); err != nil {
				return landAll(err)
			}
		case r, ok := <-recs:
			if !ok {
				err := <-ferr
				if ferr := flush(); ferr != nil && err == nil {
					err = ferr
				}
				return landAll(err)
			}
			if r.Seq > s.end.Load() {
				s.end.Store(r.Seq)
			}
			if len(batch) == 0 {
				s.pendingSince.CompareAndSwap(0, r.Time.UnixNano())
				timer.Reset(s.opts.FlushInterval)
			}
			batch = append(batch, r)
			size += len(r.Line)
			if len(batch) >= s.opts.MaxBatch || size >= s.opts.MaxBatchBytes {
				timer.Stop()
				if err := flush(); err != nil {
					return landAll(err)
				}
			}
		case <-timer.C:
			if err := flush(); err != nil {
				return landAll(err)
			}
		}
	}
}

// yieldEvery is how many records the shipper reads or builds between
// yields of its thread. Catching up, it is CPU-bound for as long as there
// is log to read; a decision whose audit write returns from its sync then
// waits for a thread until the shipper yields (the scheduler's own
// preemption is every 10ms), which was most of what shipping cost the
// decision path.
const yieldEvery = 32

// A flight is a batch being exported; done receives the outcome once.
type flight struct {
	batch []*audit.Record
	done  chan error
}

// ship exports one batch, retrying until the collector acknowledges it
// or hardCtx ends. It runs in a goroutine of its own, one per batch in
// flight; the cursor is follow's to move.
func (s *Shipper) ship(hardCtx context.Context, batch []*audit.Record) error {
	sl := <-s.slots
	defer func() { s.slots <- sl }()
	body, err := sl.body(batch, s.gzip)
	if err != nil {
		return err
	}
	wait := s.opts.RetryMin
	for {
		err := s.export(hardCtx, body)
		var pe *partialError
		if errors.As(err, &pe) {
			// The collector took the batch and refused some records as
			// malformed; sending them again would not change its mind.
			s.warnOnce("partial", fmt.Sprintf("audit shipping: the collector at %s refused part of a batch: %s", s.url, s.scrub(err)))
			err = nil
		}
		if err == nil {
			return nil
		}
		if hardCtx.Err() != nil {
			return hardCtx.Err()
		}
		s.fail(err)
		next := wait
		var he *httpError
		if errors.As(err, &he) && he.retryAfter > 0 {
			// The collector said when to come back; RetryMax bounds it,
			// so that a wrong answer cannot stop shipping for long.
			next = min(he.retryAfter, s.opts.RetryMax)
		}
		select {
		case <-hardCtx.Done():
			return hardCtx.Err()
		case <-time.After(next):
		}
		wait = min(2*wait, s.opts.RetryMax)
	}
}

// maxAnswer bounds how much of a collector's answer is read.
const maxAnswer = 64 << 10

// export posts one request body and reads the answer: nil for a 2xx, a
// *partialError when the collector took the batch but refused some
// records, an *httpError for any other status, or the transport's error.
func (s *Shipper) export(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ExportTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.post, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = s.header.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		return s.transportError(ctx, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return s.transportError(ctx, fmt.Errorf("reading the answer (%s): %w", resp.Status, err))
	}
	protobuf := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-protobuf")
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// A 2xx means the collector took the batch; an answer it cannot
		// decode does not change that.
		var r collogpb.ExportLogsServiceResponse
		if len(answer) > 0 && protobuf && proto.Unmarshal(answer, &r) == nil {
			if ps := r.GetPartialSuccess(); ps != nil && (ps.GetRejectedLogRecords() != 0 || ps.GetErrorMessage() != "") {
				return &partialError{rejected: ps.GetRejectedLogRecords(), msg: bounded(ps.GetErrorMessage())}
			}
		}
		return nil
	}
	he := &httpError{status: resp.Status}
	if protobuf {
		var st spb.Status
		if proto.Unmarshal(answer, &st) == nil {
			he.msg = bounded(st.GetMessage())
		}
	} else if utf8.Valid(answer) {
		he.msg = bounded(string(answer))
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		he.retryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return he
}

// transportError names a timeout as such.
func (s *Shipper) transportError(ctx context.Context, err error) error {
	var ne net.Error
	if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("the collector did not answer within %s: %w", s.opts.ExportTimeout, err)
	}
	return err
}

// An httpError is a collector's answer other than 2xx.
type httpError struct {
	status     string // the status line: 503 Service Unavailable
	msg        string // the answer's message, bounded
	retryAfter time.Duration
}

func (e *httpError) Error() string {
	if e.msg == "" {
		return "the collector answered " + e.status
	}
	return "the collector answered " + e.status + ": " + e.msg
}

// A partialError is a 2xx answer whose partial_success refused records.
type partialError struct {
	rejected int64
	msg      string
}

func (e *partialError) Error() string {
	return fmt.Sprintf("OTLP partial success: %s (%d log records rejected)", e.msg, e.rejected)
}

// bounded is a collector's message as it may be shown: one line of at
// most 200 bytes, cut at a rune.
func bounded(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= 200 {
		return s
	}
	cut := 200
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// retryAfter is the wait a Retry-After header asks for: seconds or an
// HTTP date; 0 when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// A slot is one batch in flight's encoder and compressor.
type slot struct {
	enc  *encoder
	gz   *gzip.Writer
	zbuf bytes.Buffer
}

// body is the request body of a batch, valid until the slot's next body.
func (sl *slot) body(batch []*audit.Record, compress bool) ([]byte, error) {
	b := sl.enc.encode(batch, time.Now())
	if !compress {
		return b, nil
	}
	sl.zbuf.Reset()
	if sl.gz == nil {
		sl.gz = gzip.NewWriter(&sl.zbuf)
	} else {
		sl.gz.Reset(&sl.zbuf)
	}
	if _, err := sl.gz.Write(b); err != nil {
		return nil, err
	}
	if err := sl.gz.Close(); err != nil {
		return nil, err
	}
	return sl.zbuf.Bytes(), nil
}

// acknowledge moves the cursor past a batch the collector took; next is
// the time of the oldest record still unacknowledged (0 for none).
func (s *Shipper) acknowledge(batch []*audit.Record, next int64) {
	last := batch[len(batch)-1]
	if err := WriteCursor(s.opts.Home, Cursor{Seq: last.Seq, Hash: last.Hash, Time: last.Time}); err != nil {
		// The collector has the batch; not keeping the cursor means it
		// is sent again after a restart, which at-least-once allows.
		s.fail(fmt.Errorf("keeping the cursor: %w", err))
	}
	s.acked.Store(last.Seq)
	s.shipped.Add(uint64(len(batch)))
	s.pendingSince.Store(next)
	s.recovered(last)
}

// fail records a problem and warns once per kind of problem.
func (s *Shipper) fail(err error) {
	msg := s.scrub(err)
	s.mu.Lock()
	if s.st.Error == "" {
		s.st.ErrorSince = nowUTC()
	}
	s.st.Error = msg
	s.mu.Unlock()
	_ = s.saveStatus(true)
	s.warnOnce(errorClass(msg), fmt.Sprintf("audit shipping to %s failed: %s; the local log keeps every record and shipping resumes when the collector answers", s.url, msg))
}

// recovered clears a problem after an acknowledged batch.
func (s *Shipper) recovered(last *audit.Record) {
	s.mu.Lock()
	hadErr := s.st.Error != ""
	s.st.Error, s.st.ErrorSince = "", time.Time{}
	s.st.AckedTime = last.Time
	s.mu.Unlock()
	if hadErr {
		s.mu.Lock()
		s.warned = ""
		s.mu.Unlock()
		s.opts.Warn(fmt.Sprintf("audit shipping to %s resumed", s.url))
	}
	_ = s.saveStatus(hadErr)
}

func (s *Shipper) warnOnce(class, msg string) {
	s.mu.Lock()
	same := s.warned == class
	s.warned = class
	s.mu.Unlock()
	if !same {
		s.opts.Warn(msg)
	}
}

// errorClass groups messages that differ only in detail (a port, a
// count) so that a flapping collector does not warn per batch.
func errorClass(msg string) string {
	if i := strings.IndexAny(msg, "0123456789"); i > 0 {
		return msg[:i]
	}
	return msg
}

// setState records the state; a standby shipper keeps it to itself, so
// that the status file stays the shipping gateway's.
func (s *Shipper) setState(state string) {
	s.mu.Lock()
	s.st.State = state
	s.mu.Unlock()
	if !strings.HasPrefix(state, "standby") {
		_ = s.saveStatus(true)
	}
}

// scrub shortens an error for people and removes the endpoint's query and
// user info, which net/http's errors quote, and any header value.
func (s *Shipper) scrub(err error) string {
	msg := err.Error()
	if full := s.opts.Config.LogsEndpoint + s.opts.Config.Endpoint; full != "" {
		if u, perr := s.opts.Config.LogsURL(); perr == nil {
			msg = strings.ReplaceAll(msg, u.String(), s.url)
		}
	}
	for _, v := range s.opts.Config.Headers {
		if v != "" {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return msg
}

// A Cursor is the last record the collector acknowledged.
type Cursor struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
}

func cursorPath(home string) string { return filepath.Join(Dir(home), "cursor") }

// ReadCursor reads the persisted cursor; none is seq 0 (ship from the
// start of the log).
func ReadCursor(home string) (Cursor, error) {
	var c Cursor
	b, err := os.ReadFile(cursorPath(home))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", cursorPath(home), err)
	}
	return c, nil
}

// WriteCursor replaces the cursor atomically. It is not fsync'd: a cursor
// lost to a power cut only means records are shipped again.
func WriteCursor(home string, c Cursor) error {
	b, _ := json.Marshal(c)
	return tfhome.WriteFile(cursorPath(home), append(b, '\n'), 0o600, false)
}
