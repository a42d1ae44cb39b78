//! The learning store: WAL-backed state, lifecycle, effectiveness, retrieval, import and export.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use finn_wal::{Durability, Kind, Lsn, NewRecord, Op, RecoveryReport, Wal};
use serde::{Deserialize, Serialize};

use crate::error::{AddError, ExportError, GateRejection, ImportError, OpenError, TransitionError};
use crate::format::{self, Collection, Dialect};
use crate::index::{Index, Match};
use crate::record::{Effectiveness, Learning, NewLearning, Target};
use crate::snapshot::{self, Damage};
use crate::{
    Action, Evaluation, HeuristicScorer, LearningId, Scorecard, Scorer, Status, Thresholds,
    Timestamp, TransitionRecord,
};

/// Version of the WAL payload envelope (`"v"`).
pub const PAYLOAD_VERSION: u32 = 1;
/// Longest trigger, pattern, solution or title accepted by [`LearningStore::add`], in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// WAL directory inside the store directory used by [`LearningStore::open`].
pub const WAL_DIR: &str = "wal";

/// Settings of a [`LearningStore`].
#[derive(Clone)]
pub struct StoreOptions {
    /// Scores new learnings. Default: [`HeuristicScorer`].
    pub scorer: Arc<dyn Scorer>,
    /// Minimum gate scores. Default: the anchors' ([`Thresholds::default`]).
    pub thresholds: Thresholds,
    /// A learning must share at least this many distinct terms with the context to match (all of
    /// the context's terms if it has fewer). Default: 2, the anchors' floor.
    pub min_term_hits: usize,
    /// Durability of every store write. Default: [`Durability::Sync`] (fdatasync before the call
    /// returns, so an acknowledged change survives `kill -9` and power loss).
    pub durability: Durability,
    /// Options for the WAL [`LearningStore::open`] creates. Default: `finn_wal::Options::default()`.
    pub wal: finn_wal::Options,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            scorer: Arc::new(HeuristicScorer),
            thresholds: Thresholds::default(),
            min_term_hits: 2,
            durability: Durability::Sync,
            wal: finn_wal::Options::default(),
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("scorer", &self.scorer)
            .field("thresholds", &self.thresholds)
            .field("min_term_hits", &self.min_term_hits)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// What happened to the snapshot on open.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotStatus {
    /// There was none; state came from the WAL alone.
    Missing,
    /// It was loaded; WAL records after `lsn` were replayed on top.
    Loaded {
        /// The last record the snapshot covers.
        lsn: Lsn,
    },
    /// It was damaged, has been renamed aside, and state was rebuilt from the whole WAL.
    Quarantined {
        /// Where the damaged file now is.
        path: PathBuf,
        /// What was wrong with it.
        damage: Damage,
    },
}

/// What [`LearningStore::open`] found and did.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenReport {
    /// The WAL's own recovery report (only when the store opened the WAL itself).
    pub wal: Option<RecoveryReport>,
    /// The snapshot's fate.
    pub snapshot: SnapshotStatus,
    /// Learning records replayed from the WAL.
    pub replayed: u64,
    /// The snapshot covered more than the WAL holds (the WAL was lost or truncated); the WAL was
    /// advanced past the snapshot so new records never reuse its positions.
    pub wal_behind_snapshot: bool,
    /// Learnings in the store after open.
    pub learnings: usize,
}

/// A retrieval result.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The learning.
    pub learning: Learning,
    /// Its BM25 score times its effectiveness weight.
    pub score: f64,
    /// Distinct context terms it contains.
    pub hits: usize,
}

/// Counts by status and target (the anchors' `getStats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// All learnings.
    pub total: usize,
    /// By status.
    pub by_status: BTreeMap<Status, usize>,
    /// By target (learnings without a target are not counted here).
    pub by_target: BTreeMap<String, usize>,
    /// Learnings awaiting approval.
    pub pending: usize,
}

