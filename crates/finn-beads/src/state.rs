//! The materialized state: a pure fold of the bead records of a WAL, plus the indexes that keep
//! the blocked set current without recomputing it per query.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Hasher of the id-keyed maps. Ids come from imported files, so the hash is seeded per map
/// (foldhash's `RandomState`, hashbrown's default), which keeps chosen-collision inputs out of
/// reach while hashing an id several times faster than SipHash.
pub(crate) type IdHasher = foldhash::fast::RandomState;
/// A bead id as the state's maps and sets hold it: allocated once, when the bead enters the
/// state, and shared by every index that names the bead, so indexing a bead (100,000s of them
/// in a bulk import) copies reference counts, not strings.
pub(crate) type Id = Arc<str>;
/// A map keyed by bead id.
pub(crate) type IdMap<V> = HashMap<Id, V, IdHasher>;
/// A set of bead ids.
pub(crate) type IdSet = HashSet<Id, IdHasher>;
use std::sync::Arc;

use finn_wal::{Kind, Lsn, Op, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bead::{Bead, DepType, Status, WaitsForGate};
use crate::event::{
    BEAD_KEY_PREFIX, BeadPayload, Lease, PAYLOAD_VERSION, RECORD_KEY_PREFIX, RecordPayload,
};

/// Close-reason words that mark a failure; a `conditional-blocks` dependent runs only after its
/// blocker closed with one of them (case-insensitive substring, as `bd` does).
pub const FAILURE_CLOSE_KEYWORDS: &[&str] = &[
    "failed",
    "rejected",
    "wontfix",
    "won't fix",
    "canceled",
    "cancelled",
    "abandoned",
    "blocked",
    "error",
    "timeout",
    "aborted",
];

/// Whether a close reason says the work failed (see [`FAILURE_CLOSE_KEYWORDS`]).
pub fn is_failure_close(reason: &str) -> bool {
    let lower = reason.to_lowercase();
    FAILURE_CLOSE_KEYWORDS.iter().any(|k| lower.contains(k))
}

/// A bead with its lease and the LSN of the record that last wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The bead.
    pub bead: Bead,
    /// The current claim, if a worker holds the bead.
    pub lease: Option<Lease>,
    /// LSN of the record that last wrote this bead.
    pub lsn: Lsn,
}

/// A record could not be folded into the state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The payload is not valid JSON of the expected shape.
    #[error("record at lsn {lsn} has an unreadable bead payload")]
    Payload {
        /// LSN of the record.
        lsn: Lsn,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The payload was written by a newer release.
    #[error(
        "record at lsn {lsn} has payload version {version}, this release reads up to {PAYLOAD_VERSION}; upgrade finn-beads"
    )]
    Version {
        /// LSN of the record.
        lsn: Lsn,
        /// The version found.
        version: u32,
    },
    /// The record's key does not belong to finn-beads.
    #[error("record at lsn {lsn} has unknown key {key:?}")]
    Key {
        /// LSN of the record.
        lsn: Lsn,
        /// The key.
        key: Option<String>,
    },
    /// The snapshot bytes are not a finn-beads snapshot.
    #[error("snapshot is unreadable")]
    Snapshot {
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The snapshot says it covers a different LSN than the caller claims.
    #[error("snapshot covers lsn {found}, caller expected {expected}")]
    SnapshotLsn {
        /// LSN recorded in the snapshot.
        found: Lsn,
        /// LSN given by the caller.
        expected: Lsn,
    },
}

/// Why a bead is directly blocked by one of its own dependencies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlockReason {
    /// The target is not closed yet.
    Open {
        /// Target's status.
        status: Status,
    },
    /// The target does not exist (a dangling edge blocks, as in `bd`).
    Missing,
    /// `conditional-blocks`: the target closed, but not with a failure reason.
    ConditionNotMet,
    /// `waits-for`: the spawner still has children that are not closed.
    WaitingForChildren {
        /// Children not closed yet.
        pending: usize,
        /// Gate of the edge.
        any: bool,
    },
    /// A parent (through `parent-child`) is blocked.
    ParentBlocked,
}

