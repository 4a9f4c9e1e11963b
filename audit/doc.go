// Package audit is tf's append-only, hash-chained decision log: the writer, its readers, filters and verification.
//
// # Layout
//
// The log of a state directory lives in Dir($TF_HOME) = $TF_HOME/audit:
//
//	audit-000001.jsonl     segments, in order; a closed one may be
//	audit-000002.jsonl.gz  gzip-compressed (readers read both)
//	head                   the last acknowledged record (see below)
//	lock                   flock'd by a writer for the span of one batch
//
// # One chain, several writers
//
// Every gateway process appends to the same chain. A writer takes an
// exclusive flock on "lock" for each batch (not for its lifetime), reads
// the head to learn what other writers appended since its last batch,
// writes its lines, fsyncs, advances the head and unlocks. This keeps a
// single seq order and a single chain for `tf policy plan` to replay and
// for verify to check, at the cost of one flock and one 512-byte read per
// batch; writers in one process share the batch through group commit.
// A writer per directory was the alternative; it would need a merge by
// time in every reader and leave no total order.
//
// # Records (schema_version 1)
//
// Each line is one JSON object with its keys in this order:
//
//	schema_version  1
//	seq             1, 2, 3 ... across all segments, no gaps
//	time            RFC 3339 with nanoseconds, UTC: when Append was called
//	                (seq, not time, is the order of the log)
//	kind            "decision" | "outcome" | "event"
//	request_id      links a decision to its outcome
//	gateway         the governed session
//	action          decision: the rules.Action JSON (type, connector,
//	                resource, params, request{method, host, path, ...});
//	                params are redacted by the caller
//	decision        decision: the rules.Decision JSON (decision, rule,
//	                reason, matched, default, kill_switch, monitor, would,
//	                approval_timeout, revision)
//	approval        decision, optional: {id, approver, reason, outcome, at}
//	status, bytes_in, bytes_out, duration_ms, error
//	                outcome: what forwarding the request gave
//	usage           outcome of a model call, optional: {model,
//	                input_tokens, output_tokens, cache_read_tokens,
//	                cache_write_tokens, unknown}: the token usage its
//	                response reported, or why it is unknown
//	event, details  event: a name such as gateway.started,
//	                kill_switch.activated, approval.approved,
//	                policy.applied or audit.tail_repaired, and an object
//	prev            hex SHA-256 of the previous line (without its newline);
//	                64 zeros for the first record of the log
//	hash            hex SHA-256 of the canonical bytes (below)
//
// Empty optional members are left out. Readers refuse unknown members,
// another schema_version, and records that lack what their kind needs.
//
// The canonical bytes of a record are its line exactly as stored, with the
// final member `,"hash":"<64 hex>"` removed: the bytes up to that comma
// followed by "}". Hashing the stored bytes, not a re-encoding, means a
// change of any byte outside the hash is detected and verification does
// not depend on how a JSON library orders or formats values. Lines are at
// most MaxRecordBytes long.
//
// # Durability and the head
//
// Append returns after the line is written and fdatasync'd. Concurrent
// Appends are batched by one writer goroutine: all pending lines, one
// fdatasync of the segment, then every waiter is released. The head file
// holds two 256-byte slots, written alternately after the segment is
// synced, each "tfhead1 <seq> <segment> <offset> <line sha256> <crc32>";
// the valid slot with the higher seq counts, so a torn head write leaves
// the previous one, and the head never names data that is not durable.
// The head is fdatasync'd by a second goroutine, overlapping the next
// batch, so an Append waits for one fsync, not two: a process crash loses
// nothing (the page cache survives it), but after a power loss the head
// may lag the segment by the last batch or two. Verify then notes records
// after the head instead of proving that none were cut there.
//
// Open (and every batch) compares the segment with the head: complete,
// correctly chained records past the head (a writer died after syncing
// the data but before the head) are adopted, anything else there (a torn
// line) is truncated, and an audit.tail_repaired event records the
// dropped bytes and adopted records. A segment shorter than the head, or
// segments without a head file, make Open fail: the log was cut and
// writing on would hide it.
//
// # What verify can and cannot show
//
// Verify detects an edited record (hash), a removed, repeated or moved
// record (seq, prev), a cut across segments (prev of the first record of
// the next segment), missing segments, a torn last line, and trailing
// records removed after the head acknowledged them (head seq beyond the
// last record). Verify does not lock out writers, so on a live log a batch
// being written can show as a torn last line; run it again. The chain has no secret: someone who can write the
// directory can rewrite every later hash and the head consistently, and
// that is not detectable from the directory alone. Anchoring the head
// hash elsewhere (a git commit, a remote log) closes that gap; it is not
// done here.
package audit
