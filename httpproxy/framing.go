package httpproxy

import (
	"bytes"
	"net"
	"sync"
)

// Go's HTTP server resolves some ambiguous request framing instead of
// refusing it: with both Content-Length and Transfer-Encoding it drops the
// Content-Length, and repeated identical Content-Length headers are merged.
// Neither leaves a trace in the parsed request. A governing proxy refuses
// such requests outright, so framingConn watches the raw bytes the server
// reads, follows HTTP/1.1 message boundaries, and records for every request
// head whether its framing is ambiguous. The handler takes one record per
// request, in order.

// framingConn wraps a client connection and tracks the framing of the
// requests read from it.
type framingConn struct {
	net.Conn
	target *authority // CONNECT authority for intercepted tunnels, nil on the listener side
	raw    net.Conn   // the client connection under the TLS of a tunnel
	// agent is who the proxy credentials of the request being served
	// name (Config.Authenticate): set per request on the listener side,
	// inherited by a tunnel from its CONNECT.
	agent string

	mu sync.Mutex
	t  framingTracker

	// release, if set, gives back the connection's place under the
	// per-client cap when it closes.
	release func()
}

func (c *framingConn) Close() error {
	if c.release != nil {
		c.release()
	}
	return c.Conn.Close()
}

func newFramingConn(c net.Conn, maxHead int, target *authority) *framingConn {
	return &framingConn{Conn: c, target: target, t: framingTracker{maxHead: maxHead}}
}

func (c *framingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		c.t.feed(b[:n])
		c.mu.Unlock()
	}
	return n, err
}

// nextHead returns the framing verdict of the next request head read from
// the connection: "" when the framing is unambiguous, else the reason. ok is
// false when the tracker has no record (it lost track), which callers treat
// as a refusal.
func (c *framingConn) nextHead() (reason string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.pop()
}

type framingState uint8

const (
	stHead      framingState = iota // reading a request head
	stBody                          // Content-Length body
	stChunkSize                     // chunk-size line
	stChunkData                     // chunk data
	stChunkEnd                      // CRLF after chunk data
	stTrailer                       // trailer section of a chunked body
	stRaw                           // no longer HTTP/1.1 messages (CONNECT, upgrade, refused or lost)
)

const maxChunkLine = 4096

// framingTracker follows HTTP/1.1 request boundaries in a byte stream. It
// need not validate what Go's server validates anyway: when it cannot follow
// the stream it stops (stRaw) and later requests find no record.
type framingTracker struct {
	state     framingState
	maxHead   int
	line      []byte // current line, bounded
	headBytes int
	remaining uint64

	// The head being read.
	sawRequestLine bool
	connect        bool
	http10         bool
	upgrade        bool
	hostCount      int
	clCount        int
	clValue        []byte
	clBad          bool
	teCount        int
	teChunked      bool
	lastFraming    bool // the previous header line was Content-Length or Transfer-Encoding
	foldedFraming  bool

	queue []string
}

func (t *framingTracker) pop() (string, bool) {
	if len(t.queue) == 0 {
		return "", false
	}
	r := t.queue[0]
	t.queue = t.queue[1:]
	if len(t.queue) == 0 {
		t.queue = t.queue[:0:0] // release the backing array of a drained queue
	}
	return r, true
}

func (t *framingTracker) feed(b []byte) {
	for len(b) > 0 {
		switch t.state {
		case stRaw:
			return
		case stBody, stChunkData:
			n := uint64(len(b))
			if n > t.remaining {
				n = t.remaining
			}
			t.remaining -= n
			b = b[n:]
			if t.remaining == 0 {
				if t.state == stBody {
					t.state = stHead
				} else {
					t.state = stChunkEnd
				}
			}
		default:
			i := bytes.IndexByte(b, '\n')
			chunk := b
			if i >= 0 {
				chunk = b[:i]
				b = b[i+1:]
			} else {
				b = nil
			}
			if !t.appendLine(chunk, i >= 0) {
				t.state = stRaw
				return
			}
			if i >= 0 {
				line := bytes.TrimSuffix(t.line, []byte{'\r'})
				t.line = t.line[:0]
				t.endLine(line)
			}
		}
	}
}

