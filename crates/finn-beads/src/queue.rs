//! The work queue: leased claims, heartbeats, release, stale-lease expiry and session handoffs.
//!
//! A claim is one transaction: it picks the best ready bead and, in the same WAL record, marks it
//! `in_progress` with the worker as assignee and a lease. Ready beads are `open`, so a claimed bead
//! is never offered again until its lease expires or it is released: two workers never hold the
//! same bead (the anchors' check-then-act protocol over several CLI calls could not promise this).
//! Expired leases are reclaimed at the start of every claim, so stale sessions cannot pile up even
//! if nobody schedules [`Store::expire_stale`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bead::{Bead, Status};
use crate::error::Error;
use crate::event::{Change, Lease};
use crate::ready::ReadyQuery;
use crate::store::Store;
use crate::timestamp::Timestamp;
use crate::validate::ValidationError;

/// A worker's claim on a bead, returned by [`Store::claim`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The claimed bead.
    pub bead_id: String,
    /// Unique id of this claim.
    pub claim_id: String,
    /// The worker.
    pub worker: String,
    /// Lease deadline.
    pub expires_at: Timestamp,
}

/// How a worker finished with a bead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Done: the bead is closed (reason "done").
    Done,
    /// Blocked: the bead gets status `blocked` and a "Blocked: reason" comment.
    Blocked {
        /// Why.
        reason: String,
    },
}

/// A lease that ran out and the bead that went back to the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expired {
    /// The bead.
    pub bead_id: String,
    /// The expired claim.
    pub claim_id: String,
    /// Its worker.
    pub worker: String,
    /// When it expired.
    pub expired_at: Timestamp,
}

/// A session handoff note (the anchors' `--- SESSION HANDOFF ---` comment, typed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// Session that wrote it (also used in the `handoff:<session>` label).
    pub session_id: String,
    /// When it was written (set by [`Store::record_handoff`] when `None`).
    pub timestamp: Option<Timestamp>,
    /// Files the session changed.
    pub files_changed: Vec<String>,
    /// Where the work stands.
    pub current_state: String,
    /// What to do next.
    pub next_steps: Vec<String>,
    /// Tokens the session used.
    pub tokens_used: u64,
}

const HANDOFF_BEGIN: &str = "--- SESSION HANDOFF ---";
const HANDOFF_END: &str = "--- END HANDOFF ---";

impl Handoff {
    /// Renders the comment text (one field per line; multi-line values are flattened to one line
    /// so the note always parses back).
    pub fn to_text(&self) -> String {
        let flat = |s: &str| s.replace(['\r', '\n'], " ");
        let mut t = String::new();
        t.push_str(HANDOFF_BEGIN);
        t.push('\n');
        t.push_str(&format!("Session: {}\n", flat(&self.session_id)));
        if let Some(ts) = &self.timestamp {
            t.push_str(&format!("Timestamp: {ts}\n"));
        }
        t.push_str(&format!("Tokens used: {}\n", self.tokens_used));
        if self.files_changed.is_empty() {
            t.push_str("Files changed: (none)\n");
        } else {
            t.push_str("Files changed:\n");
            for f in &self.files_changed {
                t.push_str(&format!("  - {}\n", flat(f)));
            }
        }
        t.push_str(&format!("Current state: {}\n", flat(&self.current_state)));
        t.push_str("Next steps:\n");
        for (i, s) in self.next_steps.iter().enumerate() {
            t.push_str(&format!("  {}. {}\n", i + 1, flat(s)));
        }
        t.push_str(HANDOFF_END);
        t
    }

    /// Parses a handoff block out of a comment or description; `None` if there is none.
    pub fn parse(text: &str) -> Option<Handoff> {
        let start = text.rfind(HANDOFF_BEGIN)?;
        let body = &text[start + HANDOFF_BEGIN.len()..];
        let body = &body[..body.find(HANDOFF_END)?];
        let mut h = Handoff {
            session_id: String::new(),
            timestamp: None,
            files_changed: Vec::new(),
            current_state: String::new(),
            next_steps: Vec::new(),
            tokens_used: 0,
        };
        #[derive(PartialEq)]
        enum Section {
            None,
            Files,
            Steps,
        }
        let mut section = Section::None;
        for line in body.lines() {
            if let Some(v) = line.strip_prefix("Session: ") {
                h.session_id = v.trim().to_owned();
                section = Section::None;
            } else if let Some(v) = line.strip_prefix("Timestamp: ") {
                h.timestamp = Timestamp::parse(v.trim()).ok();
                section = Section::None;
            } else if let Some(v) = line.strip_prefix("Tokens used: ") {
                h.tokens_used = v.trim().parse().unwrap_or(0);
                section = Section::None;
            } else if line.starts_with("Files changed:") {
                section = Section::Files;
            } else if let Some(v) = line.strip_prefix("Current state: ") {
                h.current_state = v.to_owned();
                section = Section::None;
            } else if line.starts_with("Next steps:") {
                section = Section::Steps;
            } else if section == Section::Files {
                if let Some(f) = line.trim_start().strip_prefix("- ") {
                    h.files_changed.push(f.to_owned());
                }
            } else if section == Section::Steps {
                let t = line.trim_start();
                if let Some((n, s)) = t.split_once(". ")
                    && n.chars().all(|c| c.is_ascii_digit())
                    && !n.is_empty()
                {
                    h.next_steps.push(s.to_owned());
                }
            }
        }
        (!h.session_id.is_empty()).then_some(h)
    }
}