/// One thing holding a bead back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// The bead doing the blocking (target of the edge, or the blocked parent).
    pub id: String,
    /// Edge kind.
    pub dep_type: DepType,
    /// Why it blocks.
    pub reason: BlockReason,
}

type PoolKey = (
    crate::bead::Priority,
    Option<crate::timestamp::Timestamp>,
    Id,
);

/// A member of the ready pool: the entry plus what a ready query checks on it, copied out so
/// that the default query never reads the bead itself (one cache miss per bead saved).
#[derive(Clone, Debug)]
pub(crate) struct PoolEntry {
    entry: Arc<Entry>,
    /// The bead has a `defer_until` (read from the bead only then).
    pub(crate) has_defer_until: bool,
    /// `is_template == Some(true)`.
    pub(crate) template: bool,
    /// `ephemeral == Some(true)`.
    pub(crate) ephemeral: bool,
}

impl PoolEntry {
    fn new(entry: &Arc<Entry>) -> PoolEntry {
        let b = &entry.bead;
        PoolEntry {
            entry: Arc::clone(entry),
            has_defer_until: b.defer_until.is_some(),
            template: b.is_template == Some(true),
            ephemeral: b.ephemeral == Some(true),
        }
    }

    /// The bead.
    pub(crate) fn bead(&self) -> &Bead {
        &self.entry.bead
    }
}

#[derive(Clone, Debug, Default)]
struct Index {
    /// target -> beads with an edge that affects readiness pointing at it.
    dependents: IdMap<IdSet>,
    /// spawner -> beads with a `waits-for` edge gated on its children (keyed by the edge's
    /// target and, if its metadata names another one, by that spawner too). Only these must
    /// re-check when a child of the spawner changes; most stores have none.
    waiters: IdMap<IdSet>,
    /// parent -> children (`parent-child` edges).
    children: IdMap<IdSet>,
    /// Beads with at least one direct blocker.
    direct: IdSet,
    /// Non-terminal beads that are directly blocked or have a blocked parent.
    blocked: IdSet,
    /// Open beads that are not blocked (deferral and filters are applied at query time), with
    /// their key in `ordered`.
    pool: IdMap<PoolKey>,
    /// The pool in `bd ready`'s default order (priority, creation time, id), each with the
    /// entry itself, so that a ready query walks it without one id lookup per bead. The entry
    /// is the one in `State::beads`: every write of a bead marks it dirty (or sets
    /// `rebuild_all`), and `settle` re-inserts dirty beads.
    ordered: BTreeMap<PoolKey, PoolEntry>,
    /// `ordered` as a dense array, built by the first ready query after a change: repeated
    /// queries between writes then walk 16-byte entries instead of B-tree nodes.
    ordered_dense: std::sync::OnceLock<Vec<PoolEntry>>,
    /// Non-terminal beads with a `defer_until` or status `deferred` (their descendants may be
    /// held back); empty in most stores, which lets ready queries skip ancestor walks.
    deferred: IdSet,
    /// Beads whose direct-blocker state must be recomputed.
    dirty: IdSet,
    /// So much changed (a quarter of the beads or more) that `settle` rebuilds every index from
    /// scratch; `dirty` is not filled meanwhile.
    rebuild_all: bool,
}

/// The state folded from a WAL: beads, opaque records and the ready/blocked indexes.
///
/// It is a pure function of the records applied: [`State::apply`] reads nothing but the record,
/// records at or below [`State::lsn`] are skipped, and re-applying a record writes the same value.
#[derive(Clone, Debug, Default)]
pub struct State {
    lsn: Lsn,
    /// Entries are shared with the ready pool (`Index::ordered`) and never mutated in place.
    beads: IdMap<Arc<Entry>>,
    records: BTreeMap<String, Map<String, Value>>,
    index: Index,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.beads == other.beads && self.records == other.records
    }
}

impl State {
    /// An empty state (before LSN 1).
    pub fn new() -> Self {
        Self::default()
    }

    /// LSN of the last record folded in.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Number of beads, tombstones included.
    pub fn len(&self) -> usize {
        self.beads.len()
    }

    /// True when there are no beads.
    pub fn is_empty(&self) -> bool {
        self.beads.is_empty()
    }

    /// The bead with this id.
    pub fn get(&self, id: &str) -> Option<&Bead> {
        self.beads.get(id).map(|e| &e.bead)
    }

