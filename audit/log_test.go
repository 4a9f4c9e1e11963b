package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

func TestDir(t *testing.T) {
	if got, want := Dir("/x/state"), filepath.Join("/x/state", "audit"); got != want {
		t.Fatalf("Dir = %q, want %q", got, want)
	}
}

func TestAppendRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Gateway: "default-gw"})
	ctx := testCtx(t)
	d := decision(7)
	d.Approval = &Approval{ID: "ap-1", Approver: "alice", Outcome: "approved", At: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)}
	out := &Record{Kind: KindOutcome, RequestID: d.RequestID, Status: 201, BytesIn: 10, BytesOut: 20, DurationMS: 5}
	for _, r := range []*Record{d, out} {
		if err := l.Append(ctx, r); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Event(ctx, "gw0", EventKillSwitchActivated, map[string]any{"by": "bob"}); err != nil {
		t.Fatalf("Event: %v", err)
	}
	if d.Seq != 1 || out.Seq != 2 || d.Prev != ZeroHash || out.Prev == ZeroHash || d.Hash == "" {
		t.Fatalf("Append did not fill seq/prev/hash: %+v / %+v", d, out)
	}
	if out.Gateway != "default-gw" {
		t.Fatalf("outcome gateway = %q, want the default", out.Gateway)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	recs := scanAll(t, dir)
	if len(recs) != 3 {
		t.Fatalf("scanned %d records, want 3", len(recs))
	}
	got := recs[0]
	if !reflect.DeepEqual(got.Action, d.Action) || !reflect.DeepEqual(got.Decision, d.Decision) ||
		!reflect.DeepEqual(got.Approval, d.Approval) || !got.Time.Equal(d.Time) || got.Hash != d.Hash {
		t.Fatalf("decision did not round-trip:\n got %+v\nwant %+v", got, d)
	}
	if recs[1].Status != 201 || recs[1].RequestID != d.RequestID || recs[2].Event != EventKillSwitchActivated || recs[2].Details["by"] != "bob" {
		t.Fatalf("outcome/event did not round-trip: %+v %+v", recs[1], recs[2])
	}
	// The writer assembles lines itself; they must be exactly what
	// encoding the full record gives, so the schema has one layout.
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, r.Line) {
			t.Fatalf("line layout differs from the Record encoding:\nline %s\nenc  %s", r.Line, b)
		}
	}
	if !strings.HasPrefix(string(recs[0].Line), `{"schema_version":2,"seq":1,"time":"2026-01-01T00:00:07Z","kind":"decision"`) {
		t.Fatalf("unexpected line start: %s", recs[0].Line)
	}
	requireOK(t, dir, 3)
}

