//! The boot journal: boot-loop detection that survives the process it protects.
//!
//! The anchors kept failures in memory, so a process that crashed during recovery and was
//! restarted by its supervisor started with a clean slate every time and never saw its own loop;
//! and they counted *source* failures, so a healthy boot that skipped an unavailable source
//! tripped the detector on the fourth run. Here every boot attempt is a record in a small file in
//! the data directory, written durably (temp file, fdatasync, rename, directory fsync) *before*
//! any restore starts, and closed with its outcome when the cascade ends. An attempt whose outcome
//! is still `pending` when the next boot reads the journal died mid-boot: it counts as a failure.
//! Counted are boots, not sources; a boot that came up degraded is not a failure; a boot that
//! reached `RUNNING` clears the history.
//!
//! The window is measured on the wall clock, because the journal outlives processes (a monotonic
//! clock restarts with the machine). A [`Clock`] can be injected for tests and simulations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use finn_checkpoint::LineageId;
use serde::{Deserialize, Serialize};

use crate::options::LoopPolicy;

/// File name of the boot journal inside the recovery directory.
pub const JOURNAL_FILE: &str = "boot-journal.json";
/// Value of the journal's `format` field.
pub const JOURNAL_FORMAT: &str = "finn-recovery/boot-journal";
/// Current journal version; readers refuse newer versions (and set the file aside).
pub const JOURNAL_VERSION: u32 = 1;
/// At most this many attempts are kept, oldest dropped first.
pub const MAX_ATTEMPTS: usize = 64;

/// The wall clock, in milliseconds since the Unix epoch. Injectable for tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// How a boot attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// Started and not (yet) finished. Found at the next boot, it means the process died.
    Pending,
    /// Came up with the latest state.
    Running,
    /// Came up degraded (not a failure).
    Degraded,
    /// Came up in loop-detected mode (not a failure: the loop is being handled).
    LoopDetected,
    /// Did not come up.
    Failed,
}

/// One boot attempt as stored in the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Attempt number, increasing across the journal's life.
    pub seq: u64,
    /// Process id of the booting process.
    pub pid: u32,
    /// When the attempt started (ms since the Unix epoch, per the journal's clock).
    pub started_ms: u64,
    /// When it ended, if it did.
    pub ended_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct JournalFile {
    format: String,
    version: u32,
    /// Highest local WAL LSN seen at the end of a boot that came up; a later boot that finds the
    /// local WAL below it knows records were lost locally.
    wal_high_water: u64,
    /// The state directory was installed from a template by the last boot that changed it; the
    /// next boot tries the remote sources again before settling for it.
    #[serde(default)]
    state_from_template: bool,
    /// The local WAL's last LSN when the template was installed: records above it were written
    /// on top of the template (acknowledged local writes a restore must not drop).
    #[serde(default)]
    template_lsn: u64,
    /// The line of history the local state and WAL belong to, when known: set by a restore
    /// from a manifest that names it, by a boot that proved the local WAL shares the remote's
    /// history, or by `Recovery::mark_local_authoritative`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lineage: Option<LineageId>,
    next_seq: u64,
    attempts: Vec<Attempt>,
}

impl Default for JournalFile {
    fn default() -> Self {
        Self {
            format: JOURNAL_FORMAT.to_owned(),
            version: JOURNAL_VERSION,
            wal_high_water: 0,
            state_from_template: false,
            template_lsn: 0,
            lineage: None,
            next_seq: 1,
            attempts: Vec::new(),
        }
    }
}

/// What the journal says about the boot that is starting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopVerdict {
    /// Failed (or died) boots inside the window, not counting this one.
    pub recent_failures: u32,
    /// Whether `recent_failures` reached the policy's threshold.
    pub loop_detected: bool,
    /// This attempt's number.
    pub attempt: u64,
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading, writing or setting aside the journal failed.
    #[error("boot journal {path}: i/o error")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The journal is not valid (bad JSON, unknown format or a newer version).
    #[error("boot journal {path} is unreadable: {reason}")]
    Unreadable {
        /// The journal file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// [`BootJournal::finish`] was called with no attempt begun.
    #[error("no boot attempt is in progress")]
    NoAttempt,
}