fn add_ms(t: &Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_system_time(t.to_system_time() + d)
}

impl Store {
    /// Atomically claims the best ready bead matching `query` for `worker` with a lease of
    /// `lease`: status `in_progress`, assignee `worker`, a "Claimed by session" comment. Expired
    /// leases are reclaimed first. Returns `None` when nothing is ready.
    pub fn claim(
        &self,
        worker: &str,
        lease: Duration,
        query: &ReadyQuery,
    ) -> Result<Option<Claim>, Error> {
        self.options().limits.check_short("worker", worker)?;
        if worker.is_empty() {
            return Err(ValidationError::Empty { field: "worker" }.into());
        }
        self.transact(|tx| {
            let now = tx.now().clone();
            expire_in(tx, &now)?;
            // Expiries staged above are not in the committed pool yet; they become claimable on
            // the next call, which keeps this pick a pure function of committed state.
            let pick = tx
                .state()
                .ready(query, &now)
                .into_iter()
                .find(|b| tx.get(&b.id).is_some_and(|s| s.status == Status::Open))
                .map(|b| b.id.clone());
            let Some(id) = pick else { return Ok(None) };
            let claim_id = ulid::Ulid::new().to_string();
            let expires_at = add_ms(&now, lease);
            let l = Lease {
                claim_id: claim_id.clone(),
                worker: worker.to_owned(),
                claimed_at: now.clone(),
                expires_at: expires_at.clone(),
                prev_assignee: tx.get(&id).and_then(|b| b.assignee.clone()),
            };
            let text = format!("Claimed by session {claim_id} at {now}");
            tx.comment(&id, Some(worker), &text)?;
            let change = Change::Claim {
                claim_id: claim_id.clone(),
                worker: worker.to_owned(),
            };
            tx.modify_with_lease(&id, change, |b, lease, _| {
                b.status = Status::InProgress;
                b.assignee = Some(l.worker.clone());
                *lease = Some(l);
                Ok(())
            })?;
            Ok(Some(Claim {
                bead_id: id,
                claim_id,
                worker: worker.to_owned(),
                expires_at,
            }))
        })
    }

    /// Extends a held lease to `now + lease`. Fails with [`Error::LeaseLost`] if the claim is no
    /// longer held.
    pub fn heartbeat(&self, claim: &Claim, lease: Duration) -> Result<Claim, Error> {
        self.transact(|tx| {
            check_held(tx.lease(&claim.bead_id), claim)?;
            let expires_at = add_ms(tx.now(), lease);
            let change = Change::Heartbeat {
                claim_id: claim.claim_id.clone(),
            };
            let new_expiry = expires_at.clone();
            tx.modify_with_lease(&claim.bead_id, change, |_, l, _| {
                if let Some(l) = l {
                    l.expires_at = new_expiry;
                }
                Ok(())
            })?;
            Ok(Claim {
                expires_at,
                ..claim.clone()
            })
        })
    }

    /// Releases a held bead: [`Outcome::Done`] closes it, [`Outcome::Blocked`] marks it blocked.
    pub fn release(&self, claim: &Claim, outcome: Outcome) -> Result<(), Error> {
        self.transact(|tx| {
            check_held(tx.lease(&claim.bead_id), claim)?;
            let id = claim.bead_id.as_str();
            let now = tx.now().clone();
            match &outcome {
                Outcome::Done => {
                    tx.comment(id, Some(&claim.worker), &format!("Completed at {now}"))?;
                    tx.close(id, Some("done"))?;
                }
                Outcome::Blocked { reason } => {
                    tx.limits().check_short("reason", reason)?;
                    tx.comment(id, Some(&claim.worker), &format!("Blocked: {reason}"))?;
                    tx.set_status(id, Status::Blocked)?;
                }
            }
            let change = Change::Release {
                claim_id: claim.claim_id.clone(),
                outcome: match outcome {
                    Outcome::Done => "done".to_owned(),
                    Outcome::Blocked { .. } => "blocked".to_owned(),
                },
            };
            tx.modify_with_lease(id, change, |_, l, _| {
                *l = None;
                Ok(())
            })
            .map_err(Error::from)
        })
    }

