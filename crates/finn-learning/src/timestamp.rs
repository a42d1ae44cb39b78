//! Wall-clock instants stored as milliseconds since the Unix epoch, written as RFC 3339.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision.
///
/// Serialised as an RFC 3339 string with milliseconds and `Z` (`2026-02-02T00:00:00.000Z`), the
/// shape the anchors' `new Date().toISOString()` produces. Any RFC 3339 string is accepted on read;
/// an import that is exported unchanged keeps its original text (see the crate docs on round trips).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 date-time.
    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.timestamp_millis()))
    }

    /// The UTC calendar date, `YYYY-MM-DD` (names trajectory files).
    pub fn date(self) -> String {
        self.datetime().format("%Y-%m-%d").to_string()
    }

    fn datetime(self) -> DateTime<Utc> {
        // Out-of-range instants cannot come from `parse` or `now`; clamp instead of panicking.
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.datetime().to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 date-time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_to_iso_string_and_parses_back() {
        let t = Timestamp::parse("2026-02-02T00:00:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-02-02T00:00:00.000Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        assert_eq!(t.date(), "2026-02-02");
        assert_eq!(Timestamp::parse("yesterday"), None);
    }
}
