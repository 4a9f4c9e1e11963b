package keyring

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// ErrSecretInResponse cuts a streamed response in which a known secret
// appeared: tf injects secrets so that the agent never holds one, and an
// upstream that echoes one back (a debugging endpoint, a misbehaving
// server) must not hand it over.
var ErrSecretInResponse = errors.New("the upstream response carries a secret tf injected, so the rest of it is withheld")

// RedactHeader replaces every known secret form in h's values with
// Redacted, in place, and reports how many values changed.
func (r *Redactor) RedactHeader(h http.Header) int {
	if r.rep.Load() == nil {
		return 0
	}
	n := 0
	for _, vs := range h {
		for i, v := range vs {
			if nv := r.Redact(v); nv != v {
				vs[i] = nv
				n++
			}
		}
	}
	return n
}

// RedactBytes returns b with every known secret form replaced with
// Redacted, and whether any was.
func (r *Redactor) RedactBytes(b []byte) ([]byte, bool) {
	if !r.mentionsBytes(b) {
		return b, false
	}
	return []byte(r.Redact(string(b))), true
}

func (r *Redactor) mentionsBytes(b []byte) bool {
	f := r.find.Load()
	return f != nil && f.contains(b)
}

// Guard returns body as a stream that ends with ErrSecretInResponse
// before any known secret form would pass: bytes are released as soon as
// no form can start in them (only a tail that begins a form waits for
// more), so nothing of a secret reaches the reader and a stream of events
// is not held up.
// found, if set, is called once when a secret is seen. A Redactor that
// knows no secret returns body as it is.
func (r *Redactor) Guard(body io.ReadCloser, found func()) io.ReadCloser {
	fs := r.forms.Load()
	if fs == nil || len(*fs) == 0 {
		return body
	}
	keep := 0
	pats := make([][]byte, len(*fs))
	for i, f := range *fs {
		pats[i] = []byte(f)
		keep = max(keep, len(f)-1)
	}
	return &guard{src: body, pats: pats, find: r.find.Load(), keep: keep, found: found}
}

type guard struct {
	src   io.ReadCloser
	pats  [][]byte
	find  *finder // the same forms, searched in one pass
	keep  int     // the longest form less one: how far back a form may start
	found func()

	buf  []byte // received, not yet returned; the first safe are checked
	safe int
	err  error
}

func (g *guard) Read(p []byte) (int, error) {
	for {
		if g.safe > 0 {
			n := copy(p, g.buf[:g.safe])
			g.buf = g.buf[n:]
			g.safe -= n
			return n, nil
		}
		if g.err != nil {
			return 0, g.err
		}
		if len(g.buf) == 0 {
			g.buf = nil // start afresh rather than grow a slid slice
		}
		start := len(g.buf)
		g.buf = append(g.buf, make([]byte, 32<<10)...)
		n, err := g.src.Read(g.buf[start:])
		g.buf = g.buf[:start+n]
		// A form may straddle the earlier tail and the new bytes: look
		// from where the tail begins.
		from := max(0, start-g.keep)
		if g.find.contains(g.buf[from:]) {
			g.buf, g.safe, g.err = nil, 0, ErrSecretInResponse
			if g.found != nil {
				g.found()
			}
			return 0, g.err
		}
		if err != nil {
			g.safe, g.err = len(g.buf), err
			continue
		}
		g.safe = len(g.buf) - g.held()
	}
}

// held is how many bytes at the end of buf could begin a form: only those
// wait for more, so that an event stream is not delayed by the guard.
func (g *guard) held() int {
	h := 0
	for _, pat := range g.pats {
		for k := min(len(pat)-1, len(g.buf)); k > h; k-- {
			if bytes.HasSuffix(g.buf, pat[:k]) {
				h = k
				break
			}
		}
	}
	return h
}

func (g *guard) Close() error { return g.src.Close() }