    /// Sends every bead whose lease ran out back to the queue (status `open`, previous assignee
    /// restored, a `--- STALE SESSION DETECTED ---` comment). [`Store::claim`] does this too.
    pub fn expire_stale(&self) -> Result<Vec<Expired>, Error> {
        self.transact(|tx| {
            let now = tx.now().clone();
            expire_in(tx, &now)
        })
    }

    /// Records a handoff note on a bead: a framed comment plus the label `handoff:<session>`.
    pub fn record_handoff(&self, bead_id: &str, handoff: &Handoff) -> Result<(), Error> {
        self.options().limits.check_id(&handoff.session_id)?;
        self.transact(|tx| {
            let mut h = handoff.clone();
            h.timestamp.get_or_insert_with(|| tx.now().clone());
            tx.comment(bead_id, Some(&h.session_id), &h.to_text())?;
            let label = format!("handoff:{}", h.session_id);
            tx.add_labels(bead_id, &[&label])?;
            let change = Change::Handoff {
                session_id: h.session_id.clone(),
            };
            tx.modify_with_lease(bead_id, change, |_, _, _| Ok(()))?;
            Ok(())
        })
    }

    /// The most recent handoff note of a bead (from its comments, else its description).
    pub fn previous_handoff(&self, bead_id: &str) -> Option<Handoff> {
        self.read(|s| s.get(bead_id).and_then(previous_handoff))
    }
}

/// The most recent handoff note in a bead's comments, falling back to its description.
pub fn previous_handoff(b: &Bead) -> Option<Handoff> {
    b.comments
        .iter()
        .rev()
        .find_map(|c| Handoff::parse(&c.text))
        .or_else(|| b.description.as_deref().and_then(Handoff::parse))
}

fn check_held(lease: Option<&Lease>, claim: &Claim) -> Result<(), Error> {
    match lease {
        Some(l) if l.claim_id == claim.claim_id => Ok(()),
        _ => Err(Error::LeaseLost {
            id: claim.bead_id.clone(),
            claim_id: claim.claim_id.clone(),
        }),
    }
}

fn expire_in(tx: &mut crate::tx::Tx<'_>, now: &Timestamp) -> Result<Vec<Expired>, Error> {
    let mut stale: Vec<(String, Lease)> = tx
        .state()
        .entries()
        .filter_map(|e| {
            e.lease
                .as_ref()
                .filter(|l| !l.expires_at.is_after(now))
                .map(|l| (e.bead.id.clone(), l.clone()))
        })
        .collect();
    stale.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(stale.len());
    for (id, lease) in stale {
        let text = format!(
            "--- STALE SESSION DETECTED ---\nSession: {}\nWorker: {}\nClaimed at: {}\nLease expired at: {}\nRecovered at: {now}\n--- END STALE SESSION ---",
            lease.claim_id, lease.worker, lease.claimed_at, lease.expires_at
        );
        tx.comment(&id, None, &text)?;
        let change = Change::Expire {
            claim_id: lease.claim_id.clone(),
        };
        let prev = lease.prev_assignee.clone();
        tx.modify_with_lease(&id, change, |b, l, _| {
            if b.status == Status::InProgress {
                b.status = Status::Open;
            }
            b.assignee = prev;
            *l = None;
            Ok(())
        })?;
        out.push(Expired {
            bead_id: id,
            claim_id: lease.claim_id,
            worker: lease.worker,
            expired_at: lease.expires_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_text_round_trips() {
        let h = Handoff {
            session_id: "sess-1".into(),
            timestamp: Some(Timestamp::parse("2026-01-01T00:00:00Z").unwrap()),
            files_changed: vec!["src/a.rs".into(), "b c.md".into()],
            current_state: "half done".into(),
            next_steps: vec!["write tests".into(), "ship it. really".into()],
            tokens_used: 1234,
        };
        assert_eq!(Handoff::parse(&h.to_text()), Some(h.clone()));
        let none = Handoff {
            files_changed: vec![],
            next_steps: vec![],
            ..h
        };
        let text = none.to_text();
        assert!(text.contains("Files changed: (none)"));
        assert_eq!(Handoff::parse(&text), Some(none));
        assert_eq!(Handoff::parse("no handoff here"), None);
    }
}
