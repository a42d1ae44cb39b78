//! Ready work with the semantics of `bd ready`, plus blocked beads, dependency trees and epic
//! progress.
//!
//! A bead is ready when its status is `open`, it is not deferred (no `defer_until` in the future,
//! no deferred ancestor), it is not a template or ephemeral, and nothing blocks it: no `blocks` /
//! `conditional-blocks` / `waits-for` edge is active and no parent (through `parent-child`,
//! transitively) is blocked. `related`, `discovered-from` and unknown edge types never block, and a
//! closed blocker never blocks (except a `conditional-blocks` blocker that closed successfully:
//! the dependent runs only if it failed).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bead::{Bead, DepType, IssueType, Priority, Status};
use crate::state::{Blocker, PoolEntry, State};
use crate::timestamp::Timestamp;

/// Order of the ready list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SortPolicy {
    /// Priority, then oldest first (`bd ready --sort priority`, the default).
    #[default]
    Priority,
    /// Beads created in the last 48 hours by priority, then older beads oldest first (`bd`'s hybrid).
    Hybrid,
    /// Oldest first.
    Oldest,
}

/// How far back "recent" reaches for [`SortPolicy::Hybrid`].
pub const HYBRID_RECENT_WINDOW: Duration = Duration::from_secs(48 * 3600);

/// Filters and options of a ready query. `Default` is `bd ready` with no flags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadyQuery {
    /// Sort policy.
    pub sort: SortPolicy,
    /// Only beads assigned to this worker.
    pub assignee: Option<String>,
    /// Only unassigned beads.
    pub unassigned: bool,
    /// Only beads carrying all of these labels.
    pub labels_all: Vec<String>,
    /// Only beads carrying at least one of these labels.
    pub labels_any: Vec<String>,
    /// No bead carrying any of these labels.
    pub labels_exclude: Vec<String>,
    /// Only these issue types.
    pub types: Vec<IssueType>,
    /// Only these priorities.
    pub priorities: Vec<Priority>,
    /// Only descendants (through `parent-child`) of this bead.
    pub parent: Option<String>,
    /// At most this many beads.
    pub limit: Option<usize>,
}

/// Why a bead is not in the ready list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Exclusion {
    /// Status is not `open`.
    Status {
        /// The bead's status.
        status: Status,
    },
    /// Deferred (status `deferred` or `defer_until` in the future).
    Deferred {
        /// The deferral instant, if any.
        until: Option<Timestamp>,
    },
    /// An ancestor is deferred.
    ParentDeferred {
        /// The deferred ancestor.
        ancestor: String,
    },
    /// Something blocks it.
    Blocked {
        /// What blocks it.
        blockers: Vec<Blocker>,
    },
    /// Templates are never ready.
    Template,
    /// Ephemeral beads are never ready.
    Ephemeral,
    /// A filter of the query excludes it.
    Filter {
        /// Which filter.
        filter: FilterMiss,
    },
    /// It was ready but beyond the query's limit.
    Limit,
}

/// The query filter a bead failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FilterMiss {
    /// Assigned to someone else (or nobody).
    Assignee,
    /// Assigned while `unassigned` was asked.
    Unassigned,
    /// Lacks a label of `labels_all`.
    LabelsAll,
    /// Has no label of `labels_any`.
    LabelsAny,
    /// Has a label of `labels_exclude`.
    LabelExcluded,
    /// Type not in `types`.
    Type,
    /// Priority not in `priorities`.
    Priority,
    /// Not a descendant of `parent`.
    Parent,
}

/// A bead left out of the ready list and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Excluded {
    /// The bead.
    pub id: String,
    /// The first reason found, in the order status, deferral, blocking, flags, filters, limit.
    pub reason: Exclusion,
}

/// The ready list plus, for every other bead, why it is not in it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation<'a> {
    /// The ready beads, sorted.
    pub ready: Vec<&'a Bead>,
    /// Every other non-tombstone bead with its reason, in id order.
    pub excluded: Vec<Excluded>,
}

/// A blocked bead and what blocks it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockedBead<'a> {
    /// The bead.
    pub bead: &'a Bead,
    /// Its blockers.
    pub blockers: Vec<Blocker>,
}

/// A node of a dependency tree: a bead and what it depends on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TreeNode {
    /// Bead id.
    pub id: String,
    /// Title, if the bead exists.
    pub title: Option<String>,
    /// Status, if the bead exists.
    pub status: Option<Status>,
    /// Kind of the edge from the parent node (`None` at the root).
    pub dep_type: Option<DepType>,
    /// Whether this bead is in the ready list's blocked set.
    pub blocked: bool,
    /// True when the node was already shown higher up (a diamond or a cycle) or depth ran out.
    pub truncated: bool,
    /// Dependencies of this bead.
    pub children: Vec<TreeNode>,
}

/// Completion of an epic's direct children.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EpicProgress {
    /// Children (tombstones excluded).
    pub total: usize,
    /// Closed children.
    pub closed: usize,
    /// Children in progress.
    pub in_progress: usize,
    /// Children that are blocked (by dependencies or by status).
    pub blocked: usize,
    /// Open children that are ready.
    pub ready: usize,
    /// `closed * 100 / total` (100 for an empty epic).
    pub percent: u8,
}