/// One imported learning's gate scores: as its file stated them and as the store's scorer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedScore {
    /// The learning.
    pub id: LearningId,
    /// The file's scores checked against the thresholds (if the file had scores).
    pub stated: Option<Evaluation>,
    /// The store's scorer on the same learning.
    pub computed: Evaluation,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Learnings added.
    pub imported: Vec<LearningId>,
    /// Learnings already present with identical content (left as they are).
    pub unchanged: Vec<LearningId>,
    /// Gate scores of every learning in the input.
    pub scores: Vec<ImportedScore>,
}

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Damaged files found where the export was going, renamed aside instead of overwritten.
    pub quarantined: Vec<(PathBuf, PathBuf)>,
}

/// The WAL payload of a learning record: JSON `{"v": 1, "type": ..., ...}`.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    body: Payload,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Payload {
    /// Full state of one learning; key `learning/{id}`.
    Learning { learning: Box<Learning> },
    /// One audit record; key `transition/{id}/{seq:010}`.
    Transition { transition: TransitionRecord },
    /// An imported file's layout; key `collection/{name}`.
    Collection { collection: Collection },
}

fn encode(body: Payload) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        v: PAYLOAD_VERSION,
        body,
    })
    .unwrap_or_default()
}

fn learning_record(l: &Learning) -> NewRecord {
    NewRecord::put(
        Kind::Learning,
        format!("learning/{}", l.id),
        encode(Payload::Learning {
            learning: Box::new(l.clone()),
        }),
    )
}

fn transition_record(t: &TransitionRecord) -> NewRecord {
    NewRecord::put(
        Kind::Learning,
        format!("transition/{}/{:010}", t.id, t.seq),
        encode(Payload::Transition {
            transition: t.clone(),
        }),
    )
}

fn collection_record(c: &Collection) -> NewRecord {
    NewRecord::put(
        Kind::Learning,
        format!("collection/{}", c.name),
        encode(Payload::Collection {
            collection: c.clone(),
        }),
    )
}

#[derive(Default)]
struct State {
    learnings: BTreeMap<LearningId, Learning>,
    history: HashMap<LearningId, Vec<TransitionRecord>>,
    collections: BTreeMap<String, Collection>,
    index: Index,
    applied: Lsn,
}

impl State {
    fn put_learning(&mut self, l: Learning) {
        let weight = l.effectiveness.unwrap_or_default().ranking_weight();
        if l.status == Status::Active {
            // An effectiveness update leaves the text alone: reweigh instead of re-indexing.
            let indexed_same_text = self.learnings.get(&l.id).is_some_and(|old| {
                old.status == Status::Active
                    && old.trigger == l.trigger
                    && old.pattern == l.pattern
                    && old.solution == l.solution
                    && old.title == l.title
                    && old.tags == l.tags
            });
            if indexed_same_text {
                self.index.set_weight(&l.id, weight);
            } else {
                self.index.insert(&l, weight);
            }
        } else {
            self.index.remove(&l.id);
        }
        self.learnings.insert(l.id.clone(), l);
    }

    fn put_transition(&mut self, t: TransitionRecord) {
        let h = self.history.entry(t.id.clone()).or_default();
        // Replay after a snapshot may meet a record the snapshot already holds.
        if !h.iter().any(|x| x.seq == t.seq) {
            h.push(t);
            h.sort_by_key(|x| x.seq);
        }
    }

    fn apply(&mut self, p: Payload) {
        match p {
            Payload::Learning { learning } => self.put_learning(*learning),
            Payload::Transition { transition } => self.put_transition(transition),
            Payload::Collection { collection } => {
                self.collections.insert(collection.name.clone(), collection);
            }
        }
    }

    fn body(&self) -> snapshot::Body {
        let mut transitions: Vec<TransitionRecord> =
            self.history.values().flatten().cloned().collect();
        transitions.sort_by(|a, b| a.id.cmp(&b.id).then(a.seq.cmp(&b.seq)));
        snapshot::Body {
            learnings: self.learnings.values().cloned().collect(),
            transitions,
            collections: self.collections.values().cloned().collect(),
        }
    }

