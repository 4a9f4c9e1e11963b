package audit

import "time"

// segmentSkew is how far out of time order records may be written: a
// record is stamped by its gateway before it is appended, and several
// gateways share one log.
const segmentSkew = 5 * time.Minute

// segmentsSince drops the segments whose records all come before since: a
// segment ends where the next begins, so every segment before the last
// one that begins (by its first record's time) more than segmentSkew
// before since is skipped unread. A segment whose first record cannot be
// read is kept: skipping is an optimisation, never a filter.
func segmentsSince(dir string, segs []segment, since time.Time) []segment {
	if since.IsZero() || len(segs) < 2 {
		return segs
	}
	cut := since.Add(-segmentSkew)
	for i := len(segs) - 1; i > 0; i-- {
		if t, ok := firstTime(dir, segs[i]); ok && t.Before(cut) {
			return segs[i:]
		}
	}
	return segs
}

// firstTime is the time of the first record of a segment.
func firstTime(dir string, s segment) (time.Time, bool) {
	rc, err := openSegment(dir, s)
	if err != nil {
		return time.Time{}, false
	}
	defer rc.Close()
	line, complete, _, err := newLineReader(rc).next()
	if err != nil || !complete {
		return time.Time{}, false
	}
	r, err := parseLine(line)
	if err != nil {
		return time.Time{}, false
	}
	return r.Time, true
}
