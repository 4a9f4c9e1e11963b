package mcp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxEventBytes bounds one server-sent event that tf has to inspect (the
// answer to tools/list); events that pass through uninspected are not
// bounded.
const MaxEventBytes = 16 << 20

// ErrEventTooLarge reports an event longer than the scanner's limit.
var ErrEventTooLarge = errors.New("server-sent event too large to inspect")

// SSEScanner splits a text/event-stream into events, each returned with its
// bytes as they came (lines and the blank line that ends it), so that an
// event tf does not change is passed on exactly. Lines end in LF, CRLF or
// CR, as the HTML standard allows.
type SSEScanner struct {
	r    io.Reader
	buf  []byte
	scan int // bytes of buf already scanned for an event end
	line int // start of the current line in buf
	max  int
	err  error
}

// NewSSEScanner returns a scanner of r whose events may be at most max
// bytes (0 means MaxEventBytes).
func NewSSEScanner(r io.Reader, max int) *SSEScanner {
	if max <= 0 {
		max = MaxEventBytes
	}
	return &SSEScanner{r: r, max: max}
}

// Next returns the next event's bytes, valid until the next call. At the
// end of the stream it returns what is left (an unfinished event, passed
// on as it is) and then io.EOF.
func (s *SSEScanner) Next() ([]byte, error) {
	for {
		if n, ok := s.eventEnd(); ok {
			ev := s.buf[:n:n]
			rest := s.buf[n:]
			// The next event starts at the front of a fresh slice so that
			// ev stays intact until the caller is done with it.
			s.buf = append(make([]byte, 0, max(len(rest), 512)), rest...)
			s.scan, s.line = 0, 0
			return ev, nil
		}
		if s.err != nil {
			if len(s.buf) > 0 {
				ev := s.buf
				s.buf, s.scan, s.line = nil, 0, 0
				return ev, nil
			}
			return nil, s.err
		}
		if len(s.buf) >= s.max {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrEventTooLarge, s.max)
		}
		s.fill()
	}
}

// Buffered returns the bytes read from the stream and not yet returned as
// events, and forgets them.
func (s *SSEScanner) Buffered() []byte {
	b := s.buf
	s.buf, s.scan, s.line = nil, 0, 0
	return b
}

func (s *SSEScanner) fill() {
	if cap(s.buf)-len(s.buf) < 4096 {
		nb := make([]byte, len(s.buf), 2*cap(s.buf)+4096)
		copy(nb, s.buf)
		s.buf = nb
	}
	n, err := s.r.Read(s.buf[len(s.buf):min(cap(s.buf), len(s.buf)+s.max)])
	s.buf = s.buf[:len(s.buf)+n]
	if err != nil {
		s.err = err
	}
}

// eventEnd scans on from where it stopped for an empty line and returns
// the length of the event that ends with it.
func (s *SSEScanner) eventEnd() (int, bool) {
	b := s.buf
	for i := s.scan; i < len(b); i++ {
		c := b[i]
		if c != '\n' && c != '\r' {
			continue
		}
		next := i + 1
		if c == '\r' {
			if next == len(b) && s.err == nil {
				// A CR at the end of what was read may be the first half
				// of a CRLF.
				s.scan = i
				return 0, false
			}
			if next < len(b) && b[next] == '\n' {
				next++
			}
		}
		empty := i == s.line
		s.line = next
		if empty {
			return next, true
		}
		i = next - 1
	}
	s.scan = len(b)
	return 0, false
}

// Event is the parsed form of one event: its fields, the data lines
// joined with LF.
type Event struct {
	Event string
	ID    string
	Retry string
	Data  []byte
	// HasData reports a data field, even an empty one.
	HasData bool
}

// ParseEvent parses an event's bytes as the HTML standard says: a line
// "field: value" (one space after the colon dropped), a line starting with
// a colon a comment, a line without a colon a field with an empty value.
func ParseEvent(raw []byte) Event {
	var ev Event
	for len(raw) > 0 {
		i := bytes.IndexAny(raw, "\r\n")
		line := raw
		if i >= 0 {
			line = raw[:i]
			if raw[i] == '\r' && i+1 < len(raw) && raw[i+1] == '\n' {
				i++
			}
			raw = raw[i+1:]
		} else {
			raw = nil
		}
		if len(line) == 0 || line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if j := bytes.IndexByte(line, ':'); j >= 0 {
			field, value = line[:j], line[j+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if ev.HasData {
				ev.Data = append(ev.Data, '\n')
			}
			ev.Data = append(ev.Data, value...)
			ev.HasData = true
		case "event":
			ev.Event = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID = string(value)
			}
		case "retry":
			ev.Retry = string(value)
		}
	}
	return ev
}

// Encode writes ev back as an event. Data holding line breaks becomes
// several data lines.
func (ev Event) Encode() []byte {
	var b []byte
	if ev.Event != "" {
		b = append(append(append(b, "event: "...), ev.Event...), '\n')
	}
	if ev.ID != "" {
		b = append(append(append(b, "id: "...), ev.ID...), '\n')
	}
	if ev.Retry != "" {
		b = append(append(append(b, "retry: "...), ev.Retry...), '\n')
	}
	if ev.HasData {
		data := ev.Data
		for {
			i := bytes.IndexAny(data, "\r\n")
			if i < 0 {
				b = append(append(append(b, "data: "...), data...), '\n')
				break
			}
			b = append(append(append(b, "data: "...), data[:i]...), '\n')
			if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			data = data[i+1:]
		}
	}
	return append(b, '\n')
}
