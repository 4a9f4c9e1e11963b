package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// tamperLog writes 40 decisions into segments of ~4 KiB and returns the
// directory; each case then damages it like an attacker or a bad disk.
func tamperLog(t *testing.T) string {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 4 << 10})
	appendDecisions(t, l, 0, 40)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(dir)
	if err != nil || len(segs) < 3 {
		t.Fatalf("want at least 3 segments, got %d (%v)", len(segs), err)
	}
	return dir
}

// rehash recomputes a line's own hash after an edit, as a careful
// attacker would; only the chain can then tell.
func rehash(line []byte) []byte {
	body := bytes.TrimSuffix(line, []byte("\n"))
	prefix := body[:len(body)-suffixLen]
	out := append([]byte{}, prefix...)
	out = append(out, hashKey...)
	out = append(out, canonicalHash(prefix)...)
	return append(out, '"', '}', '\n')
}

func TestVerifyTampering(t *testing.T) {
	type where struct {
		kind ProblemKind
		seg  uint64 // 0: not checked
		line int    // 0: not checked
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []where
	}{
		{
			name: "edit a byte of a params value",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 2))
				lines[1] = bytes.Replace(lines[1], []byte(`"branch":"branch-00`), []byte(`"branch":"branch-X0`), 1)
				writeSeg(t, segPath(dir, 2), lines)
			},
			want: []where{{ProblemHash, 2, 2}},
		},
		{
			name: "edit with a recomputed hash",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 1))
				lines[2] = rehash(bytes.Replace(lines[2], []byte(`"decision":"require_approval"`), []byte(`"decision":"allow"`), 1))
				writeSeg(t, segPath(dir, 1), lines)
			},
			want: []where{{ProblemChain, 1, 4}},
		},
		{
			name: "delete a middle line",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 2))
				writeSeg(t, segPath(dir, 2), append(lines[:2:2], lines[3:]...))
			},
			want: []where{{ProblemSeq, 2, 3}},
		},
		{
			name: "swap two lines",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 1))
				lines[3], lines[4] = lines[4], lines[3]
				writeSeg(t, segPath(dir, 1), lines)
			},
			want: []where{{ProblemSeq, 1, 4}, {ProblemSeq, 1, 5}},
		},
		{
			name: "truncate trailing records",
			damage: func(t *testing.T, dir string) {
				last := lastSeg(t, dir)
				lines := segLines(t, segPath(dir, last))
				writeSeg(t, segPath(dir, last), lines[:len(lines)-2])
			},
			want: []where{{ProblemTruncated, 0, 0}},
		},
		{
			name: "torn last line",
			damage: func(t *testing.T, dir string) {
				last := lastSeg(t, dir)
				lines := segLines(t, segPath(dir, last))
				n := len(lines)
				// The crash case: a line past the head that never finished.
				torn := lines[n-1][:len(lines[n-1])/2]
				writeSeg(t, segPath(dir, last), append(lines, torn))
			},
			want: []where{{ProblemTorn, 0, 0}},
		},
		{
			name: "last acknowledged line cut in half",
			damage: func(t *testing.T, dir string) {
				last := lastSeg(t, dir)
				lines := segLines(t, segPath(dir, last))
				n := len(lines)
				lines[n-1] = lines[n-1][:len(lines[n-1])/2]
				writeSeg(t, segPath(dir, last), lines)
			},
			want: []where{{ProblemTorn, 0, 0}, {ProblemTruncated, 0, 0}},
		},
		{
			name: "remove the last line of a segment (across the boundary)",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 1))
				writeSeg(t, segPath(dir, 1), lines[:len(lines)-1])
			},
			want: []where{{ProblemSeq, 2, 1}},
		},
		{
			name: "edit the first record of a segment with a recomputed hash",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 2))
				lines[0] = rehash(bytes.Replace(lines[0], []byte(`"owner":"acme"`), []byte(`"owner":"evil"`), 1))
				writeSeg(t, segPath(dir, 2), lines)
			},
			want: []where{{ProblemChain, 2, 2}},
		},
		{
			name: "forge prev of a segment's first record",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 3))
				i := bytes.Index(lines[0], prevKey) + len(prevKey)
				fake := sha256.Sum256([]byte("other"))
				copy(lines[0][i:], hex.EncodeToString(fake[:]))
				lines[0] = rehash(lines[0])
				writeSeg(t, segPath(dir, 3), lines)
			},
			want: []where{{ProblemChain, 3, 1}},
		},
		{
			name: "delete a middle segment",
			damage: func(t *testing.T, dir string) {
				if err := os.Remove(segPath(dir, 2)); err != nil {
					t.Fatal(err)
				}
			},
			want: []where{{ProblemSegment, 3, 0}, {ProblemSeq, 3, 1}},
		},
		{
			name: "head removed",
			damage: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, headName)); err != nil {
					t.Fatal(err)
				}
			},
			want: []where{{ProblemHead, 0, 0}},
		},
		{
			name: "not JSON",
			damage: func(t *testing.T, dir string) {
				lines := segLines(t, segPath(dir, 1))
				lines[1] = []byte("hello\n")
				writeSeg(t, segPath(dir, 1), lines)
			},
			want: []where{{ProblemMalformed, 1, 2}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tamperLog(t)
			requireOK(t, dir, 40)
			tc.damage(t, dir)
			rep := mustVerify(t, dir)
			if len(rep.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d: %v", len(rep.Problems), len(tc.want), rep.Problems)
			}
			for i, w := range tc.want {
				p := rep.Problems[i]
				if p.Kind != w.kind || (w.seg != 0 && p.Segment != segmentName(w.seg)) || (w.line != 0 && p.Line != w.line) {
					t.Errorf("problem %d = %v; want %s at %s:%d", i, p, w.kind, segmentName(w.seg), w.line)
				}
				if p.String() == "" || p.Detail == "" {
					t.Errorf("problem %d has no description", i)
				}
			}
		})
	}
}

func lastSeg(t *testing.T, dir string) uint64 {
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segments: %v", err)
	}
	return segs[len(segs)-1].num
}

func TestVerifyEmpty(t *testing.T) {
	rep := mustVerify(t, filepath.Join(t.TempDir(), "none"))
	if !rep.OK() || rep.Records != 0 || rep.Summary() != "ok: 0 records in 0 segments, chain intact" {
		t.Fatalf("empty log: %+v", rep)
	}
}
