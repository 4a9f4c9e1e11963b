package connectors

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// pkt-line framing of the git protocol: four hex digits give the length of
// the line including themselves; 0000 is a flush, 0001 a delimiter and 0002
// a response end (protocol v2).
const (
	pktMaxLen = 65520 // LARGE_PACKET_MAX: the longest pkt-line, header included
	pktFlush  = -1
	pktDelim  = -2
	pktEnd    = -3
)

// ErrPktTruncated reports pkt-lines cut off by the end of the inspected
// prefix.
var ErrPktTruncated = errors.New("pkt-line stream ends before its flush packet")

// pktReader reads pkt-lines from a byte slice.
type pktReader struct {
	buf []byte
	off int
}

// next returns the payload of the next pkt-line, or a negative kind for the
// special packets. Payloads alias the buffer.
func (p *pktReader) next() ([]byte, int, error) {
	if len(p.buf)-p.off < 4 {
		return nil, 0, fmt.Errorf("at byte %d: %w", p.off, ErrPktTruncated)
	}
	n, ok := parseHex4(p.buf[p.off : p.off+4])
	if !ok {
		return nil, 0, fmt.Errorf("at byte %d: garbled pkt-line length %q", p.off, printable(p.buf[p.off:p.off+4]))
	}
	switch n {
	case 0:
		p.off += 4
		return nil, pktFlush, nil
	case 1:
		p.off += 4
		return nil, pktDelim, nil
	case 2:
		p.off += 4
		return nil, pktEnd, nil
	case 3:
		return nil, 0, fmt.Errorf("at byte %d: invalid pkt-line length 3", p.off)
	}
	if n > pktMaxLen {
		return nil, 0, fmt.Errorf("at byte %d: pkt-line length %d is over the limit of %d", p.off, n, pktMaxLen)
	}
	if len(p.buf)-p.off < n {
		return nil, 0, fmt.Errorf("at byte %d: pkt-line of %d bytes: %w", p.off, n, ErrPktTruncated)
	}
	payload := p.buf[p.off+4 : p.off+n]
	p.off += n
	return payload, n, nil
}

func parseHex4(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int(d)
	}
	return n, true
}

func printable(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			s.WriteByte(c)
		} else {
			fmt.Fprintf(&s, "\\x%02x", c)
		}
	}
	return s.String()
}

// A RefUpdate is one command of a push: set ref from Old to New.
type RefUpdate struct {
	Old, New, Ref string
}

// Create reports whether the update creates the ref.
func (u RefUpdate) Create() bool { return isZeroOID(u.Old) }

// Delete reports whether the update deletes the ref.
func (u RefUpdate) Delete() bool { return isZeroOID(u.New) }

// A PushRequest is the command section of a git-receive-pack request body.
type PushRequest struct {
	Updates      []RefUpdate
	Capabilities []string
	Shallow      []string
	Options      []string // push options (git push -o), when the client sent them
}

// HasCapability reports whether the client asked for capability name.
func (p *PushRequest) HasCapability(name string) bool {
	for _, c := range p.Capabilities {
		if c == name || strings.HasPrefix(c, name+"=") {
			return true
		}
	}
	return false
}

// maxPushCommands bounds the ref updates of one push: a push of more refs
// than this is refused rather than turned into that many actions.
const maxPushCommands = 10000

// ParsePushRequest parses the command list at the start of a
// git-receive-pack request body: optional shallow lines, then
// "old new ref\0capabilities" and further "old new ref" lines up to a flush
// packet, then push options up to a second flush when the push-options
// capability was asked for. The pack that follows is not read. body may be
// a prefix of the request body; a command list that does not fit in it is
// an error wrapping ErrPktTruncated.
func ParsePushRequest(body []byte) (*PushRequest, error) {
	p := &pktReader{buf: body}
	req := &PushRequest{}
	first := true
	for {
		line, kind, err := p.next()
		if err != nil {
			return nil, fmt.Errorf("reading push commands: %w", err)
		}
		if kind == pktFlush {
			break
		}
		if kind < 0 {
			return nil, fmt.Errorf("reading push commands: unexpected special packet %04d", -kind-1)
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if oid, ok := bytes.CutPrefix(line, []byte("shallow ")); ok {
			if !first || !validOID(string(oid)) {
				return nil, fmt.Errorf("reading push commands: bad shallow line %q", printable(line))
			}
			req.Shallow = append(req.Shallow, string(oid))
			continue
		}
		if bytes.HasPrefix(line, []byte("push-cert")) {
			return nil, errors.New("reading push commands: signed pushes (push certificates) are not supported")
		}
		if first {
			cmd, caps, _ := bytes.Cut(line, []byte{0})
			line = cmd
			req.Capabilities = strings.Fields(string(caps))
			first = false
		} else if bytes.IndexByte(line, 0) >= 0 {
			return nil, fmt.Errorf("reading push commands: capabilities after the first command in %q", printable(line))
		}
		u, err := parseCommand(line)
		if err != nil {
			return nil, err
		}
		if len(req.Updates) == maxPushCommands {
			return nil, fmt.Errorf("reading push commands: more than %d refs in one push", maxPushCommands)
		}
		req.Updates = append(req.Updates, u)
	}
	if len(req.Updates) == 0 {
		if len(req.Shallow) > 0 {
			return nil, errors.New("reading push commands: shallow lines but no command")
		}
		return nil, errors.New("reading push commands: no command before the flush packet")
	}
	if req.HasCapability("push-options") {
		for {
			line, kind, err := p.next()
			if err != nil {
				return nil, fmt.Errorf("reading push options: %w", err)
			}
			if kind == pktFlush {
				break
			}
			if kind < 0 {
				return nil, fmt.Errorf("reading push options: unexpected special packet %04d", -kind-1)
			}
			req.Options = append(req.Options, string(bytes.TrimSuffix(line, []byte("\n"))))
		}
	}
	return req, nil
}

func parseCommand(line []byte) (RefUpdate, error) {
	f := strings.SplitN(string(line), " ", 3)
	if len(f) != 3 || !validOID(f[0]) || !validOID(f[1]) || len(f[0]) != len(f[1]) {
		return RefUpdate{}, fmt.Errorf("reading push commands: garbled command %q", printable(line))
	}
	if !validRefName(f[2]) {
		return RefUpdate{}, fmt.Errorf("reading push commands: bad ref name %q", printable([]byte(f[2])))
	}
	return RefUpdate{Old: f[0], New: f[1], Ref: f[2]}, nil
}

// validOID accepts SHA-1 and SHA-256 object names in lower-case hex.
func validOID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isZeroOID(s string) bool {
	return s != "" && strings.Trim(s, "0") == ""
}

// validRefName is a light form of git check-ref-format: what git itself
// refuses cannot name a ref, and a space or control character here means the
// line was not what it claims to be.
func validRefName(s string) bool {
	if s == "" || len(s) > 4096 || !strings.HasPrefix(s, "refs/") || strings.HasSuffix(s, "/") || strings.HasSuffix(s, ".lock") || strings.Contains(s, "..") || strings.Contains(s, "//") || strings.Contains(s, "@{") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == ' ' || c == '~' || c == '^' || c == ':' || c == '?' || c == '*' || c == '[' || c == '\\' {
			return false
		}
	}
	return true
}

// appendPkt appends payload as one pkt-line.
func appendPkt(dst []byte, payload []byte) []byte {
	return append(fmt.Appendf(dst, "%04x", len(payload)+4), payload...)
}