    fn from_body(body: snapshot::Body, applied: Lsn) -> Self {
        let mut s = State {
            applied,
            ..State::default()
        };
        for l in body.learnings {
            s.put_learning(l);
        }
        for t in body.transitions {
            s.put_transition(t);
        }
        for c in body.collections {
            s.collections.insert(c.name.clone(), c);
        }
        s
    }
}

/// A crash-safe store of learnings.
///
/// Every change is a `Kind::Learning` WAL record (or an atomic batch of them) made durable before
/// the call returns; the in-memory state is updated only after the WAL accepted the change, so a
/// failed call leaves nothing visible. Reads never touch the disk. See the crate docs.
///
/// `LearningStore` is `Send + Sync`; share it with `Arc`. Writers are serialised; readers run
/// concurrently with each other.
pub struct LearningStore {
    wal: Arc<Wal>,
    dir: PathBuf,
    options: StoreOptions,
    state: RwLock<State>,
    writer: Mutex<()>,
}

impl fmt::Debug for LearningStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LearningStore")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LearningStore {
    /// Opens (creating if missing) a store in `dir`: the WAL in `dir/wal`, the snapshot in
    /// `dir/learnings.snapshot`. A second opener of the same directory, in this or another
    /// process, gets `OpenError::Wal(finn_wal::Error::Locked { .. })`: two writers can never
    /// lose each other's updates.
    ///
    /// ```
    /// use finn_learning::{LearningStore, NewLearning, Source, StoreOptions, Target};
    /// # let dir = tempfile::tempdir()?;
    /// let (store, _report) = LearningStore::open(dir.path(), StoreOptions::default())?;
    /// let learning = store.add(NewLearning::new(
    ///     Source::Sprint,
    ///     Target::Devcontainer,
    ///     "When the build fails and if the deploy step reports an error",
    ///     "A common pattern: a stale lockfile breaks the build; the same approach fixes every package manager",
    ///     "Delete the lockfile with `rm package-lock.json`, reinstall; tested and verified.",
    /// ))?;
    /// let found = store.find_matching("deploy build error after upgrade", 5);
    /// assert_eq!(found[0].learning.id, learning.id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<(LearningStore, OpenReport), OpenError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (wal, wal_report) = Wal::open(dir.join(WAL_DIR), options.wal.clone())?;
        let (store, mut report) = Self::with_wal(Arc::new(wal), dir, options)?;
        report.wal = Some(wal_report);
        Ok((store, report))
    }

    /// Opens a store on a WAL shared with other components (only `Kind::Learning` records are
    /// read or written); `dir` holds the snapshot and exports' quarantine.
    pub fn with_wal(
        wal: Arc<Wal>,
        dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<(LearningStore, OpenReport), OpenError> {
        if options.min_term_hits == 0 {
            return Err(OpenError::InvalidOptions {
                reason: "min_term_hits must be at least 1",
            });
        }
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let snap_path = dir.join(snapshot::SNAPSHOT_FILE);
        let (mut state, snapshot_status) = match std::fs::read(&snap_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (State::default(), SnapshotStatus::Missing)
            }
            Err(e) => return Err(io_err(&snap_path)(e)),
            Ok(bytes) => match snapshot::decode(&bytes) {
                Ok((lsn, body)) => {
                    let lsn = Lsn::new(lsn);
                    (State::from_body(body, lsn), SnapshotStatus::Loaded { lsn })
                }
                Err(damage) => {
                    let aside = snapshot::quarantine(&snap_path).map_err(io_err(&snap_path))?;
                    tracing::warn!(
                        path = %aside.display(), %damage,
                        "learning snapshot damaged; quarantined, rebuilding from the WAL"
                    );
                    if let Some(first) = wal.first_lsn()
                        && first > Lsn::new(1)
                    {
                        return Err(OpenError::SnapshotDamagedAndWalPruned {
                            quarantined: aside,
                            first_lsn: first,
                        });
                    }
                    (
                        State::default(),
                        SnapshotStatus::Quarantined {
                            path: aside,
                            damage,
                        },
                    )
                }
            },
        };
        let mut wal_behind_snapshot = false;
        if state.applied > wal.last_lsn() {
            wal.advance_to(state.applied.next())?;
            wal_behind_snapshot = true;
        }
        let mut replayed = 0u64;
        for rec in wal.iter_from(state.applied.next())? {
            let rec = rec?;
            if rec.kind != Kind::Learning {
                continue;
            }
            if rec.op == Op::Put {
                let env: Envelope = serde_json::from_slice(&rec.payload).map_err(|source| {
                    OpenError::BadRecord {
                        lsn: rec.lsn,
                        source,
                    }
                })?;
                state.apply(env.body);
            } else if rec.op == Op::Delete
                && let Some(id) = rec
                    .key
                    .as_deref()
                    .and_then(|k| k.strip_prefix("learning/"))
                    .and_then(|k| LearningId::parse(k).ok())
            {
                state.learnings.remove(&id);
                state.index.remove(&id);
            }
            state.applied = rec.lsn;
            replayed += 1;
        }
        let report = OpenReport {
            wal: None,
            snapshot: snapshot_status,
            replayed,
            wal_behind_snapshot,
            learnings: state.learnings.len(),
        };
        Ok((
            LearningStore {
                wal,
                dir,
                options,
                state: RwLock::new(state),
                writer: Mutex::new(()),
            },
            report,
        ))
    }

    /// The WAL the store writes to.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// The store directory (snapshot location).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave half-applied state: state is only changed
        // by `State::apply` after the WAL accepted the record, so continuing is sound.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `records` atomically, then applies their payloads to the in-memory state.
    fn commit(
        &self,
        records: Vec<NewRecord>,
        payloads: Vec<Payload>,
    ) -> Result<(), finn_wal::Error> {
        let lsns = self.wal.append_batch(records, self.options.durability)?;
        let mut st = self.write_state();
        for p in payloads {
            st.apply(p);
        }
        if let Some(last) = lsns.last() {
            st.applied = *last;
        }
        Ok(())
    }

    /// Scores a learning with the store's scorer and checks the thresholds.
    pub fn evaluate(&self, learning: &NewLearning) -> (Scorecard, Evaluation) {
        let card = self.options.scorer.score(learning.into());
        let eval = self.options.thresholds.evaluate(&card);
        (card, eval)
    }

    /// Scores, gates and stores a new learning. A learning that fails the gates is **not**
    /// stored; [`AddError::Rejected`] hands it back with every gate's score and reason.
    ///
    /// Target `loa` starts `pending` (it needs approval); every other target starts `active`.
    pub fn add(&self, new: NewLearning) -> Result<Learning, AddError> {
        validate_new(&new)?;
        let (card, evaluation) = self.evaluate(&new);
        if !evaluation.passed {
            return Err(AddError::Rejected(Box::new(GateRejection {
                evaluation,
                learning: new,
            })));
        }
        let learning = Learning {
            id: LearningId::generate(),
            created: Some(Timestamp::now()),
            source: Some(new.source),
            status: new.initial_status(),
            trigger: new.trigger,
            pattern: new.pattern,
            solution: new.solution,
            title: new.title,
            tags: new.tags,
            gates: Some(card.scores()),
            target: Some(new.target),
            approved_by: None,
            approved_at: None,
            effectiveness: None,
            extra: Default::default(),
            origin: None,
        };
        let _w = self.lock_writer();
        self.commit(
            vec![learning_record(&learning)],
            vec![Payload::Learning {
                learning: Box::new(learning.clone()),
            }],
        )?;
        Ok(learning)
    }

    /// Applies a lifecycle action (see [`Status`] for the allowed ones), recording who did it.
    /// The new state and its audit record are one atomic WAL batch.
    pub fn transition(
        &self,
        id: &LearningId,
        action: Action,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Learning, TransitionError> {
        let _w = self.lock_writer();
        let (mut l, seq) = {
            let st = self.read();
            let l = st
                .learnings
                .get(id)
                .cloned()
                .ok_or_else(|| TransitionError::NotFound { id: id.clone() })?;
            let seq = st
                .history
                .get(id)
                .map_or(0, |h| h.last().map_or(0, |t| t.seq))
                + 1;
            (l, seq)
        };
        let (from, to) = action.edge();
        if l.status != from {
            return Err(TransitionError::NotAllowed {
                id: id.clone(),
                from: l.status,
                to,
            });
        }
        let now = Timestamp::now();
        l.status = to;
        if action == Action::Approve {
            l.approved_by = Some(by.to_owned());
            l.approved_at = Some(now);
        }
        let t = TransitionRecord {
            id: id.clone(),
            seq,
            from,
            to,
            by: by.to_owned(),
            at: now,
            reason: reason.map(str::to_owned),
        };
        self.commit(
            vec![learning_record(&l), transition_record(&t)],
            vec![
                Payload::Learning {
                    learning: Box::new(l.clone()),
                },
                Payload::Transition { transition: t },
            ],
        )?;
        Ok(l)
    }

    /// Moves a learning to `to` if the lifecycle allows it from its current status.
    pub fn set_status(
        &self,
        id: &LearningId,
        to: Status,
        by: &str,
    ) -> Result<Learning, TransitionError> {
        let from = self
            .get(id)
            .ok_or_else(|| TransitionError::NotFound { id: id.clone() })?
            .status;
        let action = from
            .action_to(to)
            .ok_or_else(|| TransitionError::NotAllowed {
                id: id.clone(),
                from,
                to,
            })?;
        self.transition(id, action, by, None)
    }

    /// `pending → approved`.
    pub fn approve(&self, id: &LearningId, by: &str) -> Result<Learning, TransitionError> {
        self.transition(id, Action::Approve, by, None)
    }

    /// `pending → rejected`, with a reason.
    pub fn reject(
        &self,
        id: &LearningId,
        by: &str,
        reason: &str,
    ) -> Result<Learning, TransitionError> {
        self.transition(id, Action::Reject, by, Some(reason))
    }

    /// `approved → active`.
    pub fn activate(&self, id: &LearningId, by: &str) -> Result<Learning, TransitionError> {
        self.transition(id, Action::Activate, by, None)
    }

    /// `active → archived`.
    pub fn archive(&self, id: &LearningId, by: &str) -> Result<Learning, TransitionError> {
        self.transition(id, Action::Archive, by, None)
    }

    /// `archived → active`.
    pub fn restore(&self, id: &LearningId, by: &str) -> Result<Learning, TransitionError> {
        self.transition(id, Action::Restore, by, None)
    }

    /// Records one application of a learning and its outcome.
    pub fn record_application(
        &self,
        id: &LearningId,
        success: bool,
    ) -> Result<Effectiveness, TransitionError> {
        let _w = self.lock_writer();
        let mut l = self
            .get(id)
            .ok_or_else(|| TransitionError::NotFound { id: id.clone() })?;
        let mut e = l.effectiveness.unwrap_or_default();
        e.applications = e.applications.saturating_add(1);
        if success {
            e.successes = e.successes.saturating_add(1);
        } else {
            e.failures = e.failures.saturating_add(1);
        }
        e.last_applied = Some(Timestamp::now());
        l.effectiveness = Some(e);
        self.commit(
            vec![learning_record(&l)],
            vec![Payload::Learning {
                learning: Box::new(l),
            }],
        )?;
        Ok(e)
    }

    /// One learning.
    pub fn get(&self, id: &LearningId) -> Option<Learning> {
        self.read().learnings.get(id).cloned()
    }

    /// Learnings with `status` (all if `None`), by id.
    pub fn list(&self, status: Option<Status>) -> Vec<Learning> {
        self.read()
            .learnings
            .values()
            .filter(|l| status.is_none_or(|s| l.status == s))
            .cloned()
            .collect()
    }

    /// The id of a learning whose trigger is exactly `trigger`, if any.
    pub fn find_by_trigger(&self, trigger: &str) -> Option<LearningId> {
        self.read()
            .learnings
            .values()
            .find(|l| l.trigger == trigger)
            .map(|l| l.id.clone())
    }

    /// Learnings for `target`, by id.
    pub fn by_target(&self, target: Target) -> Vec<Learning> {
        self.read()
            .learnings
            .values()
            .filter(|l| l.target == Some(target))
            .cloned()
            .collect()
    }

    /// Learnings awaiting approval.
    pub fn pending(&self) -> Vec<Learning> {
        self.list(Some(Status::Pending))
    }

    /// The audit trail of one learning, oldest first.
    pub fn history(&self, id: &LearningId) -> Vec<TransitionRecord> {
        self.read().history.get(id).cloned().unwrap_or_default()
    }

    /// Number of learnings.
    pub fn len(&self) -> usize {
        self.read().learnings.len()
    }

    /// Whether the store holds no learnings.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts by status and target.
    pub fn stats(&self) -> Stats {
        let st = self.read();
        let mut s = Stats {
            total: st.learnings.len(),
            ..Stats::default()
        };
        for l in st.learnings.values() {
            *s.by_status.entry(l.status).or_default() += 1;
            if let Some(t) = l.target {
                let name = serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                *s.by_target.entry(name).or_default() += 1;
            }
        }
        s.pending = s.by_status.get(&Status::Pending).copied().unwrap_or(0);
        s
    }

    /// The active learnings that best match `context`, best first, at most `limit`.
    ///
    /// Scoring is BM25 over trigger and tags (weighted ×2), title, pattern and solution, with
    /// stop words dropped and a light stemmer, multiplied by the learning's effectiveness weight
    /// ([`Effectiveness::ranking_weight`]). A learning must share at least
    /// [`StoreOptions::min_term_hits`] distinct terms with the context (the anchors' floor of two
    /// word hits). Ties are broken by id, so the order is deterministic.
    pub fn find_matching(&self, context: &str, limit: usize) -> Vec<Found> {
        let st = self.read();
        st.index
            .search(context, limit, self.options.min_term_hits)
            .into_iter()
            .filter_map(|Match { id, score, hits }| {
                st.learnings.get(&id).map(|l| Found {
                    learning: l.clone(),
                    score,
                    hits,
                })
            })
            .collect()
    }

    /// Active learnings ranked by effectiveness weight, then gate total, then id.
    pub fn ranked(&self, limit: usize) -> Vec<Learning> {
        let st = self.read();
        let mut v: Vec<&Learning> = st
            .learnings
            .values()
            .filter(|l| l.status == Status::Active)
            .collect();
        v.sort_by(|a, b| {
            let wa = a.effectiveness.unwrap_or_default().ranking_weight();
            let wb = b.effectiveness.unwrap_or_default().ranking_weight();
            wb.total_cmp(&wa)
                .then_with(|| {
                    let ga = a.gates.map_or(0, |g| g.total());
                    let gb = b.gates.map_or(0, |g| g.total());
                    gb.cmp(&ga)
                })
                .then_with(|| a.id.cmp(&b.id))
        });
        v.into_iter().take(limit).cloned().collect()
    }

    /// A Markdown block of up to `limit` active learnings for an agent's context (the anchors'
    /// `loadForContext`), ranked by [`ranked`](Self::ranked); empty if there are none.
    pub fn context_block(&self, limit: usize) -> String {
        let ranked = self.ranked(limit);
        if ranked.is_empty() {
            return String::new();
        }
        let mut out = String::from("## Recent Learnings from Prior Sessions\n\n");
        for l in ranked {
            out.push_str(&format!("- **{}**: {}\n", l.trigger, l.solution));
        }
        out
    }

    /// Re-scores a stored learning with the store's scorer.
    pub fn score(&self, id: &LearningId) -> Option<(Scorecard, Evaluation)> {
        let l = self.get(id)?;
        let card = self.options.scorer.score((&l).into());
        let eval = self.options.thresholds.evaluate(&card);
        Some((card, eval))
    }

    fn imported_score(&self, l: &Learning) -> ImportedScore {
        let computed = self
            .options
            .thresholds
            .evaluate(&self.options.scorer.score(l.into()));
        ImportedScore {
            id: l.id.clone(),
            stated: l
                .gates
                .map(|g| self.options.thresholds.evaluate(&Scorecard::stated(g))),
            computed,
        }
    }

    /// Stores imported learnings (and optionally a collection) in one atomic WAL batch.
    ///
    /// Imported learnings keep the status and gate scores their file states: they were curated
    /// elsewhere, so the gates are reported (in [`ImportReport::scores`]) but do not refuse them.
    fn import_learnings(
        &self,
        learnings: Vec<Learning>,
        collection: Option<Collection>,
    ) -> Result<ImportReport, ImportError> {
        let _w = self.lock_writer();
        let mut report = ImportReport::default();
        let mut records = Vec::new();
        let mut payloads = Vec::new();
        {
            let st = self.read();
            for l in learnings {
                report.scores.push(self.imported_score(&l));
                match st.learnings.get(&l.id) {
                    Some(existing) if same_content(existing, &l) => {
                        report.unchanged.push(l.id.clone());
                    }
                    Some(_) => return Err(ImportError::Conflict { id: l.id }),
                    None => {
                        report.imported.push(l.id.clone());
                        records.push(learning_record(&l));
                        payloads.push(Payload::Learning {
                            learning: Box::new(l),
                        });
                    }
                }
            }
        }
        if let Some(c) = collection {
            records.push(collection_record(&c));
            payloads.push(Payload::Collection { collection: c });
        }
        if !records.is_empty() {
            self.commit(records, payloads)?;
        }
        Ok(report)
    }

    /// Imports a Loa learnings file (`{category, tier, learnings: [...]}`); the file name becomes
    /// the collection name for [`export_loa_file`](Self::export_loa_file). All or nothing.
    pub fn import_loa_file(&self, path: &Path) -> Result<ImportReport, ImportError> {
        let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.import_loa_bytes(&name, &bytes).map_err(|e| match e {
            ImportError::Parse { source, .. } => ImportError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Imports a Loa learnings file's bytes under collection `name`.
    pub fn import_loa_bytes(&self, name: &str, bytes: &[u8]) -> Result<ImportReport, ImportError> {
        let file = format::parse_loa_file(bytes).map_err(|source| ImportError::Parse {
            path: PathBuf::from(name),
            source,
        })?;
        let collection = Collection {
            name: name.to_owned(),
            dialect: Dialect::Loa,
            header: file.header,
            ids: file.learnings.iter().map(|l| l.id.clone()).collect(),
        };
        self.import_learnings(file.learnings, Some(collection))
    }

    /// The names of imported collections.
    pub fn collections(&self) -> Vec<String> {
        self.read().collections.keys().cloned().collect()
    }

    /// Writes collection `name` back as a Loa learnings file at `path` (atomically), with each
    /// learning's current state.
    pub fn export_loa_file(&self, name: &str, path: &Path) -> Result<ExportReport, ExportError> {
        let bytes = {
            let st = self.read();
            let c = st
                .collections
                .get(name)
                .ok_or_else(|| ExportError::UnknownCollection {
                    name: name.to_owned(),
                })?;
            let ls: Vec<Learning> = c
                .ids
                .iter()
                .filter_map(|id| st.learnings.get(id).cloned())
                .collect();
            format::write_loa_file(&c.header, &ls)
        };
        let mut report = ExportReport::default();
        write_export(
            path,
            &bytes,
            |b| format::parse_loa_file(b).is_ok(),
            &mut report,
        )?;
        Ok(report)
    }

    /// Imports the anchors' layout: `dir/learnings.json` and `dir/pending-self/*.json`. Every file
    /// is parsed before anything is stored; one bad file fails the whole import, naming the file
    /// (the anchors silently read a corrupt store as empty and skipped bad pending files).
    pub fn import_anchor_dir(&self, dir: &Path) -> Result<ImportReport, ImportError> {
        let mut all = Vec::new();
        let store = dir.join("learnings.json");
        match std::fs::read(&store) {
            Ok(bytes) => all.extend(format::parse_anchor_store(&bytes).map_err(|source| {
                ImportError::Parse {
                    path: store.clone(),
                    source,
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ImportError::Io {
                    path: store,
                    source,
                });
            }
        }
        let pending = dir.join("pending-self");
        let entries = match std::fs::read_dir(&pending) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| ImportError::Io {
                    path: pending.clone(),
                    source,
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(ImportError::Io {
                    path: pending,
                    source,
                });
            }
        };
        let mut files: Vec<PathBuf> = entries
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|source| ImportError::Io {
                path: f.clone(),
                source,
            })?;
            all.push(
                format::parse_anchor_pending(&bytes)
                    .map_err(|source| ImportError::Parse { path: f, source })?,
            );
        }
        self.import_learnings(all, None)
    }

    /// Writes the anchors' layout: pending learnings to `dir/pending-self/{id}.json`, all others
    /// to `dir/learnings.json`. Each file is written atomically; an existing file that does not
    /// parse is quarantined (renamed aside), never overwritten.
    pub fn export_anchor_dir(&self, dir: &Path) -> Result<ExportReport, ExportError> {
        let (stored, pending): (Vec<Learning>, Vec<Learning>) = self
            .list(None)
            .into_iter()
            .partition(|l| l.status != Status::Pending);
        let mut report = ExportReport::default();
        let pdir = dir.join("pending-self");
        std::fs::create_dir_all(&pdir).map_err(|source| ExportError::Io {
            path: pdir.clone(),
            source,
        })?;
        for l in &pending {
            let path = pdir.join(format!("{}.json", l.id));
            write_export(
                &path,
                &format::write_anchor_pending(l),
                |b| format::parse_anchor_pending(b).is_ok(),
                &mut report,
            )?;
        }
        write_export(
            &dir.join("learnings.json"),
            &format::write_anchor_store(&stored),
            |b| format::parse_anchor_store(b).is_ok(),
            &mut report,
        )?;
        Ok(report)
    }

    /// Writes a snapshot of the whole state (atomically) and returns the WAL position it covers.
    /// Records at or before that position may then be pruned from the WAL by its owner.
    pub fn snapshot(&self) -> Result<Lsn, ExportError> {
        let _w = self.lock_writer();
        let (lsn, bytes) = {
            let st = self.read();
            (st.applied, snapshot::encode(st.applied.get(), &st.body()))
        };
        let path = self.dir.join(snapshot::SNAPSHOT_FILE);
        let mut report = ExportReport::default();
        write_export(&path, &bytes, |b| snapshot::decode(b).is_ok(), &mut report)?;
        Ok(lsn)
    }
}

fn same_content(a: &Learning, b: &Learning) -> bool {
    let strip = |l: &Learning| {
        let mut l = l.clone();
        l.origin = None;
        l
    };
    strip(a) == strip(b)
}

fn validate_new(n: &NewLearning) -> Result<(), AddError> {
    for (field, text) in [
        ("trigger", n.trigger.as_str()),
        ("pattern", n.pattern.as_str()),
        ("solution", n.solution.as_str()),
        ("title", n.title.as_deref().unwrap_or("")),
    ] {
        if text.len() > MAX_TEXT_LEN {
            return Err(AddError::Invalid {
                field,
                reason: format!("{} bytes; at most {MAX_TEXT_LEN} are allowed", text.len()),
            });
        }
    }
    for tag in &n.tags {
        let ok = tag.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && tag
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(AddError::Invalid {
                field: "tags",
                reason: format!("tag {tag:?} does not match ^[a-z][a-z0-9-]*$"),
            });
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically. If a file is already there and `valid` says it is
/// damaged, it is renamed aside first and reported: a damaged file is evidence, not garbage.
fn write_export(
    path: &Path,
    bytes: &[u8],
    valid: impl Fn(&[u8]) -> bool,
    report: &mut ExportReport,
) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(existing) if !valid(&existing) => {
            let aside = snapshot::quarantine(path).map_err(io)?;
            tracing::warn!(path = %path.display(), aside = %aside.display(), "damaged file quarantined before export");
            report.quarantined.push((path.to_owned(), aside));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    finn_wal::fs::write_atomic(path, bytes).map_err(io)?;
    report.written.push(path.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::LearningStore>();
    }
}
