//! Reading and writing `issues.jsonl`: one JSON object per line.
//!
//! A line with no `_type` (or `"_type":"issue"`) is a [`Bead`]. Any other `_type` (memories, and
//! whatever future `bd` versions add) is an opaque record: it is stored and exported verbatim and
//! never dropped. Blank lines are skipped. Reading is streaming: one line in memory at a time.

use std::io::{BufRead, Write};

use serde_json::{Map, Value};

use crate::bead::Bead;

/// One parsed line of an `issues.jsonl` file.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// A work item.
    Issue(Box<Bead>),
    /// A record of another `_type`, kept verbatim under a stable key.
    Other {
        /// Stable identity used to upsert the record (see [`other_record_key`]).
        key: String,
        /// The record as found.
        record: Map<String, Value>,
    },
}

/// A line could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Reading the input failed.
    #[error("read error at line {line}")]
    Io {
        /// 1-based line number.
        line: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The line is not a JSON object of the expected shape.
    #[error("line {line} is not a valid beads record")]
    Json {
        /// 1-based line number.
        line: u64,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl LineError {
    /// 1-based line number of the failure.
    pub fn line(&self) -> u64 {
        match self {
            Self::Io { line, .. } | Self::Json { line, .. } => *line,
        }
    }
    /// The same error with its line number `by` lines further (a piece of a larger input).
    pub(crate) fn shifted(mut self, by: u64) -> Self {
        match &mut self {
            Self::Io { line, .. } | Self::Json { line, .. } => *line += by,
        }
        self
    }
}

/// Parses one line of text.
pub fn parse_line(text: &str) -> Result<Line, serde_json::Error> {
    Ok(match parse_line_unboxed(text)? {
        Parsed::Issue { bead, .. } => Line::Issue(Box::new(bead)),
        Parsed::Other { key, record } => Line::Other { key, record },
    })
}

/// [`Line`] with the bead by value, so the import moves it straight into its state entry.
// Returned once per line and moved at once into the entry's allocation: boxing the bead would
// add the very allocation and copy this type exists to avoid.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed {
    /// A work item.
    Issue {
        /// The bead.
        bead: Bead,
        /// It was deserialized from the text itself (the line has no `_type`), not from a JSON
        /// map built first: the text is then the bead's own JSON.
        direct: bool,
    },
    /// A record of another `_type`.
    Other {
        /// See [`other_record_key`].
        key: String,
        /// The record as found.
        record: Map<String, Value>,
    },
}

/// [`parse_line`] without boxing the bead.
pub(crate) fn parse_line_unboxed(text: &str) -> Result<Parsed, serde_json::Error> {
    // Fast path: issues never carry `_type`, so they deserialize straight into the typed model.
    if !text.contains("\"_type\"") {
        let bead = serde_json::from_str::<Bead>(text)?;
        return Ok(Parsed::Issue { bead, direct: true });
    }
    let map: Map<String, Value> = serde_json::from_str(text)?;
    match map.get("_type").and_then(Value::as_str) {
        None | Some("issue") if map.contains_key("id") => {
            let bead: Bead = serde_json::from_value(Value::Object(map))?;
            Ok(Parsed::Issue {
                bead,
                direct: false,
            })
        }
        _ => Ok(Parsed::Other {
            key: other_record_key(&map),
            record: map,
        }),
    }
}

/// The stable identity of a non-issue record: `<_type>:<id|key|name>` when it has one, otherwise
/// `<_type>:#<fnv1a64 of its canonical JSON>` (identical records then collapse into one).
pub fn other_record_key(map: &Map<String, Value>) -> String {
    let kind = map
        .get("_type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    for field in ["id", "key", "name"] {
        match map.get(field) {
            Some(Value::String(s)) => return format!("{kind}:{s}"),
            Some(Value::Number(n)) => return format!("{kind}:{n}"),
            _ => {}
        }
    }
    let canonical = canonical_json(&Value::Object(map.clone()));
    format!("{kind}:#{:016x}", fnv1a64(canonical.as_bytes()))
}

fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Streams the lines of a reader, skipping blank lines.
pub struct Reader<R> {
    inner: R,
    line: u64,
    buf: String,
}

impl<R: BufRead> Reader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            line: 0,
            buf: String::new(),
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<(u64, Line), LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.inner.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(LineError::Io {
                        line: self.line,
                        source,
                    }));
                }
            }
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            let line = self.line;
            return Some(
                parse_line(text)
                    .map(|l| (line, l))
                    .map_err(|source| LineError::Json { line, source }),
            );
        }
    }
}

/// Writes one record as a JSON line.
pub(crate) fn write_line<W: Write, T: serde::Serialize + ?Sized>(
    out: &mut W,
    value: &T,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_unknown_types_are_kept_verbatim() {
        let text = r#"{"_type":"memory","key":"k1","value":"remember this","extra":[1]}"#;
        match parse_line(text).unwrap() {
            Line::Other { key, record } => {
                assert_eq!(key, "memory:k1");
                assert_eq!(
                    Value::Object(record),
                    serde_json::from_str::<Value>(text).unwrap()
                );
            }
            other => panic!("expected other record, got {other:?}"),
        }
        let anon = r#"{"_type":"note","b":1,"a":2}"#;
        let reordered = r#"{"a":2,"_type":"note","b":1}"#;
        let (Line::Other { key: k1, .. }, Line::Other { key: k2, .. }) =
            (parse_line(anon).unwrap(), parse_line(reordered).unwrap())
        else {
            panic!("expected other records");
        };
        assert_eq!(k1, k2);
    }

    #[test]
    fn explicit_issue_type_tag_is_a_bead() {
        let l = parse_line(r#"{"_type":"issue","id":"bd-1","title":"t"}"#).unwrap();
        let Line::Issue(b) = l else {
            panic!("expected issue")
        };
        assert_eq!(b.extra["_type"], "issue");
    }

    #[test]
    fn reader_reports_line_numbers_and_skips_blank_lines() {
        let input = "{\"id\":\"a\"}\n\n{\"id\":\"b\"}\n{oops\n";
        let items: Vec<_> = Reader::new(input.as_bytes()).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].as_ref().unwrap().0, 3);
        assert_eq!(items[2].as_ref().unwrap_err().line(), 4);
    }
}