/// The persisted boot-attempt journal: each boot is recorded durably before it starts and
/// closed with its outcome; boots that failed or died inside the window are counted.
///
/// ```
/// use finn_recovery::{BootJournal, LoopPolicy, Outcome, SystemClock};
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("boot-journal.json");
/// let policy = LoopPolicy::default();
/// let clock = std::sync::Arc::new(SystemClock);
/// for _ in 0..3 {
///     let mut journal = BootJournal::load(&path, policy, clock.clone())?;
///     journal.begin()?;
///     // ...the process dies here, before finish(): a failed boot
/// }
/// let mut journal = BootJournal::load(&path, policy, clock)?;
/// assert!(journal.begin()?.loop_detected);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BootJournal {
    path: PathBuf,
    policy: LoopPolicy,
    clock: Arc<dyn Clock>,
    file: JournalFile,
    current: Option<u64>,
}

impl BootJournal {
    /// Reads the journal at `path`; a missing file is an empty journal. An unreadable one is an
    /// error ([`BootJournal::load_or_set_aside`] recovers from that).
    pub fn load(
        path: impl AsRef<Path>,
        policy: LoopPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, JournalError> {
        let path = path.as_ref().to_path_buf();
        let file = match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JournalFile::default(),
            Err(source) => return Err(JournalError::Io { path, source }),
        };
        Ok(Self {
            path,
            policy,
            clock,
            file,
            current: None,
        })
    }

