//! Transactions: mutations staged against the current state, validated, then written to the WAL
//! as one atomic batch before they are applied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use finn_wal::{Kind, Lsn, NewRecord};
use serde_json::{Map, Value};

use crate::bead::{Bead, Comment, DepType, Dependency, IssueType, Priority, Status};
use crate::event::{
    BeadPayloadRef, Change, Lease, PAYLOAD_VERSION, RecordPayload, bead_key, record_key,
};
use crate::state::{Entry, Id, State};
use crate::timestamp::Timestamp;
use crate::validate::{Limits, ValidationError};

/// Field changes for [`Tx::update`]. `None` leaves a field alone; `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New design notes.
    pub design: Option<Option<String>>,
    /// New acceptance criteria.
    pub acceptance_criteria: Option<Option<String>>,
    /// New working notes.
    pub notes: Option<Option<String>>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New type.
    pub issue_type: Option<IssueType>,
    /// New assignee.
    pub assignee: Option<Option<String>>,
    /// New owner.
    pub owner: Option<Option<String>>,
    /// New estimate.
    pub estimated_minutes: Option<Option<i64>>,
    /// New due date.
    pub due_at: Option<Option<Timestamp>>,
    /// New external reference.
    pub external_ref: Option<Option<String>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Staged {
    /// The bead's id, shared with `Tx::slots` and, once applied, with the state's indexes.
    pub(crate) id: Id,
    /// The bead and its lease in the allocation the state will hold once the record is durable
    /// (only its `lsn` is set then): a bead is about a kilobyte, and an import stages 100,000s.
    pub(crate) entry: Arc<Entry>,
    /// Whether `entry` holds a lease (read when staging, so the commit of an import decides
    /// how to write each line without visiting its bead again).
    pub(crate) leased: bool,
    pub(crate) changes: Changes,
    /// JSON text that deserializes to exactly `bead` (an imported line), written into the WAL
    /// payload as it is instead of serializing `bead` again.
    pub(crate) raw: Option<RawJson>,
}

/// The changes a staged bead went through, in order: almost always exactly one, which is kept
/// inline (an import stages 100,000s of beads).
#[derive(Clone, Debug)]
pub(crate) enum Changes {
    One(Change),
    Many(Vec<Change>),
}

impl Changes {
    fn push(&mut self, change: Change) {
        let all = match std::mem::replace(self, Changes::Many(Vec::new())) {
            Changes::One(first) => vec![first, change],
            Changes::Many(mut all) => {
                all.push(change);
                all
            }
        };
        *self = Changes::Many(all);
    }

    fn as_slice(&self) -> &[Change] {
        match self {
            Changes::One(change) => std::slice::from_ref(change),
            Changes::Many(all) => all,
        }
    }
}

/// An imported line that goes into the WAL as it is: its WAL key and where it is in the
/// import's input ([`Tx::set_input`]). The payload around it is built only when its batch is
/// appended ([`Outbox`]), so an import never holds a second copy of the whole file.
#[derive(Clone, Debug)]
pub(crate) struct RawJson {
    /// The WAL key of the bead (`bead/<id>`), built by the parse thread.
    key: String,
    /// The line's bytes in the input: JSON that deserializes to exactly the staged bead.
    line: Range<usize>,
}

impl RawJson {
    /// The line at `line` in the input, the JSON of bead `id` (see [`raw_bead_json`] for which
    /// lines qualify).
    pub(crate) fn new(id: &str, line: Range<usize>) -> RawJson {
        RawJson {
            key: bead_key(id),
            line,
        }
    }

    /// The record for a bead staged with these changes and lease: the line itself when they
    /// are the import's own, else a payload spliced anew around the line.
    fn into_outgoing(
        self,
        changes: &[Change],
        lease: Option<&Lease>,
        input: &[u8],
    ) -> Result<Outgoing, serde_json::Error> {
        // Never write a payload around bytes that are not the line (a range the parse got
        // wrong would otherwise reach the WAL as a record replay cannot read).
        let Some(text) = input.get(self.line.clone()) else {
            return Err(serde::ser::Error::custom(
                "an imported line lies outside the import's input",
            ));
        };
        if lease.is_none() && changes == [Change::Import] {
            return Ok(Outgoing::Line {
                key: self.key,
                line: self.line,
            });
        }
        let payload = splice_payload(PAYLOAD_VERSION, changes, lease, text)?;
        Ok(Outgoing::Encoded(NewRecord::put(
            Kind::Bead,
            self.key,
            payload,
        )))
    }
}

