//! What a cascade run did: [`RecoveryReport`] and its parts.

use std::path::PathBuf;
use std::time::Duration;

use finn_checkpoint::LineageId;
use finn_wal::Lsn;
use serde::Serialize;

use crate::options::Mode;
use crate::source::SourceKind;
use crate::state::State;

/// Where the state the process came up with came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceUsed {
    /// The source's name (`local` for the local state directory).
    pub name: String,
    /// Its tier; `None` for the local state directory.
    pub kind: Option<SourceKind>,
}

/// The manifest a restored state came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestInfo {
    /// Manifest version (or the source's own candidate number, e.g. for a git commit).
    pub version: u64,
    /// The WAL LSN the base state covers: records at or below it are in the files.
    pub lsn: Lsn,
    /// The key that signed it, as hex, if it was signed.
    pub key_id: Option<String>,
    /// A source-specific label (object key, commit id, template name).
    pub label: String,
    /// The lineage (line of history) the manifest belongs to, when the source knows it. The
    /// boot journal records it as the local state's lineage.
    pub lineage: Option<LineageId>,
}

/// Why the process came up degraded (or in [`State::LoopDetected`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DegradedReason {
    /// No source could provide a verified state; the template was installed.
    TemplateOnly,
    /// The boot journal saw `failures` failed boots inside `window`; remote sources were not tried.
    BootLoop {
        /// Failed boots counted inside the window.
        failures: u32,
        /// The window.
        window: Duration,
    },
    /// A base state was restored, but WAL records after it could not all be restored: the state
    /// ends at `last_lsn` although records up to at least `missing_from` were acknowledged.
    WalIncomplete {
        /// The last LSN restored.
        last_lsn: Lsn,
        /// The first LSN that could not be found.
        missing_from: Lsn,
    },
    /// The overall deadline passed before a remote source could restore; the template was used.
    DeadlineExceeded,
    /// A base state was restored, but the shipped WAL after it could not be read (unreachable,
    /// a batch failed verification, or a hole): records after `base` may be missing.
    ShippedWalUnreadable {
        /// The base state's LSN.
        base: Lsn,
        /// The source whose shipped WAL failed.
        source: String,
    },
    /// The local state was kept, but the remote's newest history is another line of history
    /// (a fork): both hold writes the other lacks. Nothing was replaced; an operator decides
    /// (keep the local state with `Recovery::mark_local_authoritative`, or restore the remote
    /// one elsewhere).
    LineageFork {
        /// The local state's lineage; `None` for a state started from a template.
        local: Option<LineageId>,
        /// The local WAL's last LSN.
        local_lsn: Lsn,
        /// The remote's newest lineage.
        remote: LineageId,
        /// The remote's high-water LSN for it.
        remote_lsn: Lsn,
    },
    /// The local state is strictly behind the remote on its lineage, but no remote source could
    /// restore the newer state: the stale local state was kept.
    LocalBehind {
        /// The local WAL's last LSN.
        local_lsn: Lsn,
        /// The remote's high-water LSN.
        remote_lsn: Lsn,
    },
    /// The local WAL disagreed with the restored history from `lsn` on (another writer
    /// continued the same lineage): it was set aside, and the remote's records used instead.
    LocalWalDiverged {
        /// The first LSN where the local record differs from the shipped one.
        lsn: Lsn,
        /// Where the local WAL was kept.
        kept_at: PathBuf,
    },
}

/// What the cascade decided about an intact local state (WAL opens cleanly, not below the
/// journal's high-water mark, state directory passes the validators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LocalDecision {
    /// Kept without asking a remote: its lineage is unknown and it did not come from a template,
    /// remote restores are not allowed (boot loop), or no remote source is configured.
    KeptUnchecked,
    /// Kept: no remote source could say what it holds (unreachable, empty, timed out), or none
    /// could restore what it said it holds (then see [`DegradedReason::LocalBehind`]).
    KeptRemoteUnknown,
    /// Kept: it is on the remote's lineage and not behind it.
    KeptCurrent {
        /// The lineage.
        lineage: LineageId,
        /// The local WAL's last LSN.
        local_lsn: Lsn,
        /// The remote's high-water LSN.
        remote_lsn: Lsn,
    },
    /// Kept: it and the remote are different lines of history (see
    /// [`DegradedReason::LineageFork`]).
    KeptFork,
    /// Replaced: on the remote's lineage, strictly behind it.
    ReplacedBehind {
        /// The lineage.
        lineage: LineageId,
        /// The local WAL's last LSN.
        local_lsn: Lsn,
        /// The remote's high-water LSN.
        remote_lsn: Lsn,
    },
    /// Replaced: a template-started state on which nothing was written yet.
    ReplacedUnusedTemplate,
}

/// One phase of the run and how long it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PhaseTiming {
    /// The state.
    pub state: State,
    /// Time spent in it (summed when it was entered more than once).
    pub duration: Duration,
}