    /// The bead with this id, with its lease.
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.beads.get(id).map(|e| &**e)
    }

    /// All beads, in no particular order.
    pub fn beads(&self) -> impl Iterator<Item = &Bead> {
        self.beads.values().map(|e| &e.bead)
    }

    /// All entries, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.beads.values().map(|e| &**e)
    }

    /// Non-issue records (memories, ...) by key, in key order.
    pub fn records(&self) -> &BTreeMap<String, Map<String, Value>> {
        &self.records
    }

    /// Folds one WAL record in. Records of other kinds and records at or below [`State::lsn`] are
    /// ignored, which makes replay idempotent.
    pub fn apply(&mut self, record: &Record) -> Result<(), ApplyError> {
        self.apply_raw(record)?;
        self.settle();
        Ok(())
    }

    /// Folds many records, recomputing the indexes once at the end.
    pub fn apply_all<'r>(
        &mut self,
        records: impl IntoIterator<Item = &'r Record>,
    ) -> Result<(), ApplyError> {
        let mut result = Ok(());
        for r in records {
            if let Err(e) = self.apply_raw(r) {
                result = Err(e);
                break;
            }
        }
        self.settle();
        result
    }

    pub(crate) fn apply_raw(&mut self, record: &Record) -> Result<(), ApplyError> {
        if record.lsn <= self.lsn {
            return Ok(());
        }
        if record.kind != Kind::Bead {
            self.lsn = record.lsn;
            return Ok(());
        }
        let lsn = record.lsn;
        let key = record.key.as_deref().unwrap_or("");
        match record.op {
            Op::Put => {
                if let Some(id) = key.strip_prefix(BEAD_KEY_PREFIX) {
                    let p: BeadPayload = serde_json::from_slice(&record.payload)
                        .map_err(|source| ApplyError::Payload { lsn, source })?;
                    if p.v > PAYLOAD_VERSION {
                        return Err(ApplyError::Version { lsn, version: p.v });
                    }
                    if p.bead.id != id {
                        return Err(ApplyError::Key {
                            lsn,
                            key: record.key.clone(),
                        });
                    }
                    self.put_entry(
                        lsn,
                        Arc::new(Entry {
                            bead: p.bead,
                            lease: p.lease,
                            lsn,
                        }),
                    );
                } else if let Some(k) = key.strip_prefix(RECORD_KEY_PREFIX) {
                    let p: RecordPayload = serde_json::from_slice(&record.payload)
                        .map_err(|source| ApplyError::Payload { lsn, source })?;
                    if p.v > PAYLOAD_VERSION {
                        return Err(ApplyError::Version { lsn, version: p.v });
                    }
                    self.records.insert(k.to_owned(), p.record);
                } else {
                    return Err(ApplyError::Key {
                        lsn,
                        key: record.key.clone(),
                    });
                }
            }
            Op::Delete => {
                if let Some(id) = key.strip_prefix(BEAD_KEY_PREFIX) {
                    self.remove_entry(id);
                } else if let Some(k) = key.strip_prefix(RECORD_KEY_PREFIX) {
                    self.records.remove(k);
                }
            }
            // Plain events carry no state in this crate's format; they are audit-only.
            Op::Event => {}
        }
        self.lsn = lsn;
        Ok(())
    }

    /// Writes an entry decoded or built by the caller; the LSN must be the record's. The
    /// allocation is kept as it is (a transaction allocates each entry once, when staging it).
    pub(crate) fn put_entry(&mut self, lsn: Lsn, entry: Arc<Entry>) {
        self.put_shared(lsn, Id::from(entry.bead.id.as_str()), entry);
    }

    /// [`State::put_entry`] with the bead's id already allocated (`id == entry.bead.id`).
    pub(crate) fn put_shared(&mut self, lsn: Lsn, id: Id, entry: Arc<Entry>) {
        debug_assert_eq!(*id, *entry.bead.id);
        // A replaced bead keeps the key it had, which the indexes already share.
        let (id, old) = match self.beads.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let id = Arc::clone(slot.key());
                (id, Some(slot.insert(entry)))
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                let id = Arc::clone(slot.key());
                slot.insert(entry);
                (id, None)
            }
        };
        if self.index.rebuild_all {
            // Bulk write: `settle` rebuilds every index, the edge indexes included.
        } else {
            self.reindex_edges(&id, old.as_ref().map(|e| &e.bead));
        }
        if lsn > self.lsn {
            self.lsn = lsn;
        }
    }

    /// Makes room for `additional` more beads in one allocation (bulk imports).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.beads.reserve(additional);
    }

    pub(crate) fn put_record(&mut self, lsn: Lsn, key: String, record: Map<String, Value>) {
        self.records.insert(key, record);
        if lsn > self.lsn {
            self.lsn = lsn;
        }
    }

    pub(crate) fn set_lsn(&mut self, lsn: Lsn) {
        if lsn > self.lsn {
            self.lsn = lsn;
        }
    }

    fn remove_entry(&mut self, id: &str) {
        if let Some((id, old)) = self.beads.remove_entry(id)
            && !self.index.rebuild_all
        {
            self.reindex_edges(&id, Some(&old.bead));
        }
    }

    /// Updates the edge indexes for bead `id` (old value `old`) and marks what must be recomputed.
    fn reindex_edges(&mut self, id: &Id, old: Option<&Bead>) {
        let ix = &mut self.index;
        if let Some(old) = old {
            for d in &old.dependencies {
                if d.dep_type.affects_ready()
                    && let Some(s) = ix.dependents.get_mut(d.depends_on_id.as_str())
                {
                    s.remove(&**id);
                }
                if d.dep_type == DepType::WaitsFor {
                    for spawner in waits_for_keys(d) {
                        if let Some(s) = ix.waiters.get_mut(spawner) {
                            s.remove(&**id);
                        }
                    }
                }
                if d.dep_type == DepType::ParentChild {
                    if let Some(s) = ix.children.get_mut(d.depends_on_id.as_str()) {
                        s.remove(&**id);
                    }
                    mark_waiters(ix, &d.depends_on_id);
                }
            }
        }
        if let Some(new) = self.beads.get(&**id) {
            for d in &new.bead.dependencies {
                index_edge(ix, &self.beads, id, d);
                if d.dep_type == DepType::ParentChild {
                    mark_waiters(ix, &d.depends_on_id);
                }
            }
        }
        if ix.rebuild_all {
            return;
        }
        ix.dirty.insert(Arc::clone(id));
        if let Some(deps) = ix.dependents.get(&**id) {
            ix.dirty.extend(deps.iter().cloned());
        }
        if ix.dirty.len() * 4 > self.beads.len() {
            // Bulk writes (imports, replay): stop tracking, rebuild once in `settle`.
            ix.rebuild_all = true;
            ix.dirty = IdSet::default();
        }
    }

    /// Direct blockers of a bead from its own edges (not counting blocked parents).
    pub fn direct_blockers(&self, id: &str) -> Vec<Blocker> {
        let mut out = Vec::new();
        if let Some(e) = self.beads.get(id) {
            self.collect_direct_blockers(e, &mut out);
        }
        out
    }

    /// Whether any of the bead's own edges blocks it (what [`State::direct_blockers`] computes,
    /// stopping at the first blocker).
    fn has_direct_blocker(&self, e: &Entry) -> bool {
        !e.bead.status.is_terminal()
            && e.bead
                .dependencies
                .iter()
                .any(|d| self.edge_block_reason(&e.bead.id, d).is_some())
    }

    fn collect_direct_blockers(&self, e: &Entry, out: &mut Vec<Blocker>) {
        if e.bead.status.is_terminal() {
            return;
        }
        for d in &e.bead.dependencies {
            if let Some(reason) = self.edge_block_reason(&e.bead.id, d) {
                out.push(Blocker {
                    id: d.depends_on_id.clone(),
                    dep_type: d.dep_type.clone(),
                    reason,
                });
            }
        }
    }

    /// Why the edge `id -> d.depends_on_id` blocks `id`, if it does.
    fn edge_block_reason(&self, id: &str, d: &crate::bead::Dependency) -> Option<BlockReason> {
        let target = d.depends_on_id.as_str();
        match d.dep_type {
            DepType::Blocks => match self.beads.get(target) {
                None if target.starts_with("external:") => None,
                None => Some(BlockReason::Missing),
                Some(t) if t.bead.status.is_terminal() => None,
                Some(t) => Some(BlockReason::Open {
                    status: t.bead.status.clone(),
                }),
            },
            DepType::ConditionalBlocks => match self.beads.get(target) {
                None if target.starts_with("external:") => None,
                None => Some(BlockReason::Missing),
                Some(t) => match t.bead.status {
                    Status::Tombstone => None,
                    Status::Closed => {
                        let failed = t.bead.close_reason.as_deref().is_some_and(is_failure_close);
                        (!failed).then_some(BlockReason::ConditionNotMet)
                    }
                    ref s => Some(BlockReason::Open { status: s.clone() }),
                },
            },
            DepType::WaitsFor => {
                let spawner = waits_for_spawner(d).unwrap_or(target);
                self.waits_for_reason(id, spawner, d.waits_for_gate())
            }
            _ => None,
        }
    }

    fn waits_for_reason(&self, me: &str, spawner: &str, gate: WaitsForGate) -> Option<BlockReason> {
        let children = self.index.children.get(spawner)?;
        let mut total = 0usize;
        let mut closed = 0usize;
        for c in children {
            if &**c == me {
                continue;
            }
            let Some(e) = self.beads.get(c) else { continue };
            if e.bead.status == Status::Tombstone {
                continue;
            }
            total += 1;
            if e.bead.status == Status::Closed {
                closed += 1;
            }
        }
        let pending = total - closed;
        match gate {
            WaitsForGate::AllChildren if pending > 0 => Some(BlockReason::WaitingForChildren {
                pending,
                any: false,
            }),
            WaitsForGate::AnyChildren if total > 0 && closed == 0 => {
                Some(BlockReason::WaitingForChildren { pending, any: true })
            }
            _ => None,
        }
    }

    /// Everything blocking a bead: direct blockers plus blocked parents.
    pub fn blockers(&self, id: &str) -> Vec<Blocker> {
        let mut out = self.direct_blockers(id);
        if let Some(e) = self.beads.get(id) {
            for p in e.bead.parents() {
                if self.index.blocked.contains(p) {
                    out.push(Blocker {
                        id: p.to_owned(),
                        dep_type: DepType::ParentChild,
                        reason: BlockReason::ParentBlocked,
                    });
                }
            }
        }
        out
    }

    /// Whether the bead is blocked (directly or through a parent).
    pub fn is_blocked(&self, id: &str) -> bool {
        self.index.blocked.contains(id)
    }

    /// Ids of all blocked beads, in id order.
    pub fn blocked_ids(&self) -> std::collections::BTreeSet<&str> {
        self.blocked_iter().collect()
    }

    /// Ids of all blocked beads, in no particular order.
    pub(crate) fn blocked_iter(&self) -> impl Iterator<Item = &str> {
        self.index.blocked.iter().map(|id| &**id)
    }

    /// Children (through `parent-child`) of a bead.
    pub fn children_of(&self, id: &str) -> impl Iterator<Item = &str> {
        self.index
            .children
            .get(id)
            .into_iter()
            .flat_map(|s| s.iter().map(|id| &**id))
    }

    /// The ready pool (open, unblocked) in priority order.
    pub(crate) fn pool_ordered(&self) -> impl Iterator<Item = &PoolEntry> {
        self.index
            .ordered_dense
            .get_or_init(|| self.index.ordered.values().cloned().collect())
            .iter()
    }

    /// Beads that may be deferred (see `Index::deferred`).
    pub(crate) fn deferral_marks(&self) -> &IdSet {
        &self.index.deferred
    }

    /// Recomputes the blocked set and ready pool for what changed since the last call.
    pub(crate) fn settle(&mut self) {
        if self.index.rebuild_all || self.index.dirty.len() * 4 > self.beads.len() {
            self.rebuild_all();
            self.index.ordered_dense = std::sync::OnceLock::new();
            return;
        }
        if self.index.dirty.is_empty() {
            return;
        }
        self.index.ordered_dense = std::sync::OnceLock::new();
        let dirty: Vec<Id> = self.index.dirty.drain().collect();
        // 1. Direct blockers of every dirty bead.
        for id in &dirty {
            if self
                .beads
                .get(&**id)
                .is_some_and(|e| self.has_direct_blocker(e))
            {
                self.index.direct.insert(id.clone());
            } else {
                self.index.direct.remove(id);
            }
        }
        // 2. The region whose parent-inherited state may change: dirty beads and their descendants.
        let mut region = IdSet::with_capacity_and_hasher(dirty.len(), IdHasher::default());
        let mut stack: Vec<Id> = dirty;
        while let Some(id) = stack.pop() {
            if region.insert(id.clone())
                && let Some(ch) = self.index.children.get(&*id)
            {
                stack.extend(ch.iter().filter(|c| !region.contains(*c)).cloned());
            }
        }
        // 3. Least fixpoint inside the region: seeds are directly blocked beads or beads with a
        //    blocked parent outside the region; blocking then flows down parent-child edges.
        for id in &region {
            self.index.blocked.remove(id);
        }
        let mut queue: Vec<Id> = Vec::new();
        for id in &region {
            let Some(e) = self.beads.get(&**id) else {
                continue;
            };
            if e.bead.status.is_terminal() {
                continue;
            }
            let parent_blocked = e
                .bead
                .parents()
                .any(|p| !region.contains(p) && self.index.blocked.contains(p));
            if self.index.direct.contains(id) || parent_blocked {
                queue.push(id.clone());
            }
        }
        while let Some(id) = queue.pop() {
            if !self.index.blocked.insert(id.clone()) {
                continue;
            }
            if let Some(ch) = self.index.children.get(&*id) {
                for c in ch {
                    if region.contains(c)
                        && !self.index.blocked.contains(c)
                        && self
                            .beads
                            .get(&**c)
                            .is_some_and(|e| !e.bead.status.is_terminal())
                    {
                        queue.push(c.clone());
                    }
                }
            }
        }
        // 4. Ready pool membership and deferral marks.
        for id in &region {
            if let Some(old) = self.index.pool.remove(id) {
                self.index.ordered.remove(&old);
            }
            self.index.deferred.remove(id);
            let Some(e) = self.beads.get(&**id) else {
                continue;
            };
            let b = &e.bead;
            if !b.status.is_terminal() && (b.defer_until.is_some() || b.status == Status::Deferred)
            {
                self.index.deferred.insert(id.clone());
            }
            if b.status == Status::Open && !self.index.blocked.contains(id) {
                let key = (b.priority, b.created_at.clone(), id.clone());
                self.index.ordered.insert(key.clone(), PoolEntry::new(e));
                self.index.pool.insert(id.clone(), key);
            }
        }
    }

    /// Recomputes the blocked set, the ready pool and the deferral marks of every bead from
    /// scratch: what [`State::settle`] computes with every bead dirty, without tracking a region.
    fn rebuild_all(&mut self) {
        self.index.rebuild_all = false;
        self.index.dirty = IdSet::default();
        // 0. One pass over every bead (they are scattered in memory: each visit is a cache
        //    miss): the edge indexes, which bulk writes do not keep up, the deferral marks, and
        //    the beads the later steps look at again.
        let mut dependents = IdMap::default();
        let mut waiters = IdMap::default();
        let mut children = IdMap::default();
        let mut deferred = IdSet::default();
        let mut may_block: Vec<(&Id, &Arc<Entry>)> = Vec::new();
        let mut open: Vec<(&Id, &Arc<Entry>)> = Vec::new();
        // In the order of their addresses, not of the hash table: beads staged together were
        // allocated together (an import allocates them in file order, with their strings right
        // behind), so this pass reads memory mostly forward and the prefetcher hides the misses
        // that otherwise dominate it (a random visit costs several cache misses per bead).
        let mut by_address: Vec<(&Id, &Arc<Entry>)> = self.beads.iter().collect();
        by_address.sort_unstable_by_key(|(_, e)| Arc::as_ptr(e) as usize);
        for (id, e) in by_address {
            let b = &e.bead;
            for d in &b.dependencies {
                add_edge(
                    [&mut dependents, &mut waiters, &mut children],
                    &self.beads,
                    id,
                    d,
                );
            }
            if !b.status.is_terminal() {
                if b.defer_until.is_some() || b.status == Status::Deferred {
                    deferred.insert(Arc::clone(id));
                }
                if !b.dependencies.is_empty() {
                    may_block.push((id, e));
                }
            }
            if b.status == Status::Open {
                open.push((id, e));
            }
        }
        self.index.dependents = dependents;
        self.index.waiters = waiters;
        self.index.children = children;
        // 1. Direct blockers (only non-terminal beads with edges can have one).
        let direct: IdSet = may_block
            .iter()
            .filter(|(_, e)| self.has_direct_blocker(e))
            .map(|(id, _)| Arc::clone(id))
            .collect();
        // 2. Blocking flows from directly blocked beads down parent-child edges to every
        //    non-terminal descendant.
        let mut blocked = IdSet::with_capacity_and_hasher(direct.len(), IdHasher::default());
        let mut queue: Vec<&Id> = direct.iter().collect();
        while let Some(id) = queue.pop() {
            if !blocked.insert(Arc::clone(id)) {
                continue;
            }
            if let Some(ch) = self.index.children.get(&**id) {
                for c in ch {
                    if !blocked.contains(c)
                        && self
                            .beads
                            .get(&**c)
                            .is_some_and(|e| !e.bead.status.is_terminal())
                    {
                        queue.push(c);
                    }
                }
            }
        }
        // 3. Ready pool: open beads that are not blocked, built from a sorted list in one pass
        //    instead of by one B-tree insert per bead.
        let mut pool = IdMap::with_capacity_and_hasher(open.len(), IdHasher::default());
        let mut ordered = Vec::with_capacity(open.len());
        for (id, e) in open {
            if !blocked.contains(id) {
                let key = (e.bead.priority, e.bead.created_at.clone(), Arc::clone(id));
                pool.insert(Arc::clone(id), key.clone());
                ordered.push((key, PoolEntry::new(e)));
            }
        }
        ordered.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.index.direct = direct;
        self.index.blocked = blocked;
        self.index.pool = pool;
        self.index.ordered = ordered.into_iter().collect();
        self.index.deferred = deferred;
    }

    /// Serializes the materialized state for a checkpoint: a JSON header line with the LSN, then one
    /// line per bead entry and per opaque record. Restore with [`State::from_snapshot`].
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.beads.len() * 512 + 64);
        let header = SnapshotHeader {
            format: SNAPSHOT_FORMAT.to_owned(),
            v: PAYLOAD_VERSION,
            lsn: self.lsn,
            beads: self.beads.len(),
            records: self.records.len(),
        };
        push_json_line(&mut out, &header);
        let mut entries: Vec<(&Id, &Arc<Entry>)> = self.beads.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (_, e) in entries {
            push_json_line(
                &mut out,
                &SnapshotLine::Bead {
                    lsn: e.lsn,
                    bead: &e.bead,
                    lease: e.lease.as_ref(),
                },
            );
        }
        for (key, record) in &self.records {
            push_json_line(&mut out, &SnapshotLine::Record { key, record });
        }
        out
    }

    /// Rebuilds a state from [`State::snapshot`] bytes taken at `lsn`; replay continues with the
    /// records after `lsn`.
    pub fn from_snapshot(bytes: &[u8], lsn: Lsn) -> Result<State, ApplyError> {
        let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        let header: SnapshotHeader = match lines.next() {
            Some(l) => {
                serde_json::from_slice(l).map_err(|source| ApplyError::Snapshot { source })?
            }
            None => {
                return Err(ApplyError::Snapshot {
                    source: serde::de::Error::custom("empty snapshot"),
                });
            }
        };
        if header.format != SNAPSHOT_FORMAT {
            return Err(ApplyError::Snapshot {
                source: serde::de::Error::custom("not a finn-beads snapshot"),
            });
        }
        if header.v > PAYLOAD_VERSION {
            return Err(ApplyError::Version {
                lsn: header.lsn,
                version: header.v,
            });
        }
        if header.lsn != lsn {
            return Err(ApplyError::SnapshotLsn {
                found: header.lsn,
                expected: lsn,
            });
        }
        let mut state = State::new();
        for l in lines {
            let line: OwnedSnapshotLine =
                serde_json::from_slice(l).map_err(|source| ApplyError::Snapshot { source })?;
            match line {
                OwnedSnapshotLine::Bead { lsn, bead, lease } => {
                    let bead = *bead;
                    state.put_entry(lsn, Arc::new(Entry { bead, lease, lsn }));
                }
                OwnedSnapshotLine::Record { key, record } => {
                    state.records.insert(key, record);
                }
            }
        }
        if state.beads.len() != header.beads || state.records.len() != header.records {
            return Err(ApplyError::Snapshot {
                source: serde::de::Error::custom("snapshot is truncated"),
            });
        }
        state.lsn = lsn;
        state.settle();
        Ok(state)
    }
}

