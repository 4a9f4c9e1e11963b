package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// rehashV returns line with its schema_version set to v and its hash
// recomputed, as a tf writing that version would have stored it.
func rehashV(t *testing.T, line []byte, v string) []byte {
	t.Helper()
	out := bytes.Replace(line, []byte(`{"schema_version":2,`), []byte(`{"schema_version":`+v+`,`), 1)
	body := out[:len(out)-suffixLen]
	sum := sha256.Sum256(append(append([]byte{}, body...), '}'))
	return append(append([]byte{}, body...), `,"hash":"`+hex.EncodeToString(sum[:])+`"}`...)
}

// A log written by an older tf (schema_version 1) still reads; one written
// by a newer tf is refused with a message that says so, not as a corrupt
// line.
func TestSchemaVersions(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	if err := l.Append(testCtx(t), decision(1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	var line []byte
	if err := Scan(dir, Filter{}, func(r *Record) error { line = append([]byte{}, r.Line...); return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(line, []byte(`{"schema_version":2,`)) {
		t.Fatalf("written as %.40s", line)
	}
	if r, err := parseLine(rehashV(t, line, "1")); err != nil || r.SchemaVersion != 1 {
		t.Fatalf("a version 1 record: %v", err)
	}
	_, err := parseLine(rehashV(t, line, "3"))
	if err == nil || !strings.Contains(err.Error(), "newer than this tf reads") {
		t.Fatalf("a version 3 record: %v", err)
	}
	if _, err := parseLine(rehashV(t, line, "0")); err == nil {
		t.Fatal("a version 0 record was read")
	}
}
