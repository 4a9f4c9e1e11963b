package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// OTLPScope is the instrumentation scope of audit records shipped as
// OpenTelemetry log records (package otlp); ReadExport picks records by it.
const OTLPScope = "github.com/tameflare/tf/audit"

// MaxExportLine bounds one line of a collector export: a whole batch of
// records as OTLP JSON.
const MaxExportLine = 64 << 20

// reorderWindow is how many records each source holds to put records that
// arrived out of time order (a shipper's four batches in flight, batches of
// several machines interleaved in a collector's file) back in order;
// memory stays bounded by it.
const reorderWindow = 8192

// ScanSources calls fn for every record of the sources that passes f,
// merged in time order, each record once: records shipped more than once
// (OTLP shipping is at least once) are recognised by gateway, seq and
// hash. A source is a $TF_HOME or an audit log directory, or a file: the
// JSON lines a collector's file exporter writes (OTLP JSON, records of
// scope OTLPScope), or audit lines as in a log segment; plain or gzip
// (recognised by its first bytes, whatever its name).
//
// Within one source, records keep their order except that a window of
// reorderWindow records is sorted by time; sources are merged by time.
func ScanSources(ctx context.Context, sources []string, f Filter, fn func(*Record) error) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("scanning audit sources: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]*stream, len(sources))
	for i, src := range sources {
		read, err := sourceReader(src)
		if err != nil {
			return err
		}
		s := &stream{ch: make(chan *Record, 256), errc: make(chan error, 1)}
		streams[i] = s
		go func() {
			defer close(s.ch)
			win := &recHeap{}
			send := func(r *Record) error {
				select {
				case s.ch <- r:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			err := read(func(r *Record) error {
				if !f.Match(r) {
					return nil
				}
				heap.Push(win, r)
				if win.Len() > reorderWindow {
					return send(heap.Pop(win).(*Record))
				}
				return nil
			})
			for err == nil && win.Len() > 0 {
				err = send(heap.Pop(win).(*Record))
			}
			s.errc <- err
		}()
	}
	type key struct {
		gateway string
		seq     uint64
		hash    string
	}
	seen := map[key]struct{}{}
	merge := &streamHeap{}
	next := func(s *stream) error {
		r, ok := <-s.ch
		if !ok {
			return <-s.errc
		}
		s.head = r
		heap.Push(merge, s)
		return nil
	}
	for _, s := range streams {
		if err := next(s); err != nil {
			return err
		}
	}
	for merge.Len() > 0 {
		s := heap.Pop(merge).(*stream)
		r := s.head
		k := key{r.Gateway, r.Seq, r.Hash}
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			if err := fn(r); err != nil {
				return err
			}
		}
		if err := next(s); err != nil {
			return err
		}
	}
	return nil
}

type stream struct {
	ch   chan *Record
	errc chan error
	head *Record
}

// earlier orders records by time, then seq, then hash, so that the merge
// is deterministic.
func earlier(a, b *Record) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if a.Seq != b.Seq {
		return a.Seq < b.Seq
	}
	return a.Hash < b.Hash
}

type recHeap []*Record

func (h recHeap) Len() int           { return len(h) }
func (h recHeap) Less(i, j int) bool { return earlier(h[i], h[j]) }
func (h recHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *recHeap) Push(x any)        { *h = append(*h, x.(*Record)) }
func (h *recHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

type streamHeap []*stream

func (h streamHeap) Len() int           { return len(h) }
func (h streamHeap) Less(i, j int) bool { return earlier(h[i].head, h[j].head) }
func (h streamHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *streamHeap) Push(x any)        { *h = append(*h, x.(*stream)) }
func (h *streamHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// sourceReader returns what reads one source, after checking it exists
// and is of a kind tf reads.
func sourceReader(src string) (func(func(*Record) error) error, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("audit source: %w", err)
	}
	if fi.IsDir() {
		dir := src
		if segs, _ := listSegments(dir); len(segs) == 0 {
			if segs, _ := listSegments(Dir(src)); len(segs) > 0 {
				dir = Dir(src) // a $TF_HOME
			} else if _, err := os.Stat(filepath.Join(dir, headName)); err != nil {
				return nil, fmt.Errorf("audit source %s: not an audit log directory or $TF_HOME (no audit-*.jsonl segments)", src)
			}
		}
		return func(fn func(*Record) error) error { return walk(dir, fn) }, nil
	}
	return func(fn func(*Record) error) error {
		f, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("audit source: %w", err)
		}
		defer f.Close()
		return ReadExport(f, src, fn)
	}, nil
}

// ReadExport calls fn for each audit record in r: JSON lines, each either
// a collector file exporter's OTLP JSON (resourceLogs[].scopeLogs[]
// .logRecords[].body.stringValue, records of scope OTLPScope; other scopes
// are skipped) or an audit log line. Gzip input is recognised by its magic
// bytes. Every record's own hash and schema are checked; a bad line is an
// error naming name:line.
func ReadExport(r io.Reader, name string, fn func(*Record) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: reading gzip: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	var buf []byte
	for lineNo := 1; ; lineNo++ {
		line, err := readLongLine(br, &buf)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		if err := readExportLine(line, fn); err != nil {
			return fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
	}
}

// readLongLine reads one line (without its newline) of at most
// MaxExportLine bytes into *buf.
func readLongLine(br *bufio.Reader, buf *[]byte) ([]byte, error) {
	*buf = (*buf)[:0]
	for {
		chunk, err := br.ReadSlice('\n')
		*buf = append(*buf, chunk...)
		if len(*buf) > MaxExportLine {
			return nil, fmt.Errorf("line exceeds the %d byte limit", MaxExportLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(*buf, []byte{'\n'}), []byte{'\r'}), err
	}
}

// otlpExport is the part of an OTLP JSON logs export that holds tf's
// records.
type otlpExport struct {
	ResourceLogs *[]struct {
		ScopeLogs []struct {
			Scope struct {
				Name string `json:"name"`
			} `json:"scope"`
			LogRecords []struct {
				Body struct {
					StringValue *string `json:"stringValue"`
				} `json:"body"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

func readExportLine(line []byte, fn func(*Record) error) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	if bytes.HasPrefix(line, []byte(`{"schema_version":`)) {
		r, err := parseLine(bytes.Clone(line))
		if err != nil {
			return err
		}
		return fn(r)
	}
	var exp otlpExport
	if err := json.Unmarshal(line, &exp); err != nil {
		return fmt.Errorf("not an OTLP JSON export or audit record: %w", err)
	}
	if exp.ResourceLogs == nil {
		return errors.New("not an OTLP JSON logs export: no resourceLogs")
	}
	for i, rl := range *exp.ResourceLogs {
		for j, sl := range rl.ScopeLogs {
			if sl.Scope.Name != OTLPScope {
				continue
			}
			for k, lr := range sl.LogRecords {
				where := fmt.Sprintf("resourceLogs[%d].scopeLogs[%d].logRecords[%d]", i, j, k)
				if lr.Body.StringValue == nil {
					return fmt.Errorf("%s: the body is not a string", where)
				}
				r, err := parseLine([]byte(*lr.Body.StringValue))
				if err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				if err := fn(r); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
