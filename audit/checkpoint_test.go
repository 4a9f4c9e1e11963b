package audit

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// The attacks the chain alone cannot show: a chain recomputed without the
// denials, and a deleted log. Both fail against a checkpoint signed with
// a key the attacker lacks; a forged checkpoint fails too.
func TestCheckpointsCatchRewriteAndDeletion(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "audit")
	cpFile := CheckpointPath(home)
	_, key, _ := ed25519.GenerateKey(nil)
	pub := key.Public().(ed25519.PublicKey)

	l := openLog(t, dir, Options{Gateway: "gw"})
	ctx := testCtx(t)
	for i := range 6 {
		d := decision(i)
		if i%2 == 1 {
			d.Decision = &rules.Decision{Effect: rules.Deny, Reason: "protected"}
		}
		if err := l.Append(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cp, err := NewCheckpoint(dir, key, time.Now())
	if err != nil || cp.Seq != 6 {
		t.Fatalf("checkpoint %+v: %v", cp, err)
	}
	if err := AppendCheckpoint(cpFile, cp); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyAnchored(dir, cpFile, pub); err != nil || !rep.OK() {
		t.Fatalf("untouched log: %+v %v", rep, err)
	}

	// Rewrite: the same records without the denials, re-chained by the
	// log's own writer. The chain verifies; the checkpoint does not.
	var keep []*Record
	for _, r := range scanAll(t, dir) {
		if r.Decision == nil || r.Decision.Effect != rules.Deny {
			r.Seq, r.Prev, r.Hash, r.Line = 0, "", "", nil
			keep = append(keep, r)
		}
	}
	os.RemoveAll(dir)
	l = openLog(t, dir, Options{Gateway: "gw"})
	for _, r := range keep {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if rep, _ := Verify(dir); !rep.OK() {
		t.Fatalf("the rewritten chain should verify on its own: %+v", rep)
	}
	rep, err := VerifyAnchored(dir, cpFile, pub)
	if err != nil || rep.OK() || !strings.Contains(rep.Problems[0].Detail, "missing") {
		t.Errorf("rewritten log: %+v %v", rep.Problems, err)
	}

	// Same length, other content: the signed record differs.
	os.RemoveAll(dir)
	l = openLog(t, dir, Options{Gateway: "gw"})
	for i := range 6 {
		l.Append(ctx, decision(100+i))
	}
	l.Close()
	rep, _ = VerifyAnchored(dir, cpFile, pub)
	if rep.OK() || !strings.Contains(rep.Problems[0].Detail, "rewritten") {
		t.Errorf("replaced log: %+v", rep.Problems)
	}

	// Deleted: every signed record is missing.
	os.RemoveAll(dir)
	rep, _ = VerifyAnchored(dir, cpFile, pub)
	if rep.OK() || rep.Problems[0].Kind != ProblemCheckpoint {
		t.Errorf("deleted log: %+v", rep.Problems)
	}

	// A checkpoint made with another key (the attacker's own) is refused.
	_, other, _ := ed25519.GenerateKey(nil)
	forged, _ := NewCheckpoint(dir, other, time.Now())
	forged.Key = cp.Key
	AppendCheckpoint(cpFile, forged)
	rep, _ = VerifyAnchored(dir, cpFile, pub)
	if !strings.Contains(rep.Problems[0].Detail+rep.Problems[len(rep.Problems)-1].Detail, "forged") {
		t.Errorf("forged checkpoint: %+v", rep.Problems)
	}

	// The checkpoint file deleted as well: that alone is a problem.
	os.Remove(cpFile)
	rep, _ = VerifyAnchored(dir, cpFile, pub)
	if rep.OK() || !strings.Contains(rep.Problems[0].Detail, "no checkpoints") {
		t.Errorf("deleted checkpoints: %+v", rep.Problems)
	}
	// Without a key, a note says what the chain cannot show.
	rep, _ = VerifyAnchored(dir, cpFile, nil)
	if !rep.OK() || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[len(rep.Notes)-1], "checkpoint") {
		t.Errorf("no key: %+v", rep)
	}
}

func FuzzReadCheckpoints(f *testing.F) {
	f.Add([]byte(`{"seq":1,"hash":"00","time":"2026-01-01T00:00:00Z","key":"k","sig":"AA=="}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "cp")
		os.WriteFile(path, b, 0o600)
		cps, err := ReadCheckpoints(path)
		if err == nil {
			_, key, _ := ed25519.GenerateKey(nil)
			_, _ = CheckCheckpoints(t.TempDir(), cps, key.Public().(ed25519.PublicKey))
		}
	})
}
