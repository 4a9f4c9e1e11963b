package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A signed checkpoint anchors the log: after an agent-style deletion of
// the audit directory, tf audit verify fails and says what is missing; a
// verifier with only the public key sees the same.
func TestAuditCheckpointAnchorsTheLog(t *testing.T) {
	home := t.TempDir()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	keyEnv := []string{"TF_SECRET_AUDIT_CHECKPOINT_KEY=" + base64.StdEncoding.EncodeToString(seed)}
	pub := base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))

	up := newUpstream(t, t.TempDir())
	args := append([]string{"run", "--isolate=off", "--policy", absPath(t, examplePolicy)}, up.args()...)
	r := runTF(t, home, keyEnv, append(args, "--", "curl", "-sS", "-X", "DELETE", "https://api.github.com/repos/acme/app")...)
	if !strings.Contains(r.stdout, "deny") && !strings.Contains(r.stdout, "refused") {
		t.Fatalf("the delete was not refused:\n%s\n%s", r.stdout, r.stderr)
	}
	// The gateway signed a checkpoint as it stopped (the key is set).
	if b, err := os.ReadFile(filepath.Join(home, "audit-checkpoints.jsonl")); err != nil || len(b) == 0 {
		t.Fatalf("no checkpoint after the gateway stopped: %v", err)
	}
	r = runTF(t, home, keyEnv, "audit", "checkpoint")
	if r.code != 0 || !strings.Contains(r.stdout, "public key: "+pub) {
		t.Fatalf("tf audit checkpoint: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runTF(t, home, keyEnv, "audit", "verify"); r.code != 0 || !strings.Contains(r.stdout, "checkpoints signed by key") {
		t.Fatalf("verify of an intact log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	os.RemoveAll(filepath.Join(home, "audit"))
	for _, env := range [][]string{keyEnv, nil} {
		args := []string{"audit", "verify"}
		if env == nil {
			args = append(args, "--pubkey", pub)
		}
		r := runTF(t, home, env, args...)
		if r.code != 1 || !strings.Contains(r.stdout, "is missing") || !strings.Contains(r.stdout, "deleted") {
			t.Errorf("verify %v after deleting the log: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	os.Remove(filepath.Join(home, "audit-checkpoints.jsonl"))
	if r := runTF(t, home, keyEnv, "audit", "verify"); r.code != 1 || !strings.Contains(r.stdout, "no checkpoints") {
		t.Errorf("verify without the checkpoint file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
