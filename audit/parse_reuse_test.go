package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
)

// parseLineFresh is parseLine as it was before decoders were reused: a new
// json.Decoder per line, and data after the record found by reading on.
// The reusing parser must agree with it.
func parseLineFresh(line []byte) (*Record, error) {
	if len(line) > MaxRecordBytes {
		return nil, fmt.Errorf("line of %d bytes exceeds the %d byte limit", len(line), MaxRecordBytes)
	}
	if len(line) < suffixLen+2 || !bytes.HasSuffix(line, []byte(`"}`)) ||
		!bytes.Equal(line[len(line)-suffixLen:len(line)-suffixLen+len(hashKey)], hashKey) {
		return nil, errors.New("line does not end with a hash member")
	}
	want := line[len(line)-suffixLen+len(hashKey) : len(line)-2]
	if !isLowerHex(want) {
		return nil, errors.New("hash is not lower-case hex")
	}
	if got := canonicalHash(line[:len(line)-suffixLen]); !bytes.Equal(got, want) {
		return nil, errHash
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decoding record: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the record")
	}
	if r.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("schema_version %d is newer than this tf reads (1 to %d): upgrade tf to read this log", r.SchemaVersion, SchemaVersion)
	}
	if r.SchemaVersion < 1 {
		return nil, fmt.Errorf("unsupported schema_version %d", r.SchemaVersion)
	}
	if r.Seq == 0 {
		return nil, errors.New("record has no seq")
	}
	if len(r.Prev) != 64 || !isLowerHex([]byte(r.Prev)) {
		return nil, errors.New("prev is not a 64-digit hex hash")
	}
	if r.Hash != string(want) {
		return nil, errors.New("hash member is duplicated")
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	r.Line = line
	return &r, nil
}

// withHash returns prefix (a line without its hash member and closing
// brace) completed with its correct hash.
func withHash(prefix []byte) []byte {
	hashed := append(append(bytes.Clone(prefix), hashKey...), canonicalHash(prefix)...)
	return append(hashed, '"', '}')
}

// FuzzParseLineReuse: one parser reading a line between two valid ones
// reads all three as parsers of their own would, whatever the middle line
// holds (an error, data after the record, a record cut short).
func FuzzParseLineReuse(f *testing.F) {
	valid := validLines(f, false)
	var good [][]byte
	for _, line := range valid {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) >= suffixLen {
			good = append(good, line)
			f.Add(line[:len(line)-suffixLen])
		}
	}
	if len(good) < 2 {
		f.Fatal("want at least two valid lines")
	}
	f.Add([]byte(`{"schema_version":1,"seq":1} {"x":1`))
	f.Add([]byte(`{"schema_version":1,"seq":1,"time":"2026-01-01T00:00:00Z","kind":"event","event":"e","prev":"` + ZeroHash + `"}{`))
	f.Add([]byte(`{"schema_version":1,"seq":1,"unknown":true`))
	f.Fuzz(func(t *testing.T, prefix []byte) {
		p := &lineParser{sha: sha256.New()}
		for i, line := range [][]byte{good[0], withHash(bytes.TrimSuffix(prefix, []byte("}"))), prefix, good[1]} {
			r, err := p.parse(line)
			fr, ferr := parseLineFresh(line)
			if (err == nil) != (ferr == nil) || err != nil && err.Error() != ferr.Error() {
				t.Fatalf("line %d %q: reused parser says %v, fresh one %v", i, line, err, ferr)
			}
			if err == nil && !reflect.DeepEqual(r, fr) {
				t.Fatalf("line %d %q: reused parser reads %+v, fresh one %+v", i, line, r, fr)
			}
		}
	})
}