    /// Like [`BootJournal::load`], but an unreadable journal is renamed to
    /// `boot-journal.json.unreadable-<ms>` (kept for inspection) and a new one started. Returns
    /// the reason and the new location of the old file when that happened.
    ///
    /// Starting afresh forgets earlier failures; the alternative, refusing to boot because a
    /// 1 KiB bookkeeping file rotted, would be worse.
    pub fn load_or_set_aside(
        path: impl AsRef<Path>,
        policy: LoopPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Option<(String, PathBuf)>), JournalError> {
        let path = path.as_ref();
        match Self::load(path, policy, clock.clone()) {
            Ok(journal) => Ok((journal, None)),
            Err(JournalError::Unreadable { reason, .. }) => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(format!(".unreadable-{}", clock.now_ms()));
                let aside = PathBuf::from(aside);
                let io = |source| JournalError::Io {
                    path: path.to_owned(),
                    source,
                };
                std::fs::rename(path, &aside).map_err(io)?;
                if let Some(dir) = path.parent() {
                    crate::durable::sync_dir(dir).map_err(io)?;
                }
                let journal = Self {
                    path: path.to_owned(),
                    policy,
                    clock,
                    file: JournalFile::default(),
                    current: None,
                };
                Ok((journal, Some((reason, aside))))
            }
            Err(e) => Err(e),
        }
    }

    /// Records a new attempt as `pending`, durably, and says whether the boots before it form a
    /// loop. Call it before doing anything that could crash.
    pub fn begin(&mut self) -> Result<LoopVerdict, JournalError> {
        let now = self.clock.now_ms();
        self.prune(now);
        let recent_failures = self.failures_in_window(now);
        let seq = self.file.next_seq;
        self.file.next_seq = seq.saturating_add(1);
        self.file.attempts.push(Attempt {
            seq,
            pid: std::process::id(),
            started_ms: now,
            ended_ms: None,
            outcome: Outcome::Pending,
        });
        if self.file.attempts.len() > MAX_ATTEMPTS {
            let excess = self.file.attempts.len() - MAX_ATTEMPTS;
            self.file.attempts.drain(..excess);
        }
        self.current = Some(seq);
        self.persist()?;
        let loop_detected =
            self.policy.max_failures > 0 && recent_failures >= self.policy.max_failures;
        Ok(LoopVerdict {
            recent_failures,
            loop_detected,
            attempt: seq,
        })
    }

    /// Records how the current attempt ended, durably. [`Outcome::Running`] clears every earlier
    /// attempt: a good boot ends any loop.
    pub fn finish(&mut self, outcome: Outcome) -> Result<(), JournalError> {
        let seq = self.current.ok_or(JournalError::NoAttempt)?;
        let now = self.clock.now_ms();
        if outcome == Outcome::Running {
            self.file.attempts.retain(|a| a.seq >= seq);
        }
        if let Some(attempt) = self.file.attempts.iter_mut().find(|a| a.seq == seq) {
            attempt.outcome = outcome;
            attempt.ended_ms = Some(now);
        }
        if outcome != Outcome::Pending {
            self.current = None;
        }
        self.persist()
    }

    /// Re-arms [`BootJournal::finish`] for attempt `seq` (deferred confirmation from a handle that
    /// outlived the cascade).
    pub(crate) fn resume(&mut self, seq: u64) {
        self.current = Some(seq);
    }

    /// Failed or died boots inside the window at `now_ms`, excluding the current attempt.
    pub fn failures_in_window(&self, now_ms: u64) -> u32 {
        let window = duration_ms(self.policy.window);
        let count = self
            .file
            .attempts
            .iter()
            .filter(|a| Some(a.seq) != self.current)
            .filter(|a| matches!(a.outcome, Outcome::Failed | Outcome::Pending))
            .filter(|a| in_window(a.started_ms, now_ms, window))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// All attempts kept, oldest first.
    pub fn attempts(&self) -> &[Attempt] {
        &self.file.attempts
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Highest local WAL LSN recorded at the end of a boot.
    pub fn wal_high_water(&self) -> u64 {
        self.file.wal_high_water
    }

    /// Raises the recorded WAL high-water mark (persisted with the next write).
    pub(crate) fn raise_wal_high_water(&mut self, lsn: u64) {
        self.file.wal_high_water = self.file.wal_high_water.max(lsn);
    }

    /// Whether the state directory came from a template (see the format docs).
    pub fn state_from_template(&self) -> bool {
        self.file.state_from_template
    }

    /// The local WAL's last LSN when the template was installed (meaningful while
    /// [`BootJournal::state_from_template`]).
    pub fn template_lsn(&self) -> u64 {
        self.file.template_lsn
    }

    /// Marks the state as installed from a template with the WAL at `wal_lsn`, or clears it.
    pub(crate) fn set_state_from_template(&mut self, value: bool, wal_lsn: u64) {
        self.file.state_from_template = value;
        self.file.template_lsn = if value { wal_lsn } else { 0 };
    }

    /// The lineage the local state belongs to, when known.
    pub fn lineage(&self) -> Option<LineageId> {
        self.file.lineage
    }

    pub(crate) fn set_lineage(&mut self, lineage: Option<LineageId>) {
        self.file.lineage = lineage;
    }

    /// Writes the journal now (durably), e.g. after the lineage changed outside a run.
    pub(crate) fn save(&self) -> Result<(), JournalError> {
        self.persist()
    }

    /// Lowers it: after records were knowingly lost, the new tail is the truth.
    pub(crate) fn reset_wal_high_water(&mut self, lsn: u64) {
        self.file.wal_high_water = lsn;
    }

    fn prune(&mut self, now: u64) {
        let window = duration_ms(self.policy.window);
        // Old successes and failures outside the window carry no information any more.
        self.file
            .attempts
            .retain(|a| in_window(a.started_ms, now, window));
    }

    fn persist(&self) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(&self.file)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        bytes.push(b'\n');
        crate::durable::write_atomic(&self.path, &bytes).map_err(io)
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<JournalFile, JournalError> {
    let unreadable = |reason: String| JournalError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let file: JournalFile =
        serde_json::from_slice(bytes).map_err(|e| unreadable(format!("invalid json: {e}")))?;
    if file.format != JOURNAL_FORMAT {
        return Err(unreadable(format!("unknown format {:?}", file.format)));
    }
    if file.version > JOURNAL_VERSION {
        return Err(unreadable(format!(
            "version {} is newer than this build ({JOURNAL_VERSION})",
            file.version
        )));
    }
    Ok(file)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether an attempt started at `started` is inside the window ending at `now`. An attempt
/// "in the future" (the wall clock stepped back) counts, unless it is more than a whole window
/// ahead: then the clock was wrong at the time and the entry must not pin the loop forever.
fn in_window(started: u64, now: u64, window: u64) -> bool {
    if started > now {
        started - now <= window
    } else {
        now - started < window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug)]
    struct FakeClock(AtomicU64);
    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn policy(max: u32, window_ms: u64) -> LoopPolicy {
        LoopPolicy {
            max_failures: max,
            window: Duration::from_millis(window_ms),
        }
    }

    #[test]
    fn anchors_scenario_three_failures_then_loop_detected() {
        // anchors §11.3 "detects recovery loop after N failures in window": max 3, window
        // 1000 ms, clock +100 between runs: 3 failing runs, the 4th is LOOP_DETECTED.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let clock = Arc::new(FakeClock(AtomicU64::new(1_000_000)));
        for run in 0..3 {
            let mut j = BootJournal::load(&path, policy(3, 1000), clock.clone()).unwrap();
            let v = j.begin().unwrap();
            assert!(!v.loop_detected, "run {run}");
            assert_eq!(v.recent_failures, run);
            j.finish(Outcome::Failed).unwrap();
            clock.0.fetch_add(100, Ordering::SeqCst);
        }
        let mut j = BootJournal::load(&path, policy(3, 1000), clock.clone()).unwrap();
        assert!(j.begin().unwrap().loop_detected);
        j.finish(Outcome::LoopDetected).unwrap();
        // After the window, the failures age out.
        clock.0.fetch_add(1000, Ordering::SeqCst);
        let mut j = BootJournal::load(&path, policy(3, 1000), clock).unwrap();
        let v = j.begin().unwrap();
        assert!(!v.loop_detected);
        assert_eq!(v.recent_failures, 0);
    }

    #[test]
    fn degraded_boots_are_not_failures_and_running_resets() {
        // anchors §4.5-1: failures of *successful* runs accumulated and tripped the detector.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let clock = Arc::new(FakeClock(AtomicU64::new(5_000)));
        for _ in 0..10 {
            let mut j = BootJournal::load(&path, policy(3, 600_000), clock.clone()).unwrap();
            assert!(!j.begin().unwrap().loop_detected);
            j.finish(Outcome::Degraded).unwrap();
        }
        for _ in 0..2 {
            let mut j = BootJournal::load(&path, policy(3, 600_000), clock.clone()).unwrap();
            j.begin().unwrap();
            j.finish(Outcome::Failed).unwrap();
        }
        let mut j = BootJournal::load(&path, policy(3, 600_000), clock.clone()).unwrap();
        assert_eq!(j.begin().unwrap().recent_failures, 2);
        j.finish(Outcome::Running).unwrap();
        assert_eq!(j.attempts().len(), 1, "a good boot clears the history");
        let j = BootJournal::load(&path, policy(3, 600_000), clock).unwrap();
        assert_eq!(j.failures_in_window(5_000), 0);
    }

    #[test]
    fn unreadable_journal_is_set_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        std::fs::write(&path, b"{not json").unwrap();
        let clock = Arc::new(FakeClock(AtomicU64::new(7)));
        assert!(matches!(
            BootJournal::load(&path, LoopPolicy::default(), clock.clone()),
            Err(JournalError::Unreadable { .. })
        ));
        let (mut j, aside) =
            BootJournal::load_or_set_aside(&path, LoopPolicy::default(), clock).unwrap();
        let (_, aside) = aside.unwrap();
        assert_eq!(std::fs::read(&aside).unwrap(), b"{not json");
        j.begin().unwrap();
        assert!(path.exists());
    }

    #[test]
    fn clock_far_in_the_future_entry_does_not_pin_the_loop() {
        assert!(
            in_window(1_500, 1_000, 1_000),
            "a small step back still counts"
        );
        assert!(
            !in_window(10_000, 1_000, 1_000),
            "a wildly wrong clock does not"
        );
        assert!(!in_window(0, 1_000, 1_000));
        assert!(in_window(1, 1_000, 1_000));
    }
}
