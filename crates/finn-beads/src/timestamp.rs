//! RFC 3339 timestamps that keep the exact text they were read from.
//!
//! Beads files are written by Go (`time.RFC3339Nano`, trailing zeros trimmed) and by Rust (`chrono`,
//! fixed nanosecond or microsecond precision). Re-formatting would change bytes that other tools diff
//! and hash, so a [`Timestamp`] stores the original string beside the parsed instant and serializes the
//! string back unchanged.

use std::cmp::Ordering;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time as found in a beads file: the original text plus the instant it denotes.
///
/// Ordering and comparison use the instant first and the text second, so two spellings of the same
/// instant (`...Z` and `...+00:00`) order next to each other but are not equal (export keeps both).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Shared, not boxed: the ready pool keys and copies of beads clone timestamps often, and
    /// a clone is then a reference count instead of an allocation.
    raw: std::sync::Arc<str>,
    secs: i64,
    nanos: u32,
}

/// The text could not be read as an RFC 3339 timestamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {text:?}")]
pub struct TimestampError {
    /// The rejected text.
    pub text: String,
}

impl Timestamp {
    /// Parses RFC 3339 text (any fraction precision, any offset) and keeps the text verbatim.
    ///
    /// ```
    /// let t = finn_beads::Timestamp::parse("2026-02-26T04:23:04.550522163Z")?;
    /// assert_eq!(t.as_str(), "2026-02-26T04:23:04.550522163Z");
    /// # Ok::<(), finn_beads::TimestampError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let parsed = DateTime::parse_from_rfc3339(text).map_err(|_| TimestampError {
            text: text.to_owned(),
        })?;
        Ok(Self {
            raw: text.into(),
            secs: parsed.timestamp(),
            nanos: parsed.timestamp_subsec_nanos(),
        })
    }

    /// The instant `t`, written in UTC with nanosecond precision (`2026-02-26T04:23:04.550522163Z`),
    /// the form `bd` itself writes.
    pub fn from_system_time(t: SystemTime) -> Self {
        let dt: DateTime<Utc> = t.into();
        Self {
            raw: dt.to_rfc3339_opts(SecondsFormat::Nanos, true).into(),
            secs: dt.timestamp(),
            nanos: dt.timestamp_subsec_nanos(),
        }
    }

    /// The current time (see [`Timestamp::from_system_time`]).
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch (negative before 1970, saturating far outside).
    pub fn unix_millis(&self) -> i64 {
        self.secs
            .saturating_mul(1000)
            .saturating_add(i64::from(self.nanos / 1_000_000))
    }

    /// The instant as a [`SystemTime`] (clamped to the epoch for earlier instants).
    pub fn to_system_time(&self) -> SystemTime {
        match u64::try_from(self.secs) {
            Ok(secs) => UNIX_EPOCH + Duration::new(secs, self.nanos),
            Err(_) => UNIX_EPOCH,
        }
    }

    /// The exact text this timestamp was read from (or written as).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Compares the denoted instants only, ignoring spelling.
    pub fn cmp_instant(&self, other: &Self) -> Ordering {
        (self.secs, self.nanos).cmp(&(other.secs, other.nanos))
    }

    /// True when `self` is strictly later than `other`.
    pub fn is_after(&self, other: &Self) -> bool {
        self.cmp_instant(other) == Ordering::Greater
    }

    /// The smallest timestamp written by finn that is strictly later than `self`.
    pub(crate) fn next_after(&self) -> Self {
        let (secs, nanos) = if self.nanos == 999_999_999 {
            (self.secs.saturating_add(1), 0)
        } else {
            (self.secs, self.nanos + 1)
        };
        let dt = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self {
            raw: dt.to_rfc3339_opts(SecondsFormat::Nanos, true).into(),
            secs: dt.timestamp(),
            nanos: dt.timestamp_subsec_nanos(),
        }
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_instant(other)
            .then_with(|| self.raw.cmp(&other.raw))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_original_precision_and_offset() {
        for text in [
            "2026-02-26T04:23:04.550522163Z",
            "2026-06-09T16:41:50.242300Z",
            "2026-06-09T16:41:50Z",
            "2026-06-09T09:41:50.5-07:00",
        ] {
            let t = Timestamp::parse(text).unwrap();
            assert_eq!(t.as_str(), text);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn orders_by_instant_across_spellings() {
        let a = Timestamp::parse("2026-06-09T16:41:50.5Z").unwrap();
        let b = Timestamp::parse("2026-06-09T09:41:50.6-07:00").unwrap();
        assert!(b.is_after(&a));
        let c = Timestamp::parse("2026-06-09T16:41:50.500Z").unwrap();
        assert_eq!(a.cmp_instant(&c), Ordering::Equal);
        assert_ne!(a, c);
    }

    #[test]
    fn rejects_garbage_and_next_after_is_strictly_later() {
        assert!(Timestamp::parse("yesterday").is_err());
        let t = Timestamp::parse("2026-06-09T16:41:50.999999999Z").unwrap();
        let n = t.next_after();
        assert!(n.is_after(&t));
        assert_eq!(n.as_str(), "2026-06-09T16:41:51.000000000Z");
    }
}
