package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// The hash chain shows that a log was changed only to someone who kept a
// copy: whoever can write the directory can recompute every hash. A
// checkpoint closes that gap. It is a statement, signed with a key kept in
// the keyring (never in the log's directory), that the log held record Seq
// whose line hashed to Hash at Time. A rewritten chain or a deleted
// directory no longer matches the checkpoints, and without the key no new
// checkpoint can be made to match it.

// CheckpointFile is where checkpoints go by default, beside the log
// directory (deleting the directory leaves them).
const CheckpointFile = "audit-checkpoints.jsonl"

// ProblemCheckpoint: the log disagrees with a signed checkpoint.
const ProblemCheckpoint ProblemKind = "checkpoint"

// A Checkpoint is one signed statement about the log.
type Checkpoint struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"` // hex SHA-256 of record Seq's line
	Time time.Time `json:"time"`
	Key  string    `json:"key"` // KeyID of the signing key
	Sig  string    `json:"sig"` // base64 Ed25519 signature of message()
}

func (c Checkpoint) message() []byte {
	return []byte("tf audit checkpoint v1\n" + strconv.FormatUint(c.Seq, 10) + "\n" + c.Hash + "\n" + c.Time.UTC().Format(time.RFC3339Nano) + "\n")
}

// KeyID names a public key: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// NewCheckpoint signs the last record the head of the log in dir
// acknowledges (the head holds its seq and line hash, so this reads one
// small file however long the log). An empty log gets a checkpoint at
// seq 0, which still shows that checkpoints were being made.
func NewCheckpoint(dir string, key ed25519.PrivateKey, now time.Time) (Checkpoint, error) {
	c := Checkpoint{Time: now.UTC(), Hash: hex.EncodeToString(zeroHash[:])}
	switch h, err := readHead(dir); {
	case err == nil:
		c.Seq, c.Hash = h.Seq, hex.EncodeToString(h.Hash[:])
	case !errors.Is(err, errNoHead):
		return c, fmt.Errorf("reading the audit log for a checkpoint: %w", err)
	}
	c.Key = KeyID(key.Public().(ed25519.PublicKey))
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.message()))
	return c, nil
}

// AppendCheckpoint adds c to the checkpoint file at path (0600), synced.
func AppendCheckpoint(path string, c Checkpoint) error {
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// ReadCheckpoints reads a checkpoint file; a missing file holds none.
func ReadCheckpoints(path string) ([]Checkpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Checkpoint
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var c Checkpoint
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// CheckCheckpoints compares the log in dir with checkpoints signed by pub.
// A checkpoint whose signature does not verify is a problem (a forged or
// edited checkpoint); so is a signed record that is missing (the log was
// truncated or deleted) or whose line differs (the log was rewritten).
// With no checkpoints at all, the caller decides: see Verify's notes.
func CheckCheckpoints(dir string, cps []Checkpoint, pub ed25519.PublicKey) ([]Problem, error) {
	var probs []Problem
	want := map[uint64][]Checkpoint{}
	id := KeyID(pub)
	for _, c := range cps {
		sig, err := base64.StdEncoding.DecodeString(c.Sig)
		if c.Key != id || err != nil || !ed25519.Verify(pub, c.message(), sig) {
			probs = append(probs, Problem{Kind: ProblemCheckpoint, Seq: c.Seq,
				Detail: fmt.Sprintf("the checkpoint of %s does not verify with key %s: forged or edited", c.Time.Format(time.RFC3339), id)})
			continue
		}
		if c.Seq > 0 {
			want[c.Seq] = append(want[c.Seq], c)
		}
	}
	var last uint64
	err := walk(dir, func(r *Record) error {
		last = r.Seq
		if cs, ok := want[r.Seq]; ok {
			sum := sha256.Sum256(r.Line)
			for _, c := range cs {
				if hex.EncodeToString(sum[:]) != c.Hash {
					probs = append(probs, Problem{Kind: ProblemCheckpoint, Seq: r.Seq,
						Detail: fmt.Sprintf("record differs from the one signed at %s: the log was rewritten", c.Time.Format(time.RFC3339))})
				}
			}
			delete(want, r.Seq)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return probs, err
	}
	for _, seq := range slices.Sorted(maps.Keys(want)) {
		cs := want[seq]
		probs = append(probs, Problem{Kind: ProblemCheckpoint, Seq: seq,
			Detail: fmt.Sprintf("record signed at %s is missing (the log ends at seq %d): records were removed or the log deleted", cs[0].Time.Format(time.RFC3339), last)})
	}
	return probs, nil
}

// CheckpointPath is the default checkpoint file of a state directory.
func CheckpointPath(tfHome string) string { return filepath.Join(tfHome, CheckpointFile) }

// VerifyAnchored is Verify plus the checkpoints in cpFile: with pub (the
// checkpoint key is known), every checkpoint must verify and match the
// log, and a file with none is a problem in itself, since deleting it is
// how a rewrite would hide. Without pub, a note says what the chain alone
// cannot show.
func VerifyAnchored(dir, cpFile string, pub ed25519.PublicKey) (Report, error) {
	rep, err := Verify(dir)
	if err != nil {
		return rep, err
	}
	if pub == nil {
		rep.Notes = append(rep.Notes, "no checkpoint key: the hash chain shows changes only to someone who kept a copy of the log; `tf audit checkpoint` signs the log's end with a key kept in the keyring")
		return rep, nil
	}
	cps, err := ReadCheckpoints(cpFile)
	if err != nil {
		return rep, err
	}
	if len(cps) == 0 {
		rep.Problems = append(rep.Problems, Problem{Kind: ProblemCheckpoint,
			Detail: fmt.Sprintf("no checkpoints in %s although a checkpoint key (%s) exists: the file was deleted, or no checkpoint was ever made", cpFile, KeyID(pub))})
		return rep, nil
	}
	probs, err := CheckCheckpoints(dir, cps, pub)
	rep.Problems = append(rep.Problems, probs...)
	if err == nil && len(probs) == 0 {
		last := cps[len(cps)-1]
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d checkpoints signed by key %s match; the last covers seq %d (%s)", len(cps), KeyID(pub), last.Seq, last.Time.Format(time.RFC3339)))
	}
	return rep, err
}