/// Adds the edge `id -> d.depends_on_id` to the edge indexes.
fn index_edge(ix: &mut Index, beads: &IdMap<Arc<Entry>>, id: &Id, d: &crate::bead::Dependency) {
    add_edge(
        [&mut ix.dependents, &mut ix.waiters, &mut ix.children],
        beads,
        id,
        d,
    );
}

/// [`index_edge`] into the three edge maps `[dependents, waiters, children]` themselves.
fn add_edge(
    [dependents, waiters, children]: [&mut IdMap<IdSet>; 3],
    beads: &IdMap<Arc<Entry>>,
    id: &Id,
    d: &crate::bead::Dependency,
) {
    if d.dep_type.affects_ready() {
        add_to(dependents, beads, &d.depends_on_id, id);
    }
    if d.dep_type == DepType::WaitsFor {
        for spawner in waits_for_keys(d) {
            add_to(waiters, beads, spawner, id);
        }
    }
    if d.dep_type == DepType::ParentChild {
        add_to(children, beads, &d.depends_on_id, id);
    }
}

/// `map[key].insert(member)`. A new key shares the id the state holds for that bead; only the
/// target of a dangling edge (a bead the state does not have) gets an id of its own.
fn add_to(map: &mut IdMap<IdSet>, beads: &IdMap<Arc<Entry>>, key: &str, member: &Id) {
    if let Some(set) = map.get_mut(key) {
        set.insert(Arc::clone(member));
        return;
    }
    let key = match beads.get_key_value(key) {
        Some((shared, _)) => Arc::clone(shared),
        None => Id::from(key),
    };
    let mut set = IdSet::default();
    set.insert(Arc::clone(member));
    map.insert(key, set);
}