impl State {
    /// The ready list for `query` at instant `now` (`bd ready`).
    pub fn ready(&self, query: &ReadyQuery, now: &Timestamp) -> Vec<&Bead> {
        let parent_scope = query.parent.as_deref().map(|p| self.descendants(p));
        let limit = query.limit.unwrap_or(usize::MAX);
        let candidates = self
            .pool_ordered()
            .filter(|p| self.pool_readiness(p, now).is_none())
            .map(PoolEntry::bead)
            .filter(|b| filter_miss(b, query, parent_scope.as_ref()).is_none());
        if query.sort == SortPolicy::Priority {
            // The pool is kept in this order: stop as soon as the limit is reached.
            return candidates.take(limit).collect();
        }
        let mut out: Vec<&Bead> = candidates.collect();
        sort_beads(&mut out, query.sort, now);
        out.truncate(limit);
        out
    }

    /// The ready list and the reason every other bead is not in it (`bd ready --explain`).
    pub fn explain(&self, query: &ReadyQuery, now: &Timestamp) -> Explanation<'_> {
        let ready = self.ready(query, now);
        let ready_ids: HashSet<&str> = ready.iter().map(|b| b.id.as_str()).collect();
        let parent_scope = query.parent.as_deref().map(|p| self.descendants(p));
        let mut excluded: Vec<Excluded> = self
            .beads()
            .filter(|b| b.status != Status::Tombstone && !ready_ids.contains(b.id.as_str()))
            .map(|b| Excluded {
                id: b.id.clone(),
                reason: self
                    .readiness(b, now)
                    .or_else(|| {
                        filter_miss(b, query, parent_scope.as_ref())
                            .map(|filter| Exclusion::Filter { filter })
                    })
                    .unwrap_or(Exclusion::Limit),
            })
            .collect();
        excluded.sort_by(|a, b| a.id.cmp(&b.id));
        Explanation { ready, excluded }
    }

    /// Why a bead is not ready regardless of query filters, or `None` if it is ready.
    pub fn readiness(&self, b: &Bead, now: &Timestamp) -> Option<Exclusion> {
        if b.status != Status::Open {
            return Some(Exclusion::Status {
                status: b.status.clone(),
            });
        }
        if b.is_deferred_at(now) {
            return Some(Exclusion::Deferred {
                until: b.defer_until.clone(),
            });
        }
        if self.is_blocked(&b.id) {
            return Some(Exclusion::Blocked {
                blockers: self.blockers(&b.id),
            });
        }
        if let Some(ancestor) = self.deferred_ancestor(b, now) {
            return Some(Exclusion::ParentDeferred { ancestor });
        }
        if b.is_template == Some(true) {
            return Some(Exclusion::Template);
        }
        if b.ephemeral == Some(true) {
            return Some(Exclusion::Ephemeral);
        }
        None
    }

    /// [`State::readiness`] of a member of the ready pool, which is open and not blocked by
    /// construction: only the checks that depend on `now` or on flags remain.
    fn pool_readiness(&self, p: &PoolEntry, now: &Timestamp) -> Option<Exclusion> {
        debug_assert!(p.bead().status == Status::Open && !self.is_blocked(&p.bead().id));
        if p.has_defer_until && p.bead().is_deferred_at(now) {
            return Some(Exclusion::Deferred {
                until: p.bead().defer_until.clone(),
            });
        }
        // Checked here, not only inside `deferred_ancestor`, so that the bead is not read at all
        // when nothing is deferred (the common case).
        if !self.deferral_marks().is_empty()
            && let Some(ancestor) = self.deferred_ancestor(p.bead(), now)
        {
            return Some(Exclusion::ParentDeferred { ancestor });
        }
        if p.template {
            return Some(Exclusion::Template);
        }
        if p.ephemeral {
            return Some(Exclusion::Ephemeral);
        }
        None
    }

    fn deferred_ancestor(&self, b: &Bead, now: &Timestamp) -> Option<String> {
        let marks = self.deferral_marks();
        if marks.is_empty() {
            return None;
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = b.parents().collect();
        while let Some(p) = stack.pop() {
            if !seen.insert(p) {
                continue;
            }
            if let Some(pb) = self.get(p) {
                if marks.contains(p) && pb.is_deferred_at(now) {
                    return Some(p.to_owned());
                }
                stack.extend(pb.parents());
            }
        }
        None
    }

    /// All descendants of a bead through `parent-child` edges.
    pub fn descendants(&self, id: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut stack: Vec<&str> = self.children_of(id).collect();
        while let Some(c) = stack.pop() {
            if out.insert(c.to_owned()) {
                stack.extend(self.children_of(c));
            }
        }
        out
    }

    /// Blocked beads (open, in progress or deferred beads held back by dependencies), with their
    /// blockers, in id order (`bd blocked`).
    pub fn blocked(&self) -> Vec<BlockedBead<'_>> {
        let mut out: Vec<BlockedBead<'_>> = self
            .blocked_iter()
            .filter_map(|id| self.get(id))
            .map(|bead| BlockedBead {
                bead,
                blockers: self.blockers(&bead.id),
            })
            .collect();
        out.sort_by(|a, b| a.bead.id.cmp(&b.bead.id));
        out
    }

    /// What `id` depends on, recursively, down to `max_depth` levels (`bd dep tree`).
    pub fn dependency_tree(&self, id: &str, max_depth: usize) -> TreeNode {
        let mut seen = HashSet::new();
        self.tree_node(id, None, max_depth, &mut seen)
    }

    fn tree_node(
        &self,
        id: &str,
        dep_type: Option<DepType>,
        depth: usize,
        seen: &mut HashSet<String>,
    ) -> TreeNode {
        let bead = self.get(id);
        let mut node = TreeNode {
            id: id.to_owned(),
            title: bead.map(|b| b.title.clone()),
            status: bead.map(|b| b.status.clone()),
            dep_type,
            blocked: self.is_blocked(id),
            truncated: false,
            children: Vec::new(),
        };
        if !seen.insert(id.to_owned()) || depth == 0 {
            node.truncated = bead.is_some_and(|b| !b.dependencies.is_empty());
            return node;
        }
        if let Some(b) = bead {
            for d in &b.dependencies {
                node.children.push(self.tree_node(
                    &d.depends_on_id,
                    Some(d.dep_type.clone()),
                    depth - 1,
                    seen,
                ));
            }
        }
        node
    }

    /// Progress of an epic over its direct children (`bd epic status`).
    pub fn epic_progress(&self, id: &str, now: &Timestamp) -> EpicProgress {
        let mut p = EpicProgress::default();
        for c in self.children_of(id) {
            let Some(b) = self.get(c) else { continue };
            match b.status {
                Status::Tombstone => continue,
                Status::Closed => p.closed += 1,
                Status::InProgress => p.in_progress += 1,
                Status::Blocked => p.blocked += 1,
                _ if self.is_blocked(c) => p.blocked += 1,
                _ if self.readiness(b, now).is_none() => p.ready += 1,
                _ => {}
            }
            p.total += 1;
        }
        p.percent = (p.closed * 100)
            .checked_div(p.total)
            .map_or(100, |v| u8::try_from(v).unwrap_or(100));
        p
    }
}