func TestAppendRefuses(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	ctx := testCtx(t)
	bad := map[string]*Record{
		"unknown kind":            {Kind: "nope"},
		"decision without action": {Kind: KindDecision, Decision: decision(0).Decision},
		"decision without effect": {Kind: KindDecision, Action: decision(0).Action, Decision: &rules.Decision{Rule: "x"}},
		"outcome without request": {Kind: KindOutcome, Status: 200},
		"event without name":      {Kind: KindEvent},
		"event with decision":     {Kind: KindEvent, Event: "x", Decision: decision(0).Decision},
		// Large params and details are truncated (TestOversizedRecordTruncated);
		// an event name is not.
		"too large even truncated": {Kind: KindEvent, Event: strings.Repeat("a", MaxRecordBytes)},
		"unencodable":              {Kind: KindEvent, Event: "x", Details: map[string]any{"ch": make(chan int)}},
	}
	for name, r := range bad {
		if err := l.Append(ctx, r); err == nil {
			t.Errorf("%s: Append accepted it", name)
		}
	}
	if err := l.Append(ctx, nil); err == nil {
		t.Error("Append accepted nil")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, decision(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	requireOK(t, dir, 0)
}

// TestAppendAsync checks that queued records are written in order with
// waited-for ones, that Close waits for them, and that what Append would
// refuse AppendAsync refuses at once.
func TestAppendAsync(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	ctx := testCtx(t)
	const n = 500
	for i := range n {
		var err error
		if i%5 == 0 {
			err = l.Append(ctx, decision(i))
		} else {
			err = l.AppendAsync(&Record{Kind: KindOutcome, RequestID: fmt.Sprintf("req-%d", i), Status: 200})
		}
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := l.AppendAsync(&Record{Kind: KindOutcome, Status: 200}); err == nil {
		t.Error("AppendAsync accepted an outcome without a request")
	}
	if err := l.AppendAsync(nil); err == nil {
		t.Error("AppendAsync accepted nil")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendAsync(&Record{Kind: KindOutcome, RequestID: "late", Status: 200}); !errors.Is(err, ErrClosed) {
		t.Fatalf("AppendAsync after Close = %v, want ErrClosed", err)
	}
	recs := scanAll(t, dir)
	if len(recs) != n {
		t.Fatalf("%d records on disk, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		if i%5 != 0 && r.RequestID != fmt.Sprintf("req-%d", i) {
			t.Fatalf("record %d is %s, want req-%d: queued records must keep their order", i, r.RequestID, i)
		}
	}
	requireOK(t, dir, n)
}

// TestAppendAll checks that records appended together land in order,
// filled in, and that one invalid record keeps all of them out.
func TestAppendAll(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	ctx := testCtx(t)
	var recs []*Record
	for i := range 300 {
		recs = append(recs, decision(i))
	}
	if err := l.AppendAll(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Hash == "" {
			t.Fatalf("record %d: seq %d hash %q", i, r.Seq, r.Hash)
		}
	}
	bad := []*Record{decision(1000), {Kind: KindOutcome, Status: 200}}
	if err := l.AppendAll(ctx, bad); err == nil {
		t.Fatal("AppendAll accepted an outcome without a request")
	}
	if err := l.AppendAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendAll(ctx, []*Record{decision(1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("AppendAll after Close = %v, want ErrClosed", err)
	}
	requireOK(t, dir, len(recs))
}

func TestRotationAndReopen(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 4 << 10
	l := openLog(t, dir, Options{SegmentBytes: segBytes})
	appendDecisions(t, l, 0, 60)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, Options{SegmentBytes: segBytes})
	appendDecisions(t, l, 60, 100)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 5 {
		t.Fatalf("got %d segments, want rotation into at least 5", len(segs))
	}
	for _, s := range segs {
		fi, err := os.Stat(filepath.Join(dir, s.name()))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > segBytes {
			t.Errorf("%s is %d bytes, over the %d limit", s.name(), fi.Size(), segBytes)
		}
	}
	recs := scanAll(t, dir)
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.RequestID != decision(i).RequestID {
			t.Fatalf("record %d: seq %d request %s", i, r.Seq, r.RequestID)
		}
	}
	requireOK(t, dir, 100)
}

func TestCompression(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, Compress: true}
	l := openLog(t, dir, opts)
	appendDecisions(t, l, 0, 50)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		last := i == len(segs)-1
		if s.plain != last || s.gz == last {
			t.Fatalf("segment %d: plain=%v gz=%v; want only the last one plain", s.num, s.plain, s.gz)
		}
	}
	requireOK(t, dir, 50)
	// A reopened log keeps the chain across compressed segments.
	l = openLog(t, dir, opts)
	appendDecisions(t, l, 50, 60)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	requireOK(t, dir, 60)
	if n := len(scanAll(t, dir)); n != 60 {
		t.Fatalf("scanned %d, want 60", n)
	}
}

// TestConcurrentWriters runs two Logs on one directory, as two gateway
// processes would (flock is per open file, so they exclude each other
// like processes), each with several appending goroutines.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	const writers, goroutines, each = 2, 8, 150
	ctx := testCtx(t)
	logs := make([]*Log, writers)
	for i := range logs {
		logs[i] = openLog(t, dir, Options{SegmentBytes: 64 << 10})
	}
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, writers*goroutines)
	for w := range writers {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					r := decision(i)
					r.RequestID = fmt.Sprintf("w%d-g%d-%d", w, g, i)
					if err := logs[w].Append(ctx, r); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					acked[r.Seq] = r.RequestID
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	total := writers * goroutines * each
	if len(acked) != total {
		t.Fatalf("%d distinct seqs acknowledged, want %d", len(acked), total)
	}
	for _, r := range scanAll(t, dir) {
		if acked[r.Seq] != r.RequestID {
			t.Fatalf("seq %d holds %s, but Append acknowledged %s", r.Seq, r.RequestID, acked[r.Seq])
		}
	}
	requireOK(t, dir, total)
}

func TestOpenRepairsTornTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Gateway: "gw"})
	appendDecisions(t, l, 0, 5)
	l.Close()
	f, err := os.OpenFile(segPath(dir, 1), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := []byte(`{"schema_version":1,"seq":6,"time":"2026-`)
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
	f.Close()

	rep := mustVerify(t, dir)
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemTorn || rep.Problems[0].Line != 6 || rep.Problems[0].Segment != segmentName(1) {
		t.Fatalf("verify = %v, want one torn line at %s:6", rep.Problems, segmentName(1))
	}
	if n := len(scanAll(t, dir)); n != 5 {
		t.Fatalf("Scan read %d records, want the 5 complete ones", n)
	}

	l = openLog(t, dir, Options{Gateway: "gw"})
	appendDecisions(t, l, 5, 6)
	l.Close()
	recs := scanAll(t, dir)
	if len(recs) != 7 {
		t.Fatalf("got %d records after repair, want 5 + event + 1", len(recs))
	}
	ev := recs[5]
	if ev.Event != EventTailRepaired || ev.Details["dropped_bytes"] != float64(len(torn)) || ev.Details["recovered_records"] != float64(0) {
		t.Fatalf("repair event = %+v", ev)
	}
	requireOK(t, dir, 7)
}

