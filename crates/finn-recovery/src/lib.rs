//! A recovery cascade (object store, git, template) with verified restores, WAL replay and
//! boot-loop detection.
//!
//! `finn-recovery` brings an agent's state up at boot, whatever happened to the machine: it
//! keeps a healthy local state, restores a lost or damaged one from the newest checkpoint that
//! verifies, replays every WAL record acknowledged after that checkpoint, and knows when the
//! process is crash-looping. Most users want the [finn](https://docs.rs/finn) facade, which wires
//! it to finn-wal and finn-checkpoint.
//!
//! # Example
//!
//! ```no_run
//! use finn_checkpoint::{Keyring, Remote, RemoteOptions, StoreOptions, VerifyingKey};
//! use finn_recovery::source::{git::GitSource, object_store::ObjectStoreSource};
//! use finn_recovery::{Cascade, Layout, Mode, State, TemplateSource, Validators};
//! # async fn boot() -> Result<(), Box<dyn std::error::Error>> {
//! let keyring = Keyring::trusting(VerifyingKey::load("/etc/agent/checkpoint.pub")?);
//! let remote = Remote::from_url("s3://bucket/agent-1", &StoreOptions::from_env(), RemoteOptions::default())?;
//! let recovery = Cascade::builder(Layout::new("/var/lib/agent"))
//!     .mode(Mode::Degraded)
//!     .source(ObjectStoreSource::new(remote, keyring.clone()))
//!     .source(GitSource::new("https://git.example.com/agent-state.git", keyring))
//!     .source(TemplateSource::bundled("default").with_file("NOTES.md", b"# NOTES.md\n".to_vec())?)
//!     .validators(Validators::new().file("NOTES.md", |b: &[u8]| std::str::from_utf8(b).map(drop)))
//!     .on_event(|event| eprintln!("{event:?}"))
//!     .build()
//!     .run()
//!     .await?;
//! let report = recovery.report();
//! if report.state != State::Running {
//!     eprintln!("came up {}: {:?}", report.state, report.degraded);
//! }
//! // Apply records from `report.replay_from` on, then keep appending to the same WAL.
//! let wal = recovery.wal();
//! # let _ = wal; Ok(()) }
//! ```
//!
//! # The cascade
//!
//! An explicit [`State`] machine: `START` (lock `recovery/lock`, repair an interrupted swap,
//! open the boot journal) → `CHECK_INTEGRITY` (open the local WAL; check the local state
//! directory) → `RESTORE_OBJECT_STORE` → `RESTORE_GIT` → `RESTORE_TEMPLATE`, each candidate
//! through `VERIFY` and an atomic swap → `REPLAY_WAL` → `RUNNING`, `DEGRADED`, `LOOP_DETECTED`
//! or `FAILED`. Every transition and skip is an [`Event`] (callback, channel, `tracing`) and
//! every skipped source or manifest is a [`Warning`] with its reason in the [`RecoveryReport`].
//!
//! - **Local first.** A local state directory that exists, holds no symlink or special file and
//!   passes the [`Validators`], with a WAL that opens cleanly and has not gone backwards since
//!   the last boot, is *intact*. An intact state is kept unless replacing it loses nothing (see
//!   "Which state wins" below). A corrupt WAL is moved to `recovery/aside/` and the state
//!   restored.
//! - **Sources by tier** ([`SourceKind`]): object stores ([`source::object_store`]: the newest
//!   manifest that verifies, then older ones newest first), git archives ([`source::git`]),
//!   templates ([`TemplateSource`]). Custom sources implement [`RecoverySource`].
//! - **Timeouts that cancel** ([`Timeouts`]): availability 5 s, restore 30 s per source, 120 s for
//!   all remote sources; a timed-out source's future is dropped (git children are killed) and its
//!   staging directory discarded.
//! - **Modes** ([`Mode`]): `Strict` fails rather than come up degraded and then installs nothing;
//!   `Degraded` (default) comes up with the best state that verified and says why; `Clean` starts
//!   from the template and moves the old state and WAL aside.
//!
//! # Which state wins
//!
//! The boot journal records the *lineage* (line of history, [`finn_checkpoint::LineageId`]) the
//! local state belongs to when it is known — from the manifest it was restored from, from a boot
//! that proved it, or from [`Recovery::mark_local_authoritative`] — and whether the state was
//! installed from a template (*provisional*) with the WAL's LSN at that moment. For an intact
//! local state:
//!
//! 1. Lineage unknown and not provisional, a boot loop, or no remote source: **kept** without
//!    asking anyone ([`LocalDecision::KeptUnchecked`]).
//! 2. Provisional with no record written since the template: **replaced** by the first remote
//!    source that restores (nothing acknowledged is lost); kept if none can.
//! 3. Otherwise the remote's newest verified history is read ([`RecoverySource::head`]: the
//!    newest manifest that verifies and the shipped high-water mark of its lineage) and the
//!    local WAL's record at the highest LSN both have is compared with the shipped one (record
//!    ids are ULIDs, so an equal record proves a shared history; a different one proves a
//!    split). Remote unreachable: **kept** ([`LocalDecision::KeptRemoteUnknown`]).
//! 4. Same history (proved, or the same lineage id with nothing to compare) and the local WAL
//!    not behind the remote's high-water LSN: **kept** and authoritative; a provisional state
//!    stops being provisional and takes the remote's lineage ([`LocalDecision::KeptCurrent`]).
//! 5. Same lineage and strictly behind: **replaced** by the remote (newest verified manifest
//!    plus shipped WAL; [`LocalDecision::ReplacedBehind`]). Local WAL records the remote also
//!    has are kept; if a local record differs from the shipped one at its LSN (another writer
//!    continued the lineage), the local WAL is set aside whole (`aside/<ulid>-diverged-wal`),
//!    never mixed in, and the boot is [`DegradedReason::LocalWalDiverged`]. If no remote source
//!    can restore after all, the stale local state is kept and the boot is `DEGRADED`
//!    ([`DegradedReason::LocalBehind`]; `Strict` refuses).
//! 6. Anything else is a **fork** (a template-era state with writes against a remote that came
//!    back with another history, or two different lineages): both sides hold writes the other
//!    lacks. The local state is kept, nothing is replaced or set aside, and the boot is
//!    `DEGRADED` with [`DegradedReason::LineageFork`] naming both lineages and LSNs; `Strict`
//!    refuses and touches nothing. An operator settles it with
//!    [`Recovery::mark_local_authoritative`] (keep the local side) or by restoring the remote
//!    elsewhere.
//!
//! [`Recovery::confirm_boot`] does not end the provisional status: a confirmed boot is a healthy
//! process, not a decision about whose data is real.
//!
//! # Guarantees
//!
//! - **Nothing unverified becomes visible.** A candidate is staged in `recovery/staging/<ulid>/`
//!   (files created `O_EXCL|O_NOFOLLOW`, fdatasynced; directories fsynced), must match its file
//!   list exactly (every size and blake3, no extra file, no symlink or special file) and pass the
//!   validators, then replaces the state directory with one `renameat2(RENAME_EXCHANGE)`, parents
//!   fsynced. A crash at any point leaves the whole old state or the whole new one (tested with
//!   SIGKILL at random points, 50 times per run).
//! - **Nothing is deleted by a restore.** Replaced states, corrupt or diverged WALs and
//!   clean-start leftovers go to `recovery/aside/<ulid>-<what>` (one ULID per run: an *aside
//!   set*). After a run that came up, sets are pruned by [`AsideRetention`]: the newest 3 are
//!   always kept, and no set younger than 7 days is ever deleted; entries not named by the
//!   cascade are never touched. [`AsideRetention::keep_all`] turns pruning off.
//! - **Trust.** Manifests are verified by finn-checkpoint ([`finn_checkpoint::Keyring`]: trusted
//!   ed25519 keys by id, revocation wins over trust; every manifest byte is signed). finn-checkpoint's
//!   manifest format has no unsigned form, so an unsigned manifest cannot be accepted at all.
//!   Paths are validated ([`finn_checkpoint::CheckpointPath`]): `../outside` is refused before
//!   anything is written.
//! - **Latest acknowledged state.** After a base state at LSN *n* is installed, every shipped
//!   record above *n* is appended to the local WAL verbatim (`advance_to` + `append_replicated`),
//!   so the WAL continues above them and no LSN is reused. A jump in the verified shipped chain
//!   (a lineage forked by a restore to the past continues above its prefix's high-water mark)
//!   is history, not a hole: the records after it are replayed too. A hole (a batch whose
//!   predecessor is missing) does not discard the shipped WAL: the verified records before the hole are replayed, the hole is a
//!   [`Warning::ShippedGap`] with its LSN range, and the boot is `DEGRADED`
//!   ([`DegradedReason::WalIncomplete`]); `Strict` refuses before anything is installed.
//! - **Boot loops are seen across processes.** The [`BootJournal`] (`recovery/boot-journal.json`,
//!   written durably before anything else) counts boots that failed or died; `max_failures` (3)
//!   inside `window` (10 min) → `LOOP_DETECTED`: no remote restore, local state or template, and
//!   the reason. A `RUNNING` boot clears it; a degraded boot is not a failure.
//!
//! # What it does not do
//!
//! - It does not apply WAL records to the application's state: it says where to start
//!   ([`RecoveryReport::replay_from`]) and hands back the open [`finn_wal::Wal`].
//! - It does not take the checkpoint writer's lease; open the `finn_checkpoint::Checkpointer`
//!   before the cascade so a zombie writer is fenced off before the restore reads the prefix.
//! - It does not keep `recovery/aside/` forever: sets older than the grace period beyond the
//!   newest few are deleted ([`AsideRetention`]); copy out what must outlive that.
//!
//! # On-disk format
//!
//! The data-directory layout, the boot journal and the swap record are specified in
//! `docs/formats/finn-recovery.md`; in short see [`Layout`].
//!
//! # Performance
//!
//! `benches/cascade.rs` restores 100 MiB of state (100 files, incompressible) plus 100,000
//! shipped WAL records from a LocalFileSystem store through the whole cascade, next to a plain
//! copy-and-fdatasync of the same bytes in the same run. Measured on the shared 2-core CI machine
//! (ext4, release): **1.37 s** for the cascade against 1.89 s for the serial durable copy (0.73×;
//! target ≤ 2 s met). Details in the README.

mod aside;
mod cascade;
mod durable;
mod error;
mod layout;
mod loop_guard;
mod options;
mod replay;
mod report;
pub mod source;
mod stage;
mod state;
mod verify;

pub use aside::{AsideRetention, DEFAULT_ASIDE_GRACE, DEFAULT_ASIDE_KEEP};
pub use cascade::{Cascade, CascadeBuilder, Recovery};
pub use error::{CascadeError, SourceFailure};
pub use layout::Layout;
pub use loop_guard::{
    Attempt, BootJournal, Clock, JournalError, LoopVerdict, Outcome, SystemClock,
};
pub use options::{BootConfirmation, LoopPolicy, Mode, Timeouts};
pub use report::{
    DegradedReason, LocalDecision, ManifestInfo, PhaseTiming, RecoveryReport, SourceUsed, Warning,
};
pub use source::template::TemplateSource;
pub use source::{
    Candidate, RecoverySource, RemoteHead, ShippedWal, SourceError, SourceKind, Staged,
};
pub use stage::{StageError, Staging};
pub use state::{Event, State};
pub use verify::{ExpectedFile, ValidationError, Validator, Validators, VerifyError};