// appendLine adds part of a line (and its end, when eol), enforcing the head
// and line bounds.
func (t *framingTracker) appendLine(p []byte, eol bool) bool {
	limit := maxChunkLine
	if t.state == stHead {
		t.headBytes += len(p)
		if eol {
			t.headBytes++
		}
		if t.headBytes > t.maxHead {
			return false // Go's server answers 431 and closes
		}
		limit = t.maxHead
	}
	if len(t.line)+len(p) > limit {
		return false
	}
	t.line = append(t.line, p...)
	return true
}

func (t *framingTracker) endLine(line []byte) {
	switch t.state {
	case stHead:
		t.headLine(line)
	case stChunkSize:
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseHex(bytes.Trim(line, " \t"))
		switch {
		case !ok:
			t.state = stRaw
		case size == 0:
			t.state = stTrailer
		default:
			t.remaining = size
			t.state = stChunkData
		}
	case stChunkEnd:
		if len(line) != 0 {
			t.state = stRaw
			return
		}
		t.state = stChunkSize
	case stTrailer:
		if len(line) == 0 {
			t.state = stHead
		}
	}
}

func (t *framingTracker) headLine(line []byte) {
	if !t.sawRequestLine {
		if len(line) == 0 {
			return // empty lines before a request line are skipped
		}
		t.sawRequestLine = true
		method, rest, _ := bytes.Cut(line, []byte{' '})
		t.connect = string(method) == "CONNECT"
		if i := bytes.LastIndexByte(rest, ' '); i >= 0 {
			t.http10 = string(rest[i+1:]) == "HTTP/1.0"
		}
		return
	}
	if len(line) == 0 {
		t.endHead()
		return
	}
	if line[0] == ' ' || line[0] == '\t' {
		if t.lastFraming {
			t.foldedFraming = true
		}
		return
	}
	name, value, _ := bytes.Cut(line, []byte{':'})
	value = bytes.Trim(value, " \t")
	t.lastFraming = false
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		t.lastFraming = true
		t.clCount++
		if t.clCount == 1 {
			t.clValue = append(t.clValue[:0], value...)
		}
		if bytes.IndexByte(value, ',') >= 0 {
			t.clBad = true
		}
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		t.lastFraming = true
		t.teCount++
		t.teChunked = bytes.EqualFold(value, []byte("chunked"))
	case bytes.EqualFold(name, []byte("Upgrade")):
		t.upgrade = true
	case bytes.EqualFold(name, []byte("Host")):
		t.hostCount++
	}
}

func (t *framingTracker) endHead() {
	reason := ""
	switch {
	case t.teCount > 0 && t.clCount > 0:
		reason = "request has both Content-Length and Transfer-Encoding"
	case t.teCount > 1:
		reason = "request has more than one Transfer-Encoding header"
	case t.clCount > 1 || t.clBad:
		reason = "request has more than one Content-Length"
	case t.foldedFraming:
		reason = "request folds a Content-Length or Transfer-Encoding header"
	case t.teCount > 0 && t.http10:
		reason = "HTTP/1.0 request with Transfer-Encoding"
	case t.hostCount > 1:
		reason = "request has more than one Host header"
	}
	t.queue = append(t.queue, reason)

	next := stHead
	switch {
	case reason != "" || t.connect || t.upgrade:
		// A refused request closes the connection; after CONNECT or an
		// upgrade the bytes are no longer HTTP/1.1 requests.
		next = stRaw
	case t.teCount == 1:
		if t.teChunked {
			next = stChunkSize
		} else {
			next = stRaw // Go's server refuses other encodings and closes
		}
	case t.clCount == 1:
		n, ok := parseDecimal(t.clValue)
		switch {
		case !ok:
			next = stRaw // Go's server refuses it and closes
		case n > 0:
			t.remaining = n
			next = stBody
		}
	}
	*t = framingTracker{state: next, maxHead: t.maxHead, line: t.line, remaining: t.remaining, clValue: t.clValue[:0], queue: t.queue}
}

func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
