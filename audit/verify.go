package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ProblemKind classifies what Verify found wrong.
type ProblemKind string

const (
	// ProblemMalformed: a line is not a valid record (JSON, schema, size).
	ProblemMalformed ProblemKind = "malformed"
	// ProblemHash: a record's hash does not match its bytes (edited).
	ProblemHash ProblemKind = "hash"
	// ProblemSeq: seq is not the next number (records removed or moved).
	ProblemSeq ProblemKind = "seq"
	// ProblemChain: prev does not match the previous line.
	ProblemChain ProblemKind = "chain"
	// ProblemTorn: a segment ends in an incomplete line (a torn write).
	ProblemTorn ProblemKind = "torn"
	// ProblemTruncated: whole records the head acknowledged are gone.
	ProblemTruncated ProblemKind = "truncated"
	// ProblemHead: the head file is missing, corrupt or disagrees.
	ProblemHead ProblemKind = "head"
	// ProblemSegment: a segment is missing or unreadable.
	ProblemSegment ProblemKind = "segment"
)

// A Problem is one thing wrong with the log and where it is.
type Problem struct {
	Kind    ProblemKind `json:"kind"`
	Segment string      `json:"segment,omitempty"`
	Line    int         `json:"line,omitempty"` // 1-based; 0 when not about one line
	Seq     uint64      `json:"seq,omitempty"`  // 0 when unknown
	Detail  string      `json:"detail"`
}

func (p Problem) String() string {
	loc := p.Segment
	if loc == "" {
		loc = "audit log"
	}
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, p.Line)
	}
	if p.Seq > 0 {
		return fmt.Sprintf("%s: seq %d: %s: %s", loc, p.Seq, p.Kind, p.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Kind, p.Detail)
}

// A Report is what Verify found.
type Report struct {
	Records  int       `json:"records"`
	Segments int       `json:"segments"`
	FirstSeq uint64    `json:"first_seq,omitempty"`
	LastSeq  uint64    `json:"last_seq,omitempty"`
	HeadSeq  uint64    `json:"head_seq"`
	Problems []Problem `json:"problems,omitempty"`
	// Notes are facts worth knowing that are not tampering, such as
	// records written after the head by a writer that died mid-batch.
	Notes []string `json:"notes,omitempty"`
}

// OK reports whether the log verified without problems.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Summary is the one-line verdict for a clean log.
func (r Report) Summary() string {
	if !r.OK() {
		return fmt.Sprintf("%d problem(s) in %d records in %d segments", len(r.Problems), r.Records, r.Segments)
	}
	return fmt.Sprintf("ok: %d records in %d segments, chain intact", r.Records, r.Segments)
}

// Verify walks every segment of the log in dir and checks each line's
// JSON and schema, its hash, seq continuity, the prev chain across
// segments, and the last records against the head file. Problems go into
// the report; the error is only for failing to read the directory.
//
// After a problem the walk continues from the offending line, so one
// edit, deletion or swap yields one or two problems, not a cascade.
func Verify(dir string) (Report, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return Report{}, err
	}
	h, herr := readHead(dir)
	open := func(s segment) (io.ReadCloser, error) { return openSegment(dir, s) }
	return verify(segs, open, h, herr), nil
}