/// A record of a transaction on its way to the WAL.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Encoded.
    Encoded(NewRecord),
    /// An imported line; its payload is [`IMPORT_PREFIX`], the line, `}` (what the payload
    /// encoder writes for it, a test holds them equal).
    Line {
        /// `bead/<id>`.
        key: String,
        /// The line in the input.
        line: Range<usize>,
    },
}

impl Outgoing {
    /// Bytes of key and payload (to cut batches).
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Encoded(r) => r.key.as_ref().map_or(0, String::len) + r.payload.len(),
            Outgoing::Line { key, line } => key.len() + IMPORT_PREFIX.len() + line.len() + 1,
        }
    }
}

/// A committed transaction's records, in order, with the import input their lines are in.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) records: Vec<Outgoing>,
    input: Option<Input>,
}

impl Outbox {
    /// The WAL record of `o`: an imported line gets its payload here, one batch at a time.
    pub(crate) fn encode(&self, o: Outgoing) -> NewRecord {
        match o {
            Outgoing::Encoded(r) => r,
            Outgoing::Line { key, line } => {
                // In range: `RawJson::into_outgoing` checked it against this input.
                let text = self
                    .input
                    .as_deref()
                    .and_then(|i| i.get(line))
                    .unwrap_or_default();
                let mut payload = Vec::with_capacity(IMPORT_PREFIX.len() + text.len() + 1);
                payload.extend_from_slice(IMPORT_PREFIX);
                payload.extend_from_slice(text);
                payload.push(b'}');
                NewRecord::put(Kind::Bead, key, payload)
            }
        }
    }

    /// Every record encoded.
    pub(crate) fn encode_all(mut self) -> Vec<NewRecord> {
        let records = std::mem::take(&mut self.records);
        records.into_iter().map(|o| self.encode(o)).collect()
    }
}

/// The bytes of an `issues.jsonl` being imported, shared by the transaction that stages its
/// lines and the commit that appends them.
pub(crate) type Input = Arc<Vec<u8>>;

/// The start of an imported line's payload, up to the line itself.
const IMPORT_PREFIX: &[u8] = br#"{"v":1,"changes":[{"op":"import"}],"bead":"#;

/// A set of mutations that commit together: all of them reach the WAL in one atomic batch, or
/// none does. Obtained from [`Store::transact`](crate::Store::transact).
///
/// Every method validates before staging anything, so a failed call leaves the transaction as it
/// was; returning an error from the closure discards the whole transaction.
pub struct Tx<'s> {
    state: &'s State,
    limits: &'s Limits,
    id_prefix: &'s str,
    now: Timestamp,
    /// Staged beads in the order they were first touched (the order of their WAL records),
    /// with `slots` mapping an id to its position.
    staged: Vec<Staged>,
    slots: crate::state::IdMap<usize>,
    /// The import input the [`RawJson`] lines of `staged` are in.
    input: Option<Input>,
    pub(crate) records: BTreeMap<String, Map<String, Value>>,
}

impl<'s> Tx<'s> {
    pub(crate) fn new(
        state: &'s State,
        limits: &'s Limits,
        id_prefix: &'s str,
        now: Timestamp,
    ) -> Self {
        Self {
            state,
            limits,
            id_prefix,
            now,
            staged: Vec::new(),
            slots: crate::state::IdMap::default(),
            input: None,
            records: BTreeMap::new(),
        }
    }

    /// The committed state this transaction started from (staged changes not included).
    pub fn state(&self) -> &State {
        self.state
    }

    /// The transaction's clock reading; every timestamp it writes is derived from it.
    pub fn now(&self) -> &Timestamp {
        &self.now
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        self.limits
    }