fn mark_waiters(ix: &mut Index, parent: &str) {
    // Beads waiting for the children of `parent` must re-check their gate.
    if !ix.rebuild_all
        && let Some(w) = ix.waiters.get(parent)
    {
        ix.dirty.extend(w.iter().cloned());
    }
}

/// The spawners a `waits-for` edge is indexed under: its target and, when the metadata names a
/// different spawner, that one too.
fn waits_for_keys(d: &crate::bead::Dependency) -> impl Iterator<Item = &str> {
    let target = d.depends_on_id.as_str();
    let spawner = waits_for_spawner(d).filter(|s| *s != target);
    std::iter::once(target).chain(spawner)
}

fn waits_for_spawner(d: &crate::bead::Dependency) -> Option<&str> {
    match &d.metadata {
        Some(Value::Object(m)) => m.get("spawner_id").and_then(Value::as_str),
        _ => None,
    }
}

const SNAPSHOT_FORMAT: &str = "finn-beads-snapshot";

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    format: String,
    v: u32,
    lsn: Lsn,
    beads: usize,
    records: usize,
}

#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum SnapshotLine<'a> {
    Bead {
        lsn: Lsn,
        bead: &'a Bead,
        #[serde(skip_serializing_if = "Option::is_none")]
        lease: Option<&'a Lease>,
    },
    Record {
        key: &'a str,
        record: &'a Map<String, Value>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum OwnedSnapshotLine {
    Bead {
        lsn: Lsn,
        bead: Box<Bead>,
        #[serde(default)]
        lease: Option<Lease>,
    },
    Record {
        key: String,
        record: Map<String, Value>,
    },
}

fn push_json_line<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    // Serializing these types to a Vec cannot fail: every map key is a string.
    if serde_json::to_writer(&mut *out, v).is_ok() {
        out.push(b'\n');
    }
}
