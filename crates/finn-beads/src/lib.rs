//! Work items (beads) as WAL events: issues.jsonl interop, ready queue, leased claims and run state.
//!
//! Beads are the work items of the `bd` issue tracker used by coding agents; their interchange
//! format is `.beads/issues.jsonl`. `finn-beads` keeps them in a [`finn_wal`] log: every mutation
//! is validated, appended (durably, by default) and only then applied, and the in-memory
//! [`State`] is a pure fold of the log. `finn-beads` is part of [finn](https://docs.rs/finn);
//! most users want that facade.
//!
//! # Example
//! ```
//! # let dir = tempfile::tempdir()?;
//! use std::time::Duration;
//! use finn_beads::{Bead, DepType, Options, Outcome, ReadyQuery, Store};
//!
//! let store = Store::open(dir.path(), Options::default())?;
//! store.transact(|tx| {
//!     tx.create(Bead::new("bd-a", "Design the schema"))?;
//!     tx.create(Bead::new("bd-b", "Write the migration"))?;
//!     tx.add_dependency("bd-b", "bd-a", DepType::Blocks)?;
//!     Ok(())
//! })?;
//! // Only bd-a is ready; a worker claims it under a lease.
//! let claim = store.claim("agent-1", Duration::from_secs(600), &ReadyQuery::default())?.unwrap();
//! assert_eq!(claim.bead_id, "bd-a");
//! store.release(&claim, Outcome::Done)?;
//! assert_eq!(store.ready(&ReadyQuery::default())[0].id, "bd-b");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//! - **Write-ahead.** A mutation is durable in the WAL (`Sync`, fdatasync) before it is applied
//!   or acknowledged. An invalid mutation returns a [`ValidationError`] and writes nothing.
//!   A [`Store::transact`] closure commits as one atomic WAL batch: all of it or none of it.
//! - **The state is a fold of the WAL.** Each record is the post-image of one bead (or of one
//!   non-issue record), keyed `bead/<id>`. Replay is in LSN order, skips records at or below the
//!   applied LSN, and applying a record twice changes nothing. Creates carry their id, so replay
//!   never mints a new one. After a crash the state is exactly that of the acknowledged records
//!   (plus, possibly, the one in flight). WAL compaction keeps the newest record per bead, so
//!   history shrinks instead of growing.
//! - **Lossless interop.** Import then export of a real `issues.jsonl` gives the same JSON
//!   objects: unknown fields, unknown record types (`_type`, memories), explicit `null`s and
//!   timestamp spellings are kept. Tombstones are exported so deletions propagate.
//! - **Merging import.** An incoming bead older (`updated_at`) than the local one is skipped and
//!   reported; a stale export re-imported after newer changes loses nothing. `dry_run` reports
//!   without writing.
//! - **Ready work** with `bd ready` semantics ([`State::ready`]): status open, not deferred, no
//!   active `blocks` / `conditional-blocks` / `waits-for` blocker, no blocked parent (transitive);
//!   sort policies, filters, limit and an explanation for every excluded bead. The blocked set is
//!   maintained incrementally on every write.
//! - **Leased claims.** [`Store::claim`] picks the best ready bead and marks it `in_progress` with
//!   a lease in one record: two workers never hold the same bead. Expired leases return to the
//!   queue at the next claim.
//! - **Many processes.** With [`Sharing::MultiProcess`], writers serialize on a lock file held
//!   for a short critical section: lock, reopen the WAL, fold in others' records, validate,
//!   append with `Sync`, unlock. No shell and no external command is run anywhere.
//!
//! # What it does not do
//! - It does not talk to `bd`/`br` or their SQLite databases; interop is through `issues.jsonl`.
//! - Imported records are checked only for a storable id: a foreign file is data to preserve,
//!   not input to police (the fixture in this repository has dependency targets with log lines
//!   glued to them; they are kept and reported as dangling).
//! - It does not write checkpoints itself (finn-beads may not depend on finn-checkpoint; the
//!   `finn` facade wires them): it hands out a snapshot with its LSN and reopens from one, see
//!   "Snapshots and restore".
//! - One transaction is one WAL batch and must fit in a WAL segment (4 MiB by default, see
//!   [`DEFAULT_SEGMENT_SIZE`]); a larger one fails with the WAL's `TooLarge` error and writes
//!   nothing. Imports split themselves into atomic batches of at most 8,192 records and a
//!   quarter segment, made durable by one fdatasync before anything is applied: the atomicity
//!   unit of an import is the batch, and a crash mid-import leaves a prefix of whole batches
//!   (running the same import again completes it).
//! - An import holds the whole input in memory while it runs: the text, the parsed beads and
//!   their WAL payloads. Importing the 68 MB bench file (100,000 beads) into an empty store
//!   peaks at about 0.63 GB resident, the input and the resulting state included.
//! - Reads in [`Sharing::MultiProcess`] mode see other processes' writes after
//!   [`Store::refresh`] (writes always refresh first).
//!
//! # Snapshots and restore
//! The state is a fold of the WAL, so a snapshot is only a shortcut: the bytes of
//! [`Store::snapshot`] (a header with the LSN, then one JSON line per bead and record) cover the
//! WAL up to that LSN. The path through the rest of finn:
//!
//! 1. `let (bytes, lsn) = store.snapshot();` and write `bytes` into the state directory a
//!    finn-checkpoint checkpoint covers, with the manifest at `lsn`;
//! 2. once the checkpoint is uploaded, `wal.prune_through(lsn)` (nothing the snapshot covers is
//!    needed again); writing goes on;
//! 3. after a loss, the finn-recovery cascade restores the state directory (staged, verified,
//!    swapped in) and keeps or restores the WAL after it;
//! 4. [`Store::open_from_snapshot`]`(dir, options, &bytes, lsn)` rebuilds the state from the
//!    snapshot, replays only the records after `lsn` and rebuilds the ready/blocked indexes.
//!
//! A snapshot whose header LSN differs from the one given, or that is truncated, is refused
//! with a typed [`ApplyError`]. The test `restore::snapshot_restored_through_recovery_cascade_then_replay_continues_after_its_lsn`
//! runs steps 1–4 through a real cascade into a fresh data directory.
//!
//! # On-disk format
//! A store directory holds `beads.lock` (the cross-process lock file) and `wal/` (a finn-wal
//! log). Records are `Kind::Bead` puts keyed `bead/<id>` or `record/<key>` whose payload is JSON
//! (`{"v":1,"changes":[...],"bead":{...},"lease":{...}}`); see `docs/formats/finn-beads.md`.
//! Payload version 1; readers accept versions up to their own and refuse newer ones loudly.
//!
//! # Performance
//! `cargo bench -p finn-beads --bench beads` on the 2-vCPU VM, quiet (2026-11-22, 13:02 UTC),
//! 100,000 beads (68 MB of JSONL) with epics, `blocks` chains and 60 % closed; baselines
//! measured in the same run:
//!
//! | bench | result | ratio |
//! |---|---|---|
//! | import 100k, `Sync` | 222k beads/s (0.450 s) | 0.76× the rate of parsing the same lines into `serde_json::Value` on one thread (344 ms, 291k/s); 0.39× that of appending the same payloads to a bare WAL with the same batches and sync (175 ms, 572k/s) |
//! | ready list, all 34,285 ready beads | 0.24 ms | 0.020× a plain scan of open beads + sort (12.3 ms) |
//! | ready list, limit 10 | 0.16 µs | |
//!
//! The import's time moves between runs more than the other rows while the baselines stay
//! put: other runs of the same build gave 229k and 229k beads/s, and 190k and 206k/s right
//! after a CI run had loaded the VM. It was 134k/s at the start of the round.
//!
//! How an import runs:
//! 1. The input is read whole and cut at line ends into 4 MiB pieces (about 6,000 beads).
//! 2. Worker threads (one per core but one) and the calling thread parse the pieces. Each
//!    piece is checked for UTF-8, split into lines, parsed and id-checked. Each bead goes
//!    straight into the `Arc` entry the state will keep. A line that can go into the WAL as
//!    it is, is kept as a range of the input, not copied.
//! 3. Under the store's lock, the calling thread merges the parsed pieces in file order into
//!    one transaction while later pieces are still being parsed. A multi-process store
//!    parses everything first and takes the lock file only for the merge and the commit.
//! 4. The records go to the WAL as atomic batches (at most 8,192 records and a quarter
//!    segment). Each batch's payloads are built just before it is appended, and one
//!    fdatasync ends the import.
//! 5. Meanwhile, a second thread builds the new state from the same entries (only their LSN
//!    is set). The state is swapped in only once every batch is durable at the LSNs it was
//!    built with (else it is folded from the WAL).
//!
//! Every map and index of the state shares one `Arc<str>` per bead id, allocated when the
//! transaction stages the bead, so indexing an edge copies a reference count, not a string.
//! The bulk rebuild visits beads in memory order: an import allocates them in file order,
//! and a visit in hash order cost several cache misses per bead.
//!
//! Where an import's time goes (instrumented, medians of 16, before the last two steps of the
//! round):
//!
//! | phase | time |
//! |---|---|
//! | reading the input | 32 ms |
//! | parsing with the merge running beside it | about 250 ms |
//! | building the records | 10 ms |
//! | the WAL appends (with 16 rotations of the 4 MiB segments) | about 220 ms |
//! | the state build, beside the appends | about 170 ms |
//!
//! What bounds the parse is fresh memory, not JSON:
//! - parsing the same lines and dropping each bead: 2.1 µs per line on one thread;
//! - parsing them and keeping every bead: 3.4 µs per line;
//! - a `Bead` is 928 bytes, mostly optional strings inline, and is now half of a parsed
//!   bead's memory.
//!
//! Parsed beads keep no spare list capacity and size their untyped-field maps for one field,
//! about 1 KB less per bead of a `bd` export. Peak resident set of the 100k import went from
//! 575 MB to 454 MB this round.
//!
//! The ready list walks a dense, pre-sorted copy of the ready pool and reads no bead unless
//! something is deferred; the first query after a write rebuilds that copy from the B-tree
//! (about the cost of one query).
//!
//! # Minimum supported Rust version
//! The workspace `rust-version` (1.89).

