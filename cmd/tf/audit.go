package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/keyring"
)

func init() { register(auditCommand()) }

func auditCommand() *cli.Command {
	cpFlag := &cli.StringFlag{Name: "checkpoints", Usage: "the checkpoint file (default: $TF_HOME/" + audit.CheckpointFile + "); keep a copy outside the agent's reach"}
	return &cli.Command{
		Name:  "audit",
		Usage: "inspect the audit log",
		Subcommands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "check every record, the hash chain, the head and the signed checkpoints of the audit log",
				Description: "Prints \"ok: N records in M segments, chain intact\", or each problem as\n" +
					"file:line: seq N: kind: detail, and exits 1. With a checkpoint key (in the\n" +
					"keyring, or --pubkey), a rewritten or deleted log fails too.",
				Flags: []cli.Flag{cpFlag,
					&cli.StringFlag{Name: "pubkey", Usage: "the checkpoint public key (base64, as tf audit checkpoint prints it), for a verifier without the keyring"}},
				Action: runAuditVerify,
			},
			{
				Name:  "checkpoint",
				Usage: "sign the audit log's last record with the checkpoint key kept in the keyring (created on first use)",
				Description: "Appends the signed checkpoint to the checkpoint file and prints the public key.\n" +
					"Whoever rewrites the log, or deletes it, cannot make a checkpoint that matches\n" +
					"without the key; gateways add one when they stop.",
				Flags:  []cli.Flag{cpFlag, &cli.StringFlag{Name: "backend", Usage: "keyring backend for the key (see tf creds backends)"}},
				Action: runAuditCheckpoint,
			},
		},
	}
}

func checkpointFile(c *cli.Context, h string) string {
	if f := c.String("checkpoints"); f != "" {
		return f
	}
	return audit.CheckpointPath(h)
}

func runAuditVerify(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	var pub ed25519.PublicKey
	if b := c.String("pubkey"); b != "" {
		k, err := base64.StdEncoding.DecodeString(b)
		if err != nil || len(k) != ed25519.PublicKeySize {
			return cli.Exit("tf audit verify: --pubkey is not the base64 of an Ed25519 public key", 2)
		}
		pub = k
	} else if key, err := keyring.CheckpointKey(keyring.Options{}, false); err == nil {
		pub = key.Public().(ed25519.PublicKey)
	} else if !errors.Is(err, keyring.ErrNoCheckpointKey) {
		return err
	}
	dir := audit.Dir(h)
	rep, err := audit.VerifyAnchored(dir, checkpointFile(c, h), pub)
	if err != nil {
		return err
	}
	out := c.App.Writer
	for _, p := range rep.Problems {
		if p.Segment != "" {
			p.Segment = filepath.Join(dir, p.Segment)
		}
		fmt.Fprintln(out, p)
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(out, "note:", n)
	}
	if !rep.OK() {
		return cli.Exit(fmt.Sprintf("audit log in %s failed verification: %s", dir, rep.Summary()), 1)
	}
	fmt.Fprintln(out, rep.Summary())
	return nil
}

func runAuditCheckpoint(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	key, err := keyring.CheckpointKey(keyring.Options{Backend: c.String("backend")}, true)
	if err != nil {
		return err
	}
	cp, err := audit.NewCheckpoint(audit.Dir(h), key, time.Now())
	if err != nil {
		return err
	}
	file := checkpointFile(c, h)
	if err := audit.AppendCheckpoint(file, cp); err != nil {
		return err
	}
	pub := key.Public().(ed25519.PublicKey)
	fmt.Fprintf(c.App.Writer, "checkpoint: seq %d signed by key %s into %s\npublic key: %s\n", cp.Seq, cp.Key, file, base64.StdEncoding.EncodeToString(pub))
	return nil
}
