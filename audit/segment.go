package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Dir returns the audit log directory inside tf's state directory.
func Dir(tfHome string) string { return filepath.Join(tfHome, "audit") }

const (
	headName = "head"
	lockName = "lock"
	// headSlot is the size of one of the two head slots; a torn write of
	// one slot leaves the other intact.
	headSlot = 256
)

// segmentName returns the file name of segment n (uncompressed).
func segmentName(n uint64) string { return fmt.Sprintf("audit-%06d.jsonl", n) }

// segment is one segment number and the files present for it.
type segment struct {
	num   uint64
	plain bool // audit-N.jsonl exists
	gz    bool // audit-N.jsonl.gz exists
}

func (s segment) name() string {
	if s.plain {
		return segmentName(s.num)
	}
	return segmentName(s.num) + ".gz"
}

// listSegments returns the segments in dir in order. Unknown files are
// ignored; a missing dir is an empty log.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing audit segments: %w", err)
	}
	byNum := map[uint64]*segment{}
	for _, e := range ents {
		name := e.Name()
		gz := strings.HasSuffix(name, ".jsonl.gz")
		if !strings.HasPrefix(name, "audit-") || !(gz || strings.HasSuffix(name, ".jsonl")) {
			continue
		}
		digits := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(name, "audit-"), ".gz"), ".jsonl")
		n, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || n == 0 || len(digits) < 6 {
			continue
		}
		s := byNum[n]
		if s == nil {
			s = &segment{num: n}
			byNum[n] = s
		}
		if gz {
			s.gz = true
		} else {
			s.plain = true
		}
	}
	out := make([]segment, 0, len(byNum))
	for _, s := range byNum {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].num < out[j].num })
	return out, nil
}

// openSegment opens a segment for reading, plain or gzip. A plain file can
// vanish while a writer compresses it, so the compressed one is the
// fallback.
func openSegment(dir string, s segment) (io.ReadCloser, error) {
	if s.plain {
		f, err := os.Open(filepath.Join(dir, segmentName(s.num)))
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("opening audit segment: %w", err)
		}
	}
	f, err := os.Open(filepath.Join(dir, segmentName(s.num)+".gz"))
	if err != nil {
		return nil, fmt.Errorf("opening audit segment: %w", err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading compressed audit segment %s: %w", segmentName(s.num)+".gz", err)
	}
	return gzReadCloser{zr, f}, nil
}

type gzReadCloser struct {
	*gzip.Reader
	f *os.File
}

func (g gzReadCloser) Close() error {
	err := g.Reader.Close()
	return errors.Join(err, g.f.Close())
}

// lineReader reads newline-terminated lines of bounded length.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 16<<10)}
}

// next returns the next line without its newline, whether it was complete
// (ended with a newline) and whether it exceeded MaxRecordBytes (then its
// content is cut). It returns io.EOF at the end. The line is valid until
// the next call.
func (lr *lineReader) next() (line []byte, complete, tooLong bool, err error) {
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if len(lr.buf)+len(chunk) <= MaxRecordBytes+1 {
			lr.buf = append(lr.buf, chunk...)
		} else {
			tooLong = true
		}
		switch {
		case err == nil:
			if tooLong {
				return lr.buf, true, true, nil
			}
			return lr.buf[:len(lr.buf)-1], true, false, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(lr.buf) == 0 && !tooLong {
				return nil, false, false, io.EOF
			}
			return lr.buf, false, tooLong, nil
		default:
			return nil, false, false, err
		}
	}
}

// head is the last acknowledged position of the log: the seq and line
// hash of the last record and where the next one goes.
type head struct {
	Seq    uint64
	Seg    uint64
	Off    int64
	Hash   [32]byte // SHA-256 of the last line; ZeroHash before the first
	slot   int      // which slot held it when read
	exists bool
}

// sameAs reports whether h and o name the same position.
func (h head) sameAs(o head) bool {
	return h.Seq == o.Seq && h.Seg == o.Seg && h.Off == o.Off && h.Hash == o.Hash
}

func (h head) String() string {
	return fmt.Sprintf("seq %d in %s at offset %d", h.Seq, segmentName(h.Seg), h.Off)
}

func (h head) encode() []byte {
	fields := fmt.Sprintf("tfhead1 %d %d %d %s", h.Seq, h.Seg, h.Off, hex.EncodeToString(h.Hash[:]))
	b := make([]byte, headSlot)
	copy(b, fmt.Sprintf("%s %08x\n", fields, crc32.ChecksumIEEE([]byte(fields))))
	return b
}

func decodeHeadSlot(b []byte) (head, bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return head{}, false
	}
	parts := strings.Fields(string(b[:i]))
	if len(parts) != 6 || parts[0] != "tfhead1" {
		return head{}, false
	}
	fields := strings.Join(parts[:5], " ")
	if fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(fields))) != parts[5] {
		return head{}, false
	}
	var h head
	var err1, err2, err3 error
	h.Seq, err1 = strconv.ParseUint(parts[1], 10, 64)
	h.Seg, err2 = strconv.ParseUint(parts[2], 10, 64)
	h.Off, err3 = strconv.ParseInt(parts[3], 10, 64)
	hb, err4 := hex.DecodeString(parts[4])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || len(hb) != 32 || h.Seg == 0 || h.Off < 0 {
		return head{}, false
	}
	copy(h.Hash[:], hb)
	h.exists = true
	return h, true
}

// errNoHead is returned by readHead when the head file does not exist.
var errNoHead = errors.New("audit head file is missing")

// readHead reads the newer valid slot of the head file.
func readHead(dir string) (head, error) {
	b, err := os.ReadFile(filepath.Join(dir, headName))
	if errors.Is(err, fs.ErrNotExist) {
		return head{}, errNoHead
	}
	if err != nil {
		return head{}, fmt.Errorf("reading audit head: %w", err)
	}
	return parseHead(b)
}

func parseHead(b []byte) (head, error) {
	best, found := head{}, false
	for slot := 0; slot < 2 && (slot+1)*headSlot <= len(b); slot++ {
		h, ok := decodeHeadSlot(b[slot*headSlot : (slot+1)*headSlot])
		if ok && (!found || h.Seq > best.Seq) {
			h.slot = slot
			best, found = h, true
		}
	}
	if !found {
		return head{}, errors.New("audit head file is corrupt: no valid slot")
	}
	return best, nil
}

// syncDir makes a directory entry change durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