    /// A bead as this transaction sees it (staged changes included).
    pub fn get(&self, id: &str) -> Option<&Bead> {
        match self.staged_entry(id) {
            Some(s) => Some(&s.entry.bead),
            None => self.state.get(id),
        }
    }

    fn staged_entry(&self, id: &str) -> Option<&Staged> {
        if self.staged.is_empty() {
            return None;
        }
        self.slots.get(id).and_then(|i| self.staged.get(*i))
    }

    /// Makes room for `additional` more staged beads (bulk imports).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.staged.reserve(additional);
        self.slots.reserve(additional);
    }

    /// The lease on a bead as this transaction sees it.
    pub fn lease(&self, id: &str) -> Option<&Lease> {
        match self.staged_entry(id) {
            Some(s) => s.entry.lease.as_ref(),
            None => self.state.entry(id).and_then(|e| e.lease.as_ref()),
        }
    }

    /// Whether anything is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.records.is_empty()
    }

    fn existing(&self, id: &str) -> Result<&Bead, ValidationError> {
        match self.get(id) {
            None => Err(ValidationError::UnknownBead { id: id.to_owned() }),
            Some(b) if b.status == Status::Tombstone => {
                Err(ValidationError::Deleted { id: id.to_owned() })
            }
            Some(b) => Ok(b),
        }
    }

    /// Stages a modified copy of bead `id`. `f` works on a scratch copy; it is validated and only
    /// then staged, so a failed mutation stages nothing.
    pub(crate) fn modify(
        &mut self,
        id: &str,
        change: Change,
        f: impl FnOnce(&mut Bead, &mut Option<Lease>, &Timestamp) -> Result<(), ValidationError>,
    ) -> Result<(), ValidationError> {
        let current = self.existing(id)?;
        let mut bead = current.clone();
        let mut lease = self.lease(id).cloned();
        f(&mut bead, &mut lease, &self.now)?;
        self.limits.check_bead(&bead)?;
        bead.updated_at = Some(self.next_updated_at(current));
        self.stage(bead, lease, change);
        Ok(())
    }

    fn next_updated_at(&self, current: &Bead) -> Timestamp {
        // Keep updated_at strictly increasing per bead even if the clock steps back, so import
        // merges (which compare updated_at) always see our own writes as newer.
        match &current.updated_at {
            Some(prev) if !self.now.is_after(prev) => prev.next_after(),
            _ => self.now.clone(),
        }
    }

    fn stage(&mut self, bead: Bead, lease: Option<Lease>, change: Change) {
        self.stage_raw(staged_entry(bead, lease), change, None);
    }

    fn stage_raw(&mut self, entry: Arc<Entry>, change: Change, raw: Option<RawJson>) {
        match self.slots.get(entry.bead.id.as_str()) {
            Some(&i) if i < self.staged.len() => {
                let s = &mut self.staged[i];
                s.leased = entry.lease.is_some();
                s.entry = entry;
                s.changes.push(change);
                s.raw = raw;
            }
            _ => self.stage_first(entry, change, raw),
        }
    }

    /// Stages a bead this transaction has not staged yet.
    fn stage_first(&mut self, entry: Arc<Entry>, change: Change, raw: Option<RawJson>) {
        let id = Id::from(entry.bead.id.as_str());
        self.slots.insert(Arc::clone(&id), self.staged.len());
        self.staged.push(Staged {
            id,
            leased: entry.lease.is_some(),
            entry,
            changes: Changes::One(change),
            raw,
        });
    }

    /// Creates a bead. An empty `bead.id` gets a generated one (`<prefix>-<base36>`); the id is
    /// stored in the WAL record, so replay never mints another. Missing timestamps are set to now.
    /// Dependencies listed on the bead are validated like [`Tx::add_dependency`].
    pub fn create(&mut self, mut bead: Bead) -> Result<String, ValidationError> {
        if bead.id.is_empty() {
            bead.id = self.generate_id();
        } else if self.get(&bead.id).is_some() {
            return Err(ValidationError::DuplicateId { id: bead.id });
        }
        self.limits.check_bead(&bead)?;
        if bead.status == Status::Tombstone {
            return Err(ValidationError::StatusNotSettable {
                status: bead.status.to_string(),
                use_instead: "delete",
            });
        }
        let now = self.now.clone();
        bead.created_at.get_or_insert_with(|| now.clone());
        bead.updated_at = Some(now.clone());
        if bead.status == Status::Closed && bead.closed_at.is_none() {
            bead.closed_at = Some(now.clone());
        }
        let deps = std::mem::take(&mut bead.dependencies);
        for d in &deps {
            self.check_edge(&bead.id, &d.depends_on_id)?;
        }
        // Cycle checks must see the new bead's own edges; stage it first, then verify each edge.
        let id = bead.id.clone();
        bead.dependencies = deps
            .into_iter()
            .map(|mut d| {
                d.issue_id = Some(id.clone());
                d.created_at.get_or_insert_with(|| now.clone());
                d
            })
            .collect();
        for d in &bead.dependencies {
            if d.dep_type.affects_ready()
                && let Some(path) = self.find_path(&d.depends_on_id, &id, Some(&bead))
            {
                let mut cycle = vec![id.clone()];
                cycle.extend(path);
                return Err(ValidationError::DependencyCycle { path: cycle });
            }
        }
        self.stage(bead, None, Change::Create);
        Ok(id)
    }

    fn generate_id(&self) -> String {
        loop {
            let r = ulid::Ulid::new().random();
            let mut n = (r as u64) & ((1u64 << 40) - 1);
            let mut digits = Vec::new();
            while n > 0 || digits.len() < 4 {
                let d = (n % 36) as u8;
                digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
                n /= 36;
            }
            digits.reverse();
            let id = format!(
                "{}-{}",
                self.id_prefix,
                String::from_utf8_lossy(&digits[..digits.len().min(8)])
            );
            if self.get(&id).is_none() {
                return id;
            }
        }
    }

    /// Sets or clears fields.
    pub fn update(&mut self, id: &str, patch: Patch) -> Result<(), ValidationError> {
        let mut fields = Vec::new();
        macro_rules! names {
            ($($f:ident),*) => { $( if patch.$f.is_some() { fields.push(stringify!($f).to_owned()); } )* };
        }
        names!(
            title,
            description,
            design,
            acceptance_criteria,
            notes,
            priority,
            issue_type,
            assignee,
            owner,
            estimated_minutes,
            due_at,
            external_ref
        );
        self.modify(id, Change::Update { fields }, move |b, _, _| {
            if let Some(v) = patch.title {
                b.title = v;
            }
            macro_rules! set {
                ($($f:ident),*) => { $( if let Some(v) = patch.$f { b.$f = v; } )* };
            }
            set!(
                description,
                design,
                acceptance_criteria,
                notes,
                assignee,
                owner,
                estimated_minutes,
                due_at,
                external_ref
            );
            if let Some(v) = patch.priority {
                b.priority = v;
            }
            if let Some(v) = patch.issue_type {
                b.issue_type = v;
            }
            Ok(())
        })
    }

    /// Sets the status. `closed` behaves like [`Tx::close`] without a reason; `tombstone` is
    /// refused (use [`Tx::delete`]). Leaving `in_progress` drops any lease.
    pub fn set_status(&mut self, id: &str, status: Status) -> Result<(), ValidationError> {
        match status {
            Status::Tombstone => Err(ValidationError::StatusNotSettable {
                status: status.to_string(),
                use_instead: "delete",
            }),
            Status::Closed => self.close(id, None),
            status => self.modify(
                id,
                Change::SetStatus {
                    status: status.clone(),
                },
                |b, lease, _| {
                    if status != Status::InProgress {
                        *lease = None;
                    }
                    if b.status == Status::Closed {
                        b.closed_at = None;
                        b.close_reason = None;
                    }
                    b.status = status;
                    Ok(())
                },
            ),
        }
    }

    /// Closes with an optional reason; drops any lease.
    pub fn close(&mut self, id: &str, reason: Option<&str>) -> Result<(), ValidationError> {
        let reason = reason.map(str::to_owned);
        self.modify(
            id,
            Change::Close {
                reason: reason.clone(),
            },
            |b, lease, now| {
                b.status = Status::Closed;
                b.closed_at = Some(now.clone());
                b.close_reason = reason;
                *lease = None;
                Ok(())
            },
        )
    }

    /// Reopens a closed (or any non-deleted) bead.
    pub fn reopen(&mut self, id: &str) -> Result<(), ValidationError> {
        self.modify(id, Change::Reopen, |b, lease, _| {
            b.status = Status::Open;
            b.closed_at = None;
            b.close_reason = None;
            *lease = None;
            Ok(())
        })
    }

    /// Sets (`Some`) or clears (`None`) `defer_until`. Clearing also turns a `deferred` status back
    /// into `open`.
    pub fn defer(&mut self, id: &str, until: Option<Timestamp>) -> Result<(), ValidationError> {
        self.modify(
            id,
            Change::Defer {
                until: until.clone(),
            },
            |b, _, _| {
                if until.is_none() && b.status == Status::Deferred {
                    b.status = Status::Open;
                }
                b.defer_until = until;
                Ok(())
            },
        )
    }

    /// Adds labels (already present ones are kept once).
    pub fn add_labels(&mut self, id: &str, labels: &[&str]) -> Result<(), ValidationError> {
        for l in labels {
            self.limits.check_label(l)?;
        }
        let add: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        self.modify(
            id,
            Change::Labels {
                add: add.clone(),
                remove: Vec::new(),
            },
            |b, _, _| {
                for l in add {
                    if !b.has_label(&l) {
                        b.labels.push(l);
                    }
                }
                Ok(())
            },
        )
    }

    /// Removes labels (absent ones are ignored).
    pub fn remove_labels(&mut self, id: &str, labels: &[&str]) -> Result<(), ValidationError> {
        let remove: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        self.modify(
            id,
            Change::Labels {
                add: Vec::new(),
                remove: remove.clone(),
            },
            |b, _, _| {
                b.labels.retain(|l| !remove.contains(l));
                Ok(())
            },
        )
    }

    /// Adds a comment; returns its id (a ULID string).
    pub fn comment(
        &mut self,
        id: &str,
        author: Option<&str>,
        text: &str,
    ) -> Result<String, ValidationError> {
        if text.trim().is_empty() {
            return Err(ValidationError::Empty { field: "comment" });
        }
        if let Some(a) = author {
            self.limits.check_short("author", a)?;
        }
        let comment_id = ulid::Ulid::new().to_string();
        let c = Comment {
            id: Some(Value::String(comment_id.clone())),
            issue_id: Some(id.to_owned()),
            author: author.map(str::to_owned),
            text: text.to_owned(),
            created_at: Some(self.now.clone()),
            extra: Map::new(),
        };
        self.modify(id, Change::Comment, |b, _, _| {
            b.comments.push(c);
            Ok(())
        })?;
        Ok(comment_id)
    }

    /// Adds an edge `id -> target`. The target must exist; edges that affect readiness must not
    /// close a cycle. Adding an edge that already exists changes nothing.
    pub fn add_dependency(
        &mut self,
        id: &str,
        target: &str,
        dep_type: DepType,
    ) -> Result<(), ValidationError> {
        let current = self.existing(id)?;
        if current
            .dependencies
            .iter()
            .any(|d| d.depends_on_id == target && d.dep_type == dep_type)
        {
            return Ok(());
        }
        self.check_edge(id, target)?;
        if dep_type.affects_ready()
            && let Some(path) = self.find_path(target, id, None)
        {
            let mut cycle = vec![id.to_owned()];
            cycle.extend(path);
            return Err(ValidationError::DependencyCycle { path: cycle });
        }
        let change = Change::DependencyAdd {
            target: target.to_owned(),
            dep_type: dep_type.clone(),
        };
        self.modify(id, change, |b, _, now| {
            let mut d = Dependency::new(id, target, dep_type);
            d.created_at = Some(now.clone());
            b.dependencies.push(d);
            Ok(())
        })
    }

    /// Removes edges `id -> target` of `dep_type` (all types when `None`).
    pub fn remove_dependency(
        &mut self,
        id: &str,
        target: &str,
        dep_type: Option<DepType>,
    ) -> Result<(), ValidationError> {
        let change = Change::DependencyRemove {
            target: target.to_owned(),
            dep_type: dep_type.clone(),
        };
        self.modify(id, change, |b, _, _| {
            b.dependencies.retain(|d| {
                !(d.depends_on_id == target && dep_type.as_ref().is_none_or(|t| *t == d.dep_type))
            });
            Ok(())
        })
    }

    /// Deletes a bead: it becomes a tombstone (kept, and exported, so the deletion propagates).
    pub fn delete(
        &mut self,
        id: &str,
        reason: Option<&str>,
        by: Option<&str>,
    ) -> Result<(), ValidationError> {
        let reason = reason.map(str::to_owned);
        let by = by.map(str::to_owned);
        self.modify(
            id,
            Change::Delete {
                reason: reason.clone(),
            },
            |b, lease, now| {
                b.original_type = Some(b.issue_type.to_string());
                b.status = Status::Tombstone;
                b.deleted_at = Some(now.clone());
                b.delete_reason = reason;
                b.deleted_by = by;
                *lease = None;
                Ok(())
            },
        )
    }

    /// Writes a non-issue record (memory, ...) under `key`, replacing any previous one.
    pub fn put_record(&mut self, key: &str, record: Map<String, Value>) {
        self.records.insert(key.to_owned(), record);
    }

    /// Sets the input that the [`RawJson`] lines staged from now on are in.
    pub(crate) fn set_input(&mut self, input: Input) {
        self.input = Some(input);
    }

    /// Writes an imported bead verbatim (import merge decided it is newer or new), with the
    /// lease it keeps. `raw`, if given, is the JSON text the bead was deserialized from (see
    /// [`raw_bead_json`]).
    pub(crate) fn put_imported(&mut self, entry: Arc<Entry>, raw: Option<RawJson>) {
        self.stage_raw(entry, Change::Import, raw);
    }

    /// [`Tx::put_imported`] for a bead [`Tx::get`] does not know (neither staged nor
    /// committed): no lookup of its id among the staged ones.
    pub(crate) fn put_imported_new(&mut self, entry: Arc<Entry>, raw: Option<RawJson>) {
        debug_assert!(self.get(&entry.bead.id).is_none());
        self.stage_first(entry, Change::Import, raw);
    }

    fn check_edge(&self, id: &str, target: &str) -> Result<(), ValidationError> {
        self.limits.check_id(target)?;
        if id == target {
            return Err(ValidationError::SelfDependency { id: id.to_owned() });
        }
        match self.get(target) {
            Some(t) if t.status != Status::Tombstone => Ok(()),
            _ => Err(ValidationError::DependencyTargetMissing {
                id: id.to_owned(),
                target: target.to_owned(),
            }),
        }
    }

    /// A path `from -> ... -> to` through edges that affect readiness, if any. `extra` overrides
    /// the bead with its id (a bead being created).
    fn find_path(&self, from: &str, to: &str, extra: Option<&Bead>) -> Option<Vec<String>> {
        let lookup = |id: &str| -> Option<&Bead> {
            match extra {
                Some(b) if b.id == id => Some(b),
                _ => self.get(id),
            }
        };
        let mut prev: HashMap<String, String> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut stack = vec![from.to_owned()];
        seen.insert(from.to_owned());
        while let Some(cur) = stack.pop() {
            if cur == to {
                let mut path = vec![cur.clone()];
                let mut at = cur;
                while let Some(p) = prev.get(&at) {
                    path.push(p.clone());
                    at = p.clone();
                }
                path.reverse();
                return Some(path);
            }
            if let Some(b) = lookup(&cur) {
                for d in &b.dependencies {
                    if d.dep_type.affects_ready() && seen.insert(d.depends_on_id.clone()) {
                        prev.insert(d.depends_on_id.clone(), cur.clone());
                        stack.push(d.depends_on_id.clone());
                    }
                }
            }
        }
        None
    }

    /// Sets the lease of a bead (queue internals).
    pub(crate) fn modify_with_lease(
        &mut self,
        id: &str,
        change: Change,
        f: impl FnOnce(&mut Bead, &mut Option<Lease>, &Timestamp) -> Result<(), ValidationError>,
    ) -> Result<(), ValidationError> {
        self.modify(id, change, f)
    }

    /// Turns the staged changes into WAL records plus, at the same positions, the entries to
    /// apply after the append.
    pub(crate) fn into_parts(self) -> Result<(Outbox, Vec<Pending>), serde_json::Error> {
        let n = self.staged.len() + self.records.len();
        let (mut records, mut pending) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (key, record) in self.records {
            let payload = RecordPayload {
                v: PAYLOAD_VERSION,
                record,
            };
            let bytes = serde_json::to_vec(&payload)?;
            let r = NewRecord::put(Kind::Bead, record_key(&key), bytes);
            records.push(Outgoing::Encoded(r));
            pending.push(Pending::Record(key, payload.record));
        }
        let input = self.input.as_deref().map_or(&[][..], Vec::as_slice);
        for s in self.staged {
            let e = &s.entry;
            let changes = s.changes.as_slice();
            let record = match s.raw {
                // Only a leased bead is read here: for the others the line is enough.
                Some(raw) => {
                    let lease = if s.leased { e.lease.as_ref() } else { None };
                    raw.into_outgoing(changes, lease, input)?
                }
                None => Outgoing::Encoded(NewRecord::put(
                    Kind::Bead,
                    bead_key(&e.bead.id),
                    serde_json::to_vec(&BeadPayloadRef {
                        v: PAYLOAD_VERSION,
                        changes,
                        bead: &e.bead,
                        lease: e.lease.as_ref(),
                    })?,
                )),
            };
            records.push(record);
            pending.push(Pending::Bead(s.id, s.entry));
        }
        let outbox = Outbox {
            records,
            input: self.input,
        };
        Ok((outbox, pending))
    }
}

