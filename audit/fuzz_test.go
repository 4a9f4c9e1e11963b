package audit

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// validLines returns real record lines to seed the fuzzers: three
// decisions and an event, or with short set only two small events, which
// keep the minimization of inputs quick.
func validLines(f *testing.F, short bool) [][]byte {
	dir := f.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		f.Fatal(err)
	}
	ctx := testCtx(f)
	for i := range 3 {
		if short {
			break
		}
		if err := l.Append(ctx, decision(i)); err != nil {
			f.Fatal(err)
		}
	}
	for range 2 {
		if err := l.Event(ctx, "gw", EventPolicyApplied, map[string]any{"n": 1}); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		f.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))
}

// FuzzParseLine: the line parser never panics, and whatever it accepts
// carries a hash that matches its canonical bytes. Each input is also
// parsed with a correct hash appended, so that the JSON and schema checks
// behind the hash check get fuzzed too.
func FuzzParseLine(f *testing.F) {
	for _, line := range validLines(f, false) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) < suffixLen {
			continue // the empty rest after the last newline
		}
		f.Add(line)
		f.Add(line[:len(line)-suffixLen]) // the canonical prefix
	}
	f.Add([]byte(`{"hash":"` + ZeroHash + `"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		check := func(line []byte) {
			r, err := parseLine(line)
			if err != nil {
				return
			}
			if got := canonicalHash(line[:len(line)-suffixLen]); string(got) != r.Hash {
				t.Fatalf("accepted a line whose hash does not match")
			}
			if r.validate() != nil || r.SchemaVersion != SchemaVersion {
				t.Fatalf("accepted an invalid record")
			}
		}
		check(line)
		prefix := bytes.TrimSuffix(line, []byte("}"))
		hashed := append(append(bytes.Clone(prefix), hashKey...), canonicalHash(prefix)...)
		check(append(hashed, '"', '}'))
	})
}

// FuzzVerifyScan: verify and the segment reader never panic on arbitrary
// segment and head bytes, and a segment verify calls clean reads fully.
// It runs on in-memory segments: file I/O per input made minimization
// take the whole fuzz time.
func FuzzVerifyScan(f *testing.F) {
	lines := validLines(f, true)
	f.Add(bytes.Join(lines[:2], nil), []byte{})
	f.Add(lines[0], head{Seq: 1, Seg: 1, Hash: lineHash(bytes.TrimSuffix(lines[0], []byte("\n")))}.encode())
	f.Add([]byte("\n\n{\n"), []byte("tfhead1 1 1 0 00 0\n"))
	segs := []segment{{num: 1, plain: true}}
	f.Fuzz(func(t *testing.T, seg, headBytes []byte) {
		h, herr := head{}, errNoHead
		if len(headBytes) > 0 {
			h, herr = parseHead(headBytes)
		}
		open := func(segment) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(seg)), nil }
		rep := verify(segs, open, h, herr)
		n := 0
		scanErr := walkReader(bytes.NewReader(seg), segmentName(1), true, func(*Record) error { n++; return nil })
		if rep.OK() && (scanErr != nil || n != rep.Records) {
			t.Fatalf("verify ok with %d records, scan read %d: %v", rep.Records, n, scanErr)
		}
	})
}

// FuzzParseHead: the head parser never panics and round-trips what it
// accepts.
func FuzzParseHead(f *testing.F) {
	f.Add(head{Seq: 7, Seg: 2, Off: 99}.encode())
	f.Add(append(head{Seq: 1, Seg: 1}.encode(), head{Seq: 2, Seg: 1, Off: 5}.encode()...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHead(b)
		if err != nil {
			return
		}
		again, err := parseHead(h.encode())
		if err != nil || again.Seq != h.Seq || again.Seg != h.Seg || again.Off != h.Off || again.Hash != h.Hash {
			t.Fatalf("head did not round-trip: %+v vs %+v (%v)", h, again, err)
		}
	})
}
