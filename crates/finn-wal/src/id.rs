//! Identifiers: [`Lsn`] (the order key), [`Kind`] and [`Op`] (what a record is), and the
//! monotonic ULID generator that survives restarts and clock steps.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Log sequence number: the position of a record in the log and its only ordering key.
///
/// LSN 1 is the first record; [`Lsn::ZERO`] means "before the first record". LSNs strictly
/// increase across restarts and are never reused (except after an explicit
/// [`Wal::truncate_after`](crate::Wal::truncate_after)).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(u64);

impl Lsn {
    /// "Before the first record".
    pub const ZERO: Lsn = Lsn(0);

    /// Wraps a raw number.
    pub const fn new(value: u64) -> Lsn {
        Lsn(value)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The LSN after this one (saturating at `u64::MAX`).
    #[allow(clippy::should_implement_trait)] // `next` reads naturally here; Lsn is not an iterator
    pub fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> u64 {
        lsn.0
    }
}

/// What a record is about. Stored as a `u16` whose codes are fixed forever.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Code 1: agent session state.
    Session,
    /// Code 2: a bead (work item).
    Bead,
    /// Code 3: agent memory.
    Memory,
    /// Code 4: configuration.
    Config,
    /// Code 5: audit trail.
    Audit,
    /// Code 6: learning store.
    Learning,
    /// Code 7: checkpoint bookkeeping.
    Checkpoint,
    /// Code 8: generic state.
    State,
    /// Code `0x8000 | n` for an application-defined `n < 0x8000`.
    User(u16),
}

impl Kind {
    /// The on-disk code, or `None` for `User(n)` with `n >= 0x8000`.
    pub const fn code(self) -> Option<u16> {
        Some(match self {
            Kind::Session => 1,
            Kind::Bead => 2,
            Kind::Memory => 3,
            Kind::Config => 4,
            Kind::Audit => 5,
            Kind::Learning => 6,
            Kind::Checkpoint => 7,
            Kind::State => 8,
            Kind::User(n) => {
                if n >= 0x8000 {
                    return None;
                }
                0x8000 | n
            }
        })
    }

    /// The kind for an on-disk code, or `None` if the code is unassigned.
    pub const fn from_code(code: u16) -> Option<Kind> {
        Some(match code {
            1 => Kind::Session,
            2 => Kind::Bead,
            3 => Kind::Memory,
            4 => Kind::Config,
            5 => Kind::Audit,
            6 => Kind::Learning,
            7 => Kind::Checkpoint,
            8 => Kind::State,
            c if c & 0x8000 != 0 => Kind::User(c & 0x7fff),
            _ => return None,
        })
    }
}

/// Operation of a record: a plain event, or a keyed put / delete (keyed records are what
/// [`Wal::compact`](crate::Wal::compact) folds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// An event; never folded by compaction.
    Event,
    /// Sets the value of `(kind, key)`; a later put or delete of the same key supersedes it.
    Put,
    /// Removes `(kind, key)`; compaction keeps the newest delete as a tombstone.
    Delete,
}

impl Op {
    pub(crate) const fn code(self) -> u8 {
        match self {
            Op::Event => 0,
            Op::Put => 1,
            Op::Delete => 2,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<Op> {
        match code {
            0 => Some(Op::Event),
            1 => Some(Op::Put),
            2 => Some(Op::Delete),
            _ => None,
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Hands out ULIDs that strictly increase, even when the wall clock steps back: the generator
/// is seeded on open with the largest ULID found on disk, and falls back to incrementing the
/// previous ULID whenever the clock-based candidate would not sort after it.
#[derive(Debug, Clone)]
pub(crate) struct UlidGen {
    last: Ulid,
}

impl UlidGen {
    pub(crate) fn new(last: Ulid) -> Self {
        UlidGen { last }
    }

    pub(crate) fn last(&self) -> Ulid {
        self.last
    }

    /// Makes sure later ULIDs sort after `seen` (used for replicated records and on open).
    pub(crate) fn observe(&mut self, seen: Ulid) {
        if seen > self.last {
            self.last = seen;
        }
    }

    /// The next ULID. `None` only if the previous one is the largest ULID there is.
    pub(crate) fn next(&mut self, now_ms: u64) -> Option<Ulid> {
        let candidate = Ulid::from_parts(now_ms, Ulid::new().random());
        let next = if candidate > self.last {
            candidate
        } else {
            self.last.increment()?
        };
        self.last = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip() {
        for kind in [
            Kind::Session,
            Kind::Bead,
            Kind::Memory,
            Kind::Config,
            Kind::Audit,
            Kind::Learning,
            Kind::Checkpoint,
            Kind::State,
            Kind::User(0),
            Kind::User(0x7fff),
        ] {
            let code = kind.code().unwrap();
            assert_eq!(Kind::from_code(code), Some(kind));
        }
        assert_eq!(Kind::User(0x8000).code(), None);
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(9), None);
        assert_eq!(Kind::Bead.code(), Some(2));
        assert_eq!(Kind::User(5).code(), Some(0x8005));
    }

    #[test]
    fn ulids_increase_when_the_clock_steps_back() {
        let mut generator = UlidGen::new(Ulid::nil());
        let a = generator.next(1_000_000).unwrap();
        let b = generator.next(10).unwrap();
        let c = generator.next(10).unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.timestamp_ms(), 1_000_000);
    }
}