mod bead;
mod error;
mod event;
mod export;
mod import;
mod jsonl;
mod queue;
mod ready;
mod run;
mod state;
mod store;
mod timestamp;
mod tx;
mod validate;

pub use bead::{Bead, Comment, DepType, Dependency, IssueType, Priority, Status, WaitsForGate};
pub use error::Error;
pub use event::{BEAD_KEY_PREFIX, Change, Lease, PAYLOAD_VERSION, RECORD_KEY_PREFIX};
pub use import::{IMPORT_CHUNK, ImportOptions, ImportReport, SkippedOlder};
pub use jsonl::{Line, LineError, Reader, other_record_key, parse_line};
pub use queue::{Claim, Expired, Handoff, Outcome, previous_handoff};
pub use ready::{
    BlockedBead, EpicProgress, Excluded, Exclusion, Explanation, FilterMiss, HYBRID_RECENT_WINDOW,
    ReadyQuery, SortPolicy, TreeNode,
};
pub use run::{
    CircuitBreaker, RunState, SprintState, derive_run_state, derive_sprint_state, labels,
    parse_same_issue, same_issue_label,
};
pub use state::{
    ApplyError, BlockReason, Blocker, Entry, FAILURE_CLOSE_KEYWORDS, State, is_failure_close,
};
pub use store::{Clock, DEFAULT_SEGMENT_SIZE, LOCK_FILE, Options, Sharing, Store, WAL_DIR};
pub use timestamp::{Timestamp, TimestampError};
pub use tx::{Patch, Tx};
pub use validate::{
    ALLOWED_TYPES, Limits, MAX_BEAD_ID_LENGTH, MAX_LABEL_LENGTH, MAX_PRIORITY, MAX_STRING_LENGTH,
    MAX_TEXT_LENGTH, ValidationError, is_valid_id_chars, is_valid_label_chars,
};