// verify is Verify over segments opened by open and a head read (or
// not) as h, herr; it does no I/O of its own, so it can be fuzzed fast.
func verify(segs []segment, open func(segment) (io.ReadCloser, error), h head, herr error) Report {
	var rep Report
	rep.Segments = len(segs)
	rep.HeadSeq = h.Seq

	expect := uint64(1)
	prev := zeroHash
	resync := false // skip the prev check on the line after a problem
	var headSeen, headMatch bool
	add := func(p Problem) { rep.Problems = append(rep.Problems, p); resync = true }

	for i, s := range segs {
		name := s.name()
		if i > 0 && s.num != segs[i-1].num+1 {
			add(Problem{Kind: ProblemSegment, Segment: name,
				Detail: fmt.Sprintf("segment(s) %s to %s are missing", segmentName(segs[i-1].num+1), segmentName(s.num-1))})
		}
		rc, err := open(s)
		if err != nil {
			add(Problem{Kind: ProblemSegment, Segment: name, Detail: err.Error()})
			continue
		}
		lr := newLineReader(rc)
		for lineNo := 1; ; lineNo++ {
			line, complete, tooLong, err := lr.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				add(Problem{Kind: ProblemSegment, Segment: name, Line: lineNo, Detail: fmt.Sprintf("reading: %v", err)})
				break
			}
			if !complete {
				detail := fmt.Sprintf("incomplete last line of %d bytes (torn write; the next Open truncates it)", len(line))
				if i < len(segs)-1 {
					detail = fmt.Sprintf("segment ends in an incomplete line of %d bytes", len(line))
				}
				add(Problem{Kind: ProblemTorn, Segment: name, Line: lineNo, Seq: looseSeq(line), Detail: detail})
				break
			}
			if tooLong {
				add(Problem{Kind: ProblemMalformed, Segment: name, Line: lineNo,
					Detail: fmt.Sprintf("line exceeds the %d byte limit", MaxRecordBytes)})
				expect++
				continue
			}
			rec, perr := parseLine(line)
			if perr != nil {
				kind := ProblemMalformed
				if errors.Is(perr, errHash) {
					kind = ProblemHash
				}
				seq := looseSeq(line)
				add(Problem{Kind: kind, Segment: name, Line: lineNo, Seq: seq, Detail: perr.Error()})
				if seq >= expect {
					expect = seq + 1
				} else {
					expect++
				}
				prev = lineHash(line)
				continue
			}
			ok := true
			switch {
			case rec.Seq > expect:
				add(Problem{Kind: ProblemSeq, Segment: name, Line: lineNo, Seq: rec.Seq,
					Detail: fmt.Sprintf("expected seq %d: record(s) %d to %d are missing or moved", expect, expect, rec.Seq-1)})
				ok = false
			case rec.Seq < expect:
				add(Problem{Kind: ProblemSeq, Segment: name, Line: lineNo, Seq: rec.Seq,
					Detail: fmt.Sprintf("expected seq %d: record is out of order or repeated", expect)})
				ok = false
			case !resync && rec.Prev != hex.EncodeToString(prev[:]):
				add(Problem{Kind: ProblemChain, Segment: name, Line: lineNo, Seq: rec.Seq,
					Detail: "prev does not match the line before it (a record before it was edited, removed or reordered)"})
				ok = false
			}
			if ok {
				resync = false
			}
			if rec.Seq+1 > expect {
				expect = rec.Seq + 1
			}
			prev = lineHash(line)
			rep.Records++
			if rep.FirstSeq == 0 {
				rep.FirstSeq = rec.Seq
			}
			rep.LastSeq = max(rep.LastSeq, rec.Seq)
			if herr == nil && rec.Seq == h.Seq {
				headSeen, headMatch = true, lineHash(line) == h.Hash
			}
		}
		if err := rc.Close(); err != nil {
			add(Problem{Kind: ProblemSegment, Segment: name, Detail: fmt.Sprintf("closing: %v", err)})
		}
	}

	switch {
	case errors.Is(herr, errNoHead):
		if len(segs) > 0 {
			add(Problem{Kind: ProblemHead, Detail: "head file is missing: truncation of trailing records cannot be checked"})
		}
	case herr != nil:
		add(Problem{Kind: ProblemHead, Detail: herr.Error()})
	case h.Seq > rep.LastSeq:
		add(Problem{Kind: ProblemTruncated, Segment: segmentName(h.Seg), Seq: h.Seq,
			Detail: fmt.Sprintf("head acknowledged seq %d but the log ends at seq %d: trailing record(s) were removed", h.Seq, rep.LastSeq)})
	case h.Seq > 0 && headSeen && !headMatch:
		add(Problem{Kind: ProblemHead, Segment: segmentName(h.Seg), Seq: h.Seq,
			Detail: "record differs from the one the head acknowledged"})
	case rep.LastSeq > h.Seq:
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d record(s) after the head (seq %d) were written but not acknowledged by a writer that stopped mid-batch; the next Open adopts them",
			rep.LastSeq-h.Seq, h.Seq))
	}
	return rep
}

// looseSeq extracts seq from a damaged line for reporting, or 0.
func looseSeq(line []byte) uint64 {
	var v struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal(line, &v) // best effort: the line is already known bad
	return v.Seq
}