/// A bead payload with the bead as the JSON text `raw` (which deserializes to exactly the
/// bead), so an imported line is not serialized again. Replay decodes it like any other
/// [`BeadPayload`](crate::event::BeadPayload): fields `v`, `changes`, `bead`, `lease` as the
/// derive writes them; the lease comes last so that the bead text starts at a fixed offset.
fn splice_payload(
    v: u32,
    changes: &[Change],
    lease: Option<&Lease>,
    raw: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(b"{\"v\":");
    serde_json::to_writer(&mut out, &v)?;
    if !changes.is_empty() {
        out.extend_from_slice(b",\"changes\":");
        serde_json::to_writer(&mut out, changes)?;
    }
    out.extend_from_slice(b",\"bead\":");
    out.extend_from_slice(raw);
    if let Some(lease) = lease {
        out.extend_from_slice(b",\"lease\":");
        serde_json::to_writer(&mut out, lease)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Nesting the raw text of a bead may have to be spliced into a payload: the payload adds one
/// level, and serde_json refuses documents nested deeper than 128.
const MAX_RAW_DEPTH: usize = 100;

/// Whether `text` (an `issues.jsonl` line that deserialized into a bead on its own) can be
/// written into a WAL payload as it is: one JSON object, nested at most [`MAX_RAW_DEPTH`] levels.
pub(crate) fn raw_bead_json(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') {
        return false;
    }
    // Nesting never exceeds the number of brackets that open: when that is within the limit
    // (every real bead), a count the compiler vectorizes settles it without the exact walk.
    let openers = bytes.iter().filter(|b| matches!(b, b'{' | b'[')).count();
    if openers <= MAX_RAW_DEPTH {
        return true;
    }
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max <= MAX_RAW_DEPTH
}

/// A staged bead and lease in the allocation the state will keep, its LSN not known yet.
pub(crate) fn staged_entry(bead: Bead, lease: Option<Lease>) -> Arc<Entry> {
    Arc::new(Entry {
        bead,
        lease,
        lsn: Lsn::ZERO,
    })
}

/// What to apply to the state once a record is durable.
pub(crate) enum Pending {
    /// A bead entry with its id, `lsn` still to be set.
    Bead(Id, Arc<Entry>),
    Record(String, Map<String, Value>),
}

impl Pending {
    pub(crate) fn apply(self, state: &mut State, lsn: Lsn) {
        match self {
            Pending::Bead(id, mut entry) => {
                // The transaction held the only reference, so this sets the field in place.
                Arc::make_mut(&mut entry).lsn = lsn;
                state.put_shared(lsn, id, entry);
            }
            Pending::Record(key, record) => state.put_record(lsn, key, record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BeadPayload;

    const LINE: &str = r#"{"id":"bd-1","title":"t","created_at":"2026-02-26T04:23:04.550522163Z","x":[1,{"y":null}]}"#;

    fn decode(bytes: &[u8]) -> BeadPayload {
        serde_json::from_slice(bytes).unwrap()
    }

    /// `LINE` as a line of an import input, staged with `changes` and `lease`, encoded.
    fn encode_line(changes: &[Change], lease: Option<&Lease>) -> NewRecord {
        let input = format!("\n{LINE}\n");
        let raw = RawJson::new("bd-1", 1..1 + LINE.len());
        let outgoing = raw.into_outgoing(changes, lease, input.as_bytes()).unwrap();
        let outbox = Outbox {
            records: Vec::new(),
            input: Some(Arc::new(input.into_bytes())),
        };
        outbox.encode(outgoing)
    }

    #[test]
    fn prebuilt_import_payload_decodes_to_the_line_and_keeps_its_text() {
        let r = encode_line(&[Change::Import], None);
        assert_eq!(r.key.as_deref(), Some("bead/bd-1"));
        let p = decode(&r.payload);
        assert_eq!(p.v, PAYLOAD_VERSION);
        assert_eq!(p.changes, vec![Change::Import]);
        assert_eq!(p.bead, serde_json::from_str::<Bead>(LINE).unwrap());
        assert!(p.lease.is_none());
        // The bead's text is in the payload byte for byte (timestamp precision, unknown fields).
        assert!(std::str::from_utf8(&r.payload).unwrap().contains(LINE));
    }

    #[test]
    fn a_line_outside_the_input_is_an_error_not_a_record() {
        let raw = RawJson::new("bd-1", 5..5 + LINE.len());
        assert!(
            raw.into_outgoing(&[Change::Import], None, LINE.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn import_prefix_is_what_the_payload_encoder_writes() {
        let mut spliced = splice_payload(PAYLOAD_VERSION, &[Change::Import], None, b"").unwrap();
        assert_eq!(spliced.pop(), Some(b'}'));
        assert_eq!(spliced, IMPORT_PREFIX);
    }

    #[test]
    fn only_lines_nested_within_the_limit_go_into_the_wal_as_they_are() {
        let nested = |depth: usize| {
            format!(
                r#"{{"id":"bd-1","x":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        assert!(raw_bead_json(&nested(MAX_RAW_DEPTH - 1)));
        assert!(!raw_bead_json(&nested(MAX_RAW_DEPTH)));
        // Many brackets, little nesting: the exact walk decides.
        let wide = format!(r#"{{"id":"bd-1","x":[{}[]]}}"#, "[],".repeat(300));
        assert!(raw_bead_json(&wide));
        // Brackets inside strings do not nest.
        let quoted = format!(r#"{{"id":"bd-1","title":"{}"}}"#, "{[".repeat(300));
        assert!(raw_bead_json(&quoted));
        assert!(!raw_bead_json(r#"["id"]"#));
    }

    #[test]
    fn import_payload_with_a_kept_lease_is_spliced_anew() {
        let now = Timestamp::parse("2026-02-26T04:23:04Z").unwrap();
        let lease = Lease {
            claim_id: "c1".into(),
            worker: "w".into(),
            claimed_at: now.clone(),
            expires_at: now,
            prev_assignee: None,
        };
        let r = encode_line(&[Change::Import], Some(&lease));
        assert_eq!(r.key.as_deref(), Some("bead/bd-1"));
        let p = decode(&r.payload);
        assert_eq!(p.lease, Some(lease));
        assert_eq!(p.bead, serde_json::from_str::<Bead>(LINE).unwrap());
    }
}
