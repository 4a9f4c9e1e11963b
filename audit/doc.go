// Package audit is tf's append-only, hash-chained decision log: the writer, its readers, filters and verification.
//
// # Layout
//
// The log of a state directory lives in Dir($TF_HOME) = $TF_HOME/audit:
//
//	audit-000001.jsonl     segments, in order; a closed one may be
//	audit-000002.jsonl.gz  gzip-compressed (readers read both)
//	head                   the last acknowledged record (see below)
//	lock                   flock'd by the writer that is appending
//
// # One chain, several writers
//
// Every gateway process appends to the same chain. A writer takes an
// exclusive flock on "lock" and then holds it, with its view of the head,
// for as long as it keeps writing: when it takes the lock it reads the
// head, fstats the segment and looks for a next one (to adopt what other
// writers appended and repair what a dead one left), and after that each
// batch is a single pwrite. It lets the lock go when it has been idle for
// 100 ms, at Close, or when another writer asks for it: a writer that
// finds the lock taken sets byte 8 of "lock" and polls, and the holder,
// which looks at that byte every 10 ms, makes its records durable,
// writes the head, clears the byte, unlocks, and waits 5 ms before taking
// the lock again. This keeps a single seq order and a single chain for
// `tf policy plan` to replay and for verify to check; writers in one
// process share batches through group commit. A writer per directory was
// the alternative; it would need a merge by time in every reader and
// leave no total order.
//
// # Records (schema_version 2)
//
// Each line is one JSON object with its keys in this order:
//
//	schema_version  2 (1 before the mcp and usage members and the
//	                members added to action and decision with them)
//	seq             1, 2, 3 ... across all segments, no gaps
//	time            RFC 3339 with nanoseconds, UTC: when Append was called
//	                (seq, not time, is the order of the log)
//	kind            "decision" | "outcome" | "event"
//	request_id      links a decision to its outcome
//	gateway         the governed session
//	action          decision: the rules.Action JSON (type, connector,
//	                resource, params, request{method, host, path, ...},
//	                agent: the agent of a shared gateway (tf serve), left
//	                out under tf run); params are redacted by the caller
//	decision        decision: the rules.Decision JSON (decision, rule,
//	                reason, matched, default, kill_switch, monitor, would,
//	                approval_timeout, revision, counted: the rules whose
//	                limits counted the action, which a gateway rebuilds
//	                its counters from)
//	approval        decision, optional: {id, approver, reason, outcome, at}
//	status, bytes_in, bytes_out, duration_ms, error
//	                outcome: what forwarding the request gave
//	mcp             decision and outcome of an MCP message, optional:
//	                {session (Mcp-Session-Id), id (the JSON-RPC id as
//	                JSON: 7 or "a"), is_error (outcome of a tool call:
//	                the result's isError)}
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
// a schema_version newer than theirs (saying so), and records that lack
// what their kind needs; they read every older version. A change that adds
// a member, here or in the action or decision, raises schema_version:
// strict readers are what keep a forged or mangled record from passing as
// a shorter one, so an older tf must say "newer than I read" rather than
// "unknown member". Within one release cycle the bump happens once.
//
// Shipped to OpenTelemetry (package otlp), a record is one log record
// whose body is its line byte for byte; the attributes are documented in
// docs/otel.md. ReadExport and ScanSources read such exports back.
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
// Concurrent Appends are batched without a writer goroutine: an Append
// that finds nobody writing writes itself, and those arriving meanwhile
// queue behind it; its successor (the first of them) writes everything
// queued by then with one pwrite and releases every waiter. An Append to
// an idle log thus runs in its caller's goroutine. When Append returns
// depends on Options.Sync:
//
//   - SyncGroup (the default): once the batch is written (write(2) done,
//     in the page cache). A killed process (SIGKILL, a crash) loses
//     nothing acknowledged. A syncer goroutine fdatasyncs the segment
//     within DefaultSyncWindow (5 ms) of a write, covering everything
//     written by then, so a power loss loses at most the records written
//     in the last window plus the fdatasync that was running.
//   - SyncAlways ($TF_HOME/config.yaml: audit: {sync: always}): once the
//     batch is fdatasync'd: one fdatasync per batch, however many records
//     it holds.
//
// Records nobody waits for (AppendAsync: outcomes) never start a batch:
// queueing one wakes no goroutine; it goes with the next Append's batch
// or, after the sync window, alone. Records keep the order in which they
// were queued, and those of one AppendAll stay together.
// A failed write or fdatasync, in a batch or in the syncer, is sticky:
// every later Append fails (and the gateway refuses the request).
//
// The head file holds two 256-byte slots, written alternately, each
// "tfhead1 <seq> <segment> <offset> <line sha256> <crc32>"; the valid slot
// with the higher seq counts, so a torn head write leaves the previous
// one. The head only ever names records that are durable: it is written
// after the fdatasync that covers them (by the syncer, at a rotation and
// when the writer lets the lock go), so it lags the segment by up to a
// sync window while a writer is active, and it is fdatasync'd lazily, at
// most once a second and at Close. After a power loss it may therefore
// lag by more; verify then notes records after the head instead of
// proving that none were cut there, and End reads past it.
//
// Open (and every taking of the lock) compares the segment with the
// head: complete, correctly chained records past the head (a writer
// died, or lost power, before it advanced the head) are adopted and
// synced, anything else there (a torn
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