fn filter_miss(b: &Bead, q: &ReadyQuery, scope: Option<&HashSet<String>>) -> Option<FilterMiss> {
    if let Some(a) = &q.assignee
        && b.assignee.as_deref() != Some(a.as_str())
    {
        return Some(FilterMiss::Assignee);
    }
    if q.unassigned && b.assignee.as_deref().is_some_and(|a| !a.is_empty()) {
        return Some(FilterMiss::Unassigned);
    }
    if !q.labels_all.iter().all(|l| b.has_label(l)) {
        return Some(FilterMiss::LabelsAll);
    }
    if !q.labels_any.is_empty() && !q.labels_any.iter().any(|l| b.has_label(l)) {
        return Some(FilterMiss::LabelsAny);
    }
    if q.labels_exclude.iter().any(|l| b.has_label(l)) {
        return Some(FilterMiss::LabelExcluded);
    }
    if !q.types.is_empty() && !q.types.contains(&b.issue_type) {
        return Some(FilterMiss::Type);
    }
    if !q.priorities.is_empty() && !q.priorities.contains(&b.priority) {
        return Some(FilterMiss::Priority);
    }
    if let Some(scope) = scope
        && !scope.contains(&b.id)
    {
        return Some(FilterMiss::Parent);
    }
    None
}

fn cmp_created(a: &Bead, b: &Bead) -> Ordering {
    // Beads without a creation time sort first, like NULLs in `bd`'s SQL.
    a.created_at.cmp(&b.created_at)
}

fn sort_beads(v: &mut [&Bead], policy: SortPolicy, now: &Timestamp) {
    match policy {
        SortPolicy::Priority => v.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| cmp_created(a, b))
                .then_with(|| a.id.cmp(&b.id))
        }),
        SortPolicy::Oldest => v.sort_by(|a, b| cmp_created(a, b).then_with(|| a.id.cmp(&b.id))),
        SortPolicy::Hybrid => {
            let cutoff_ms = now.unix_millis() - HYBRID_RECENT_WINDOW.as_millis() as i64;
            let recent = |b: &Bead| {
                b.created_at
                    .as_ref()
                    .is_some_and(|t| t.unix_millis() >= cutoff_ms)
            };
            v.sort_by(|a, b| {
                let (ra, rb) = (recent(a), recent(b));
                rb.cmp(&ra)
                    .then_with(|| {
                        if ra && rb {
                            a.priority.cmp(&b.priority)
                        } else {
                            Ordering::Equal
                        }
                    })
                    .then_with(|| cmp_created(a, b))
                    .then_with(|| a.id.cmp(&b.id))
            });
        }
    }
}