// TestOpenAdoptsUnacknowledged covers a writer that died after syncing a
// batch but before advancing the head: the records are complete and
// chained, so verify notes them and Open adopts them.
func TestOpenAdoptsUnacknowledged(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	appendDecisions(t, l, 0, 3)
	l.Close() // the head is written lazily; Close brings it up to date
	oldHead, err := os.ReadFile(filepath.Join(dir, headName))
	if err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, Options{})
	appendDecisions(t, l, 3, 5)
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, headName), oldHead, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if !rep.OK() || len(rep.Notes) != 1 || rep.HeadSeq != 3 {
		t.Fatalf("verify = %+v, want ok with one note", rep)
	}
	l = openLog(t, dir, Options{})
	l.Close()
	recs := scanAll(t, dir)
	if len(recs) != 6 || recs[5].Event != EventTailRepaired || recs[5].Details["recovered_records"] != float64(2) {
		t.Fatalf("records after adoption: %d, last %+v", len(recs), recs[len(recs)-1])
	}
	rep = mustVerify(t, dir)
	if !rep.OK() || len(rep.Notes) != 0 || rep.HeadSeq != 6 {
		t.Fatalf("verify after adoption = %+v", rep)
	}
}

func TestOpenRefusesCutLog(t *testing.T) {
	t.Run("segment shorter than head", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, Options{})
		appendDecisions(t, l, 0, 5)
		l.Close()
		lines := segLines(t, segPath(dir, 1))
		writeSeg(t, segPath(dir, 1), lines[:3])
		if l, err := Open(dir, Options{}); err == nil {
			l.Close()
			t.Fatal("Open accepted a log cut below its head")
		}
	})
	t.Run("head missing", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, Options{})
		appendDecisions(t, l, 0, 2)
		l.Close()
		if err := os.Remove(filepath.Join(dir, headName)); err != nil {
			t.Fatal(err)
		}
		if l, err := Open(dir, Options{}); err == nil {
			l.Close()
			t.Fatal("Open accepted segments without a head")
		}
	})
}

func TestHeadSlots(t *testing.T) {
	h := head{Seq: 42, Seg: 3, Off: 1234, Hash: lineHash([]byte("x"))}
	newer := head{Seq: 43, Seg: 3, Off: 1300, Hash: lineHash([]byte("y"))}
	both := append(h.encode(), newer.encode()...)
	got, err := parseHead(both)
	if err != nil || got.Seq != 43 || got.slot != 1 || got.Hash != newer.Hash {
		t.Fatalf("parseHead = %+v, %v; want the newer slot", got, err)
	}
	// A torn write of the newer slot leaves the older one.
	both[headSlot+10] ^= 0xff
	got, err = parseHead(both)
	if err != nil || got.Seq != 42 || got.Off != 1234 {
		t.Fatalf("parseHead with a torn slot = %+v, %v", got, err)
	}
	both[10] ^= 0xff
	if _, err := parseHead(both); err == nil {
		t.Fatal("parseHead accepted two corrupt slots")
	}
}

// Appenders write for each other: with many at once, each batch carries
// the records queued behind its writer, records nobody waits for ride
// along, each goroutine's records keep their order and an AppendAll's
// records stay together.
func TestAppendersShareBatches(t *testing.T) {
	dir := t.TempDir()
	// A long window: outcomes are written only by riding an Append.
	l := openLog(t, dir, Options{SyncWindow: time.Minute, SegmentBytes: 256 << 10})
	ctx := testCtx(t)
	const goroutines, each = 16, 60
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("g%02d-%03d", g, i)
				var err error
				if i%4 == 3 {
					a, b := decision(i), decision(i)
					a.RequestID, b.RequestID = id, id
					err = l.AppendAll(ctx, []*Record{a, b})
				} else {
					r := decision(i)
					r.RequestID = id
					err = l.Append(ctx, r)
				}
				if err == nil {
					err = l.AppendAsync(&Record{Kind: KindOutcome, RequestID: id, Status: 200})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := scanAll(t, dir)
	waited := goroutines * each
	total := waited + goroutines*each + goroutines*each/4
	if len(recs) != total {
		t.Fatalf("%d records, want %d", len(recs), total)
	}
	if l.batches > uint64(waited) {
		t.Fatalf("%d batches for %d waited-for appends: outcomes started batches", l.batches, waited)
	}
	last := map[string]string{} // goroutine -> "id kind" of its last record
	for k, r := range recs {
		g, key := r.RequestID[:3], r.RequestID+" "+string(r.Kind)
		if prev := last[g]; prev > key || (prev == key && r.Kind != KindDecision) {
			t.Fatalf("record %d (%s) after %s: out of order", k, key, prev)
		}
		if prev := last[g]; prev == key && recs[k-1].RequestID != r.RequestID {
			t.Fatalf("record %d: the records of one AppendAll (%s) are apart", k, r.RequestID)
		}
		last[g] = key
	}
	t.Logf("%d records in %d batches", total, l.batches)
}