/// Something that went wrong but did not stop the run. Every skipped source, candidate and
/// manifest appears here with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// The local state or WAL failed its integrity check.
    LocalIntegrity {
        /// Why.
        reason: String,
    },
    /// A source was not available (or its availability check timed out).
    SourceUnavailable {
        /// The source.
        source: String,
        /// Why.
        reason: String,
    },
    /// A source failed as a whole (listing, cloning, deadline).
    SourceFailed {
        /// The source.
        source: String,
        /// Why.
        reason: String,
    },
    /// A candidate (manifest version, commit) of a source was refused; the next one was tried.
    CandidateSkipped {
        /// The source.
        source: String,
        /// The candidate's version.
        version: u64,
        /// Its label (object key, commit).
        label: String,
        /// Why it was refused.
        reason: String,
    },
    /// Something that was in the way was moved aside rather than deleted.
    SetAside {
        /// What it was (`state`, `wal`, `staging`, `boot-journal`).
        what: String,
        /// Where it is now.
        to: PathBuf,
    },
    /// Shipped WAL records could not be read from a source.
    ShippedWalUnavailable {
        /// The source.
        source: String,
        /// Why.
        reason: String,
    },
    /// A source's shipped WAL has a hole: the records before it were replayed, those from
    /// `first_missing` on were not (records beyond the hole cannot be applied without it).
    ShippedGap {
        /// The source.
        source: String,
        /// The lineage read.
        lineage: LineageId,
        /// The first missing LSN.
        first_missing: Lsn,
        /// The last missing LSN (the batch after the hole says it follows this one).
        last_missing: Lsn,
    },
    /// The restored WAL has a hole: records from `missing_from` on were not found anywhere.
    WalGap {
        /// The last LSN that could be restored.
        last_lsn: Lsn,
        /// The first missing LSN.
        missing_from: Lsn,
    },
    /// The local WAL ends below the LSN recorded at the previous successful boot: records
    /// were lost locally.
    WalWentBackwards {
        /// The local WAL's last LSN now.
        now: Lsn,
        /// The last LSN seen at the previous boot.
        previously: Lsn,
    },
    /// The boot journal could not be read; it was set aside and a new one started.
    JournalUnreadable {
        /// Why.
        reason: String,
    },
    /// A clean start was requested: existing state was set aside.
    CleanStart,
    /// Pruning `recovery/aside/` failed; nothing else depends on it and the boot went on.
    AsideNotPruned {
        /// Why.
        reason: String,
    },
    /// The local state and the remote's newest history are different lines of history; the
    /// local state was kept (see [`DegradedReason::LineageFork`]).
    LineageFork {
        /// The local state's lineage; `None` for a state started from a template.
        local: Option<LineageId>,
        /// The local WAL's last LSN.
        local_lsn: Lsn,
        /// The remote's newest lineage.
        remote: LineageId,
        /// The remote's high-water LSN for it.
        remote_lsn: Lsn,
    },
    /// The local WAL holds a record that differs from the shipped record at the same LSN.
    LocalWalDiverged {
        /// The first differing LSN.
        lsn: Lsn,
    },
    /// The overall deadline passed; remaining remote sources were not tried.
    DeadlineExceeded {
        /// The deadline.
        after: Duration,
    },
}

/// The result of a cascade run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The terminal state.
    pub state: State,
    /// The mode the cascade ran in.
    pub mode: Mode,
    /// Why the process came up degraded; `None` when [`State::Running`].
    pub degraded: Option<DegradedReason>,
    /// Where the base state came from.
    pub source: Option<SourceUsed>,
    /// Why the local state was kept or replaced, when there was an intact one to decide about.
    pub local_decision: Option<LocalDecision>,
    /// The lineage the state now belongs to, as recorded in the boot journal (`None` while
    /// unknown: a state created locally or from a template).
    pub lineage: Option<LineageId>,
    /// The manifest of the restored base state; `None` for the local state.
    pub manifest: Option<ManifestInfo>,
    /// Files written into the state directory by this run.
    pub files_restored: usize,
    /// Bytes written into the state directory by this run.
    pub bytes_restored: u64,
    /// Files whose blake3 (and validators) were checked before they became visible.
    pub files_verified: usize,
    /// WAL records restored into the local WAL (from shipped WAL), above the base LSN.
    pub wal_records_restored: u64,
    /// The first LSN the application must apply on top of the base state (base LSN + 1);
    /// `None` when the local state was kept (it is already up to date with the local WAL).
    pub replay_from: Option<Lsn>,
    /// The local WAL's oldest retained LSN after the run (`None` if it holds no record).
    pub wal_first_lsn: Option<Lsn>,
    /// The local WAL's last LSN after the run.
    pub wal_last_lsn: Lsn,
    /// Where previous state directories, WALs or staging leftovers were kept.
    pub set_aside: Vec<PathBuf>,
    /// Old entries of `recovery/aside/` deleted by the [`AsideRetention`](crate::AsideRetention)
    /// policy at the end of this run, oldest first.
    pub aside_pruned: Vec<PathBuf>,
    /// Time per phase, in the order the phases were first entered.
    pub phases: Vec<PhaseTiming>,
    /// Total run time.
    pub total: Duration,
    /// Every warning, in order.
    pub warnings: Vec<Warning>,
}

impl RecoveryReport {
    pub(crate) fn new(mode: Mode) -> Self {
        Self {
            state: State::Start,
            mode,
            degraded: None,
            source: None,
            local_decision: None,
            lineage: None,
            manifest: None,
            files_restored: 0,
            bytes_restored: 0,
            files_verified: 0,
            wal_records_restored: 0,
            replay_from: None,
            wal_first_lsn: None,
            wal_last_lsn: Lsn::ZERO,
            set_aside: Vec::new(),
            aside_pruned: Vec::new(),
            phases: Vec::new(),
            total: Duration::ZERO,
            warnings: Vec::new(),
        }
    }

    pub(crate) fn add_phase(&mut self, state: State, duration: Duration) {
        match self.phases.iter_mut().find(|p| p.state == state) {
            Some(p) => p.duration += duration,
            None => self.phases.push(PhaseTiming { state, duration }),
        }
    }

    /// Time spent in `state` (zero if never entered).
    pub fn phase(&self, state: State) -> Duration {
        self.phases
            .iter()
            .find(|p| p.state == state)
            .map_or(Duration::ZERO, |p| p.duration)
    }

    /// Whether the process came up (any terminal state but [`State::Failed`]).
    pub fn is_up(&self) -> bool {
        matches!(
            self.state,
            State::Running | State::Degraded | State::LoopDetected
        )
    }
}
