//! The JSON shapes learnings are read from and written to: the anchors' `learnings.json` /
//! `pending-self/{id}.json` and the Loa learnings files.
//!
//! # Round trips
//!
//! An import keeps two things besides the typed [`Learning`]: every field finn does not model
//! (in [`Learning::extra`]) and the modelled fields exactly as read (in [`Learning::origin`]).
//! Export writes a modelled field in its original form as long as its typed value is unchanged
//! (so `"2026-02-02T00:00:00Z"` is not rewritten as `"2026-02-02T00:00:00.000Z"`, and a Loa status
//! of `superseded` survives even though finn calls it `archived`), writes the new value where it
//! changed, and writes the unmodelled fields back as they were. Importing a file and exporting it
//! unchanged therefore yields the same JSON value, key order included.
//!
//! # Loa files
//!
//! Loa learnings have `title`, `trigger`, `solution`, `quality_gates`, `tags`, `status`
//! (`active` / `deprecated` / `superseded` / `pending_review`) and more, but no `pattern`, `source`
//! (in the anchors' sense), `target` or `effectiveness` counters. Their `status` maps to finn's as
//! `active → active`, `deprecated | superseded → archived`, `pending_review → pending`, missing →
//! `active` (the files are curated). finn's own fields that Loa lacks are written under the
//! anchors' names (`pattern`, `target`, `approved_by`, `approved_at`, `effectiveness`) plus
//! `finn_source` and, for `approved` / `rejected`, `finn_status`; the Loa schema allows extra
//! properties on a learning.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::record::{Effectiveness, GateScores, Learning, Origin, Source, Target};
use crate::{LearningId, Status, Timestamp};

/// Which file format a learning is read from or written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// The anchors' `LearningStore` record (`gates`, `status` pending/approved/active/archived).
    Anchor,
    /// A Loa learnings file entry (`quality_gates`, `title`, `tags`, Loa statuses).
    Loa,
}

const ANCHOR_KEYS: &[&str] = &[
    "id",
    "created",
    "source",
    "trigger",
    "pattern",
    "solution",
    "title",
    "tags",
    "gates",
    "target",
    "status",
    "approved_by",
    "approved_at",
    "effectiveness",
];

const LOA_KEYS: &[&str] = &[
    "id",
    "created",
    "finn_source",
    "title",
    "trigger",
    "pattern",
    "solution",
    "quality_gates",
    "tags",
    "status",
    "finn_status",
    "target",
    "approved_by",
    "approved_at",
    "effectiveness",
];

impl Dialect {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Dialect::Anchor => ANCHOR_KEYS,
            Dialect::Loa => LOA_KEYS,
        }
    }

    fn is_modelled(self, key: &str) -> bool {
        self.keys().contains(&key)
    }
}

/// A learning object in a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The entry is not a JSON object.
    #[error("entry {index} is not a JSON object")]
    NotAnObject {
        /// Position in its array (0 for single-learning files).
        index: usize,
    },
    /// The entry has no usable `id`.
    #[error("entry {index} has no valid id")]
    BadId {
        /// Position in its array.
        index: usize,
        /// Why the id was refused.
        #[source]
        source: crate::InvalidId,
    },
    /// A field has the wrong type or value.
    #[error("learning {id}: field {field:?} is invalid: {reason}")]
    Field {
        /// The learning.
        id: LearningId,
        /// The field.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
}

fn field<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    id: &LearningId,
    key: &'static str,
) -> Result<Option<T>, RecordError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v).map(Some).map_err(|e| RecordError::Field {
            id: id.clone(),
            field: key,
            reason: e.to_string(),
        }),
    }
}

fn loa_status(raw: &str) -> Option<Status> {
    match raw {
        "active" => Some(Status::Active),
        "deprecated" | "superseded" => Some(Status::Archived),
        "pending_review" => Some(Status::Pending),
        _ => None,
    }
}

fn loa_status_name(s: Status) -> &'static str {
    match s {
        Status::Active => "active",
        Status::Archived | Status::Rejected => "deprecated",
        Status::Pending | Status::Approved => "pending_review",
    }
}

/// Reads one learning object. `index` only labels errors.
pub fn learning_from_object(
    value: &Value,
    dialect: Dialect,
    index: usize,
) -> Result<Learning, RecordError> {
    let obj = value
        .as_object()
        .ok_or(RecordError::NotAnObject { index })?;
    let raw_id = obj.get("id").and_then(Value::as_str).unwrap_or("");
    let id = LearningId::parse(raw_id).map_err(|source| RecordError::BadId { index, source })?;
    let text = |key: &'static str| -> Result<String, RecordError> {
        Ok(field::<String>(obj, &id, key)?.unwrap_or_default())
    };
    let (source, gates, status) = match dialect {
        Dialect::Anchor => {
            let status = field::<Status>(obj, &id, "status")?.ok_or(RecordError::Field {
                id: id.clone(),
                field: "status",
                reason: "missing".into(),
            })?;
            (
                field::<Source>(obj, &id, "source")?,
                field::<GateScores>(obj, &id, "gates")?,
                status,
            )
        }
        Dialect::Loa => {
            let status = match field::<Status>(obj, &id, "finn_status")? {
                Some(s) => s,
                None => match field::<String>(obj, &id, "status")? {
                    None => Status::Active,
                    Some(s) => loa_status(&s).ok_or_else(|| RecordError::Field {
                        id: id.clone(),
                        field: "status",
                        reason: format!("unknown Loa status {s:?}"),
                    })?,
                },
            };
            (
                field::<Source>(obj, &id, "finn_source")?,
                field::<GateScores>(obj, &id, "quality_gates")?,
                status,
            )
        }
    };
    let gates = match gates {
        Some(g)
            if [
                g.discovery_depth,
                g.reusability,
                g.trigger_clarity,
                g.verification,
            ]
            .iter()
            .any(|&s| s > 10) =>
        {
            return Err(RecordError::Field {
                id,
                field: if dialect == Dialect::Anchor {
                    "gates"
                } else {
                    "quality_gates"
                },
                reason: "scores must be 0-10".into(),
            });
        }
        g => g,
    };
    let extra: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !dialect.is_modelled(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fields: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| dialect.is_modelled(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Learning {
        created: field::<Timestamp>(obj, &id, "created")?,
        source,
        trigger: text("trigger")?,
        pattern: text("pattern")?,
        solution: text("solution")?,
        title: field::<String>(obj, &id, "title")?,
        tags: field::<Vec<String>>(obj, &id, "tags")?.unwrap_or_default(),
        gates,
        target: field::<Target>(obj, &id, "target")?,
        status,
        approved_by: field::<String>(obj, &id, "approved_by")?,
        approved_at: field::<Timestamp>(obj, &id, "approved_at")?,
        effectiveness: field::<Effectiveness>(obj, &id, "effectiveness")?,
        extra,
        origin: Some(Origin {
            dialect,
            fields,
            keys: obj.keys().cloned().collect(),
        }),
        id,
    })
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The modelled fields of `l` in `dialect`, canonical form, absent fields omitted.
fn canonical(l: &Learning, dialect: Dialect) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("id", Value::String(l.id.to_string()));
    if let Some(c) = l.created {
        put("created", to_value(&c));
    }
    match dialect {
        Dialect::Anchor => {
            if let Some(s) = l.source {
                put("source", to_value(&s));
            }
        }
        Dialect::Loa => {
            if let Some(t) = &l.title {
                put("title", Value::String(t.clone()));
            }
            if let Some(s) = l.source {
                put("finn_source", to_value(&s));
            }
        }
    }
    put("trigger", Value::String(l.trigger.clone()));
    if !l.pattern.is_empty() || dialect == Dialect::Anchor {
        put("pattern", Value::String(l.pattern.clone()));
    }
    put("solution", Value::String(l.solution.clone()));
    if dialect == Dialect::Anchor
        && let Some(t) = &l.title
    {
        put("title", Value::String(t.clone()));
    }
    let gates_key = match dialect {
        Dialect::Anchor => "gates",
        Dialect::Loa => "quality_gates",
    };
    if let Some(g) = l.gates {
        put(gates_key, to_value(&g));
    }
    if !l.tags.is_empty() {
        put("tags", to_value(&l.tags));
    }
    if let Some(t) = l.target {
        put("target", to_value(&t));
    }
    match dialect {
        Dialect::Anchor => put("status", to_value(&l.status)),
        Dialect::Loa => {
            put("status", Value::String(loa_status_name(l.status).into()));
            if matches!(l.status, Status::Approved | Status::Rejected) {
                put("finn_status", to_value(&l.status));
            }
        }
    }
    if let Some(a) = &l.approved_by {
        put("approved_by", Value::String(a.clone()));
    }
    if let Some(a) = l.approved_at {
        put("approved_at", to_value(&a));
    }
    if let Some(e) = &l.effectiveness {
        put("effectiveness", to_value(e));
    }
    m
}

/// Writes one learning as a JSON object in `dialect`, preserving the original form of unchanged
/// imported fields and every unmodelled field (see the module docs).
pub fn learning_to_object(l: &Learning, dialect: Dialect) -> Value {
    let now = canonical(l, dialect);
    let origin = l.origin.as_ref().filter(|o| o.dialect == dialect);
    let Some(origin) = origin else {
        let mut out = now;
        for (k, v) in &l.extra {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
        return Value::Object(out);
    };
    // What the original fields mean to finn today; a field whose meaning is unchanged keeps its
    // original text.
    let before = learning_from_object(&Value::Object(origin.fields.clone()), dialect, 0)
        .map(|b| canonical(&b, dialect))
        .unwrap_or_default();
    let mut out = Map::new();
    for (k, v) in &origin.fields {
        if now.get(k) == before.get(k) {
            out.insert(k.clone(), v.clone());
        } else if let Some(c) = now.get(k) {
            out.insert(k.clone(), c.clone());
        }
    }
    for (k, c) in &now {
        if !origin.fields.contains_key(k) && now.get(k) != before.get(k) {
            out.insert(k.clone(), c.clone());
        }
    }
    for (k, v) in &l.extra {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    // Original key order first, then anything new.
    let mut ordered = Map::new();
    for k in &origin.keys {
        if let Some(v) = out.remove(k) {
            ordered.insert(k.clone(), v);
        }
    }
    ordered.extend(out);
    Value::Object(ordered)
}

/// A learnings file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The bytes are not JSON.
    #[error("not valid JSON")]
    NotJson(#[source] serde_json::Error),
    /// The JSON does not have the expected shape.
    #[error("unexpected shape: {expected}")]
    Shape {
        /// What was expected.
        expected: &'static str,
    },
    /// One learning in the file is invalid.
    #[error("invalid learning")]
    Record(#[from] RecordError),
    /// Two learnings in the file share an id.
    #[error("learning id {id} appears more than once")]
    DuplicateId {
        /// The repeated id.
        id: LearningId,
    },
}

/// A Loa learnings file: its top-level fields and its learnings.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaFile {
    /// Every top-level field except `learnings`, in file order; the position of `learnings` is
    /// held by a `null` placeholder under that key.
    pub header: Map<String, Value>,
    /// The learnings, in file order.
    pub learnings: Vec<Learning>,
}

fn parse_learning_array(v: Option<&Value>, dialect: Dialect) -> Result<Vec<Learning>, FileError> {
    let arr = v.and_then(Value::as_array).ok_or(FileError::Shape {
        expected: "a `learnings` array",
    })?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let l = learning_from_object(item, dialect, i)?;
        if !seen.insert(l.id.clone()) {
            return Err(FileError::DuplicateId { id: l.id });
        }
        out.push(l);
    }
    Ok(out)
}

/// Reads a Loa learnings file (`{category, tier, learnings: [...], ...}`).
pub fn parse_loa_file(bytes: &[u8]) -> Result<LoaFile, FileError> {
    let v: Value = serde_json::from_slice(bytes).map_err(FileError::NotJson)?;
    let obj = v.as_object().ok_or(FileError::Shape {
        expected: "a JSON object",
    })?;
    let learnings = parse_learning_array(obj.get("learnings"), Dialect::Loa)?;
    let header = obj
        .iter()
        .map(|(k, v)| {
            let v = if k == "learnings" {
                Value::Null
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    Ok(LoaFile { header, learnings })
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Writes a Loa learnings file.
pub fn write_loa_file(header: &Map<String, Value>, learnings: &[Learning]) -> Vec<u8> {
    let items: Vec<Value> = learnings
        .iter()
        .map(|l| learning_to_object(l, Dialect::Loa))
        .collect();
    let mut obj = Map::new();
    let mut placed = false;
    for (k, v) in header {
        if k == "learnings" {
            obj.insert(k.clone(), Value::Array(items.clone()));
            placed = true;
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    if !placed {
        obj.insert("learnings".into(), Value::Array(items));
    }
    pretty(&Value::Object(obj))
}

/// The `version` the anchors write into `learnings.json`.
pub const ANCHOR_STORE_VERSION: &str = "1.0.0";

/// Reads the anchors' `learnings.json` (`{version, learnings: [...]}`).
pub fn parse_anchor_store(bytes: &[u8]) -> Result<Vec<Learning>, FileError> {
    let v: Value = serde_json::from_slice(bytes).map_err(FileError::NotJson)?;
    let obj = v.as_object().ok_or(FileError::Shape {
        expected: "a JSON object",
    })?;
    if !obj.get("version").is_some_and(Value::is_string) {
        return Err(FileError::Shape {
            expected: "a string `version`",
        });
    }
    parse_learning_array(obj.get("learnings"), Dialect::Anchor)
}

/// Writes the anchors' `learnings.json`.
pub fn write_anchor_store(learnings: &[Learning]) -> Vec<u8> {
    let items: Vec<Value> = learnings
        .iter()
        .map(|l| learning_to_object(l, Dialect::Anchor))
        .collect();
    let mut obj = Map::new();
    obj.insert("version".into(), Value::String(ANCHOR_STORE_VERSION.into()));
    obj.insert("learnings".into(), Value::Array(items));
    pretty(&Value::Object(obj))
}

/// Reads one `pending-self/{id}.json` file.
pub fn parse_anchor_pending(bytes: &[u8]) -> Result<Learning, FileError> {
    let v: Value = serde_json::from_slice(bytes).map_err(FileError::NotJson)?;
    Ok(learning_from_object(&v, Dialect::Anchor, 0)?)
}

/// Writes one `pending-self/{id}.json` file.
pub fn write_anchor_pending(l: &Learning) -> Vec<u8> {
    pretty(&learning_to_object(l, Dialect::Anchor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loa_file_round_trips_with_unknown_fields_and_original_spellings() {
        let input = json!({
            "_loa_marker": {"managed": true, "version": "1.15.1", "hash": "ab"},
            "category": "pattern",
            "tier": "framework",
            "learnings": [
                {"id": "FP-001", "tier": "framework", "type": "pattern", "title": "T",
                 "trigger": "When x", "solution": "Do y", "verified": true, "status": "superseded",
                 "quality_gates": {"discovery_depth": 9, "reusability": 8, "trigger_clarity": 7, "verification": 6},
                 "tags": ["a", "b"], "created": "2026-02-02T00:00:00Z"},
                {"id": "FP-002", "trigger": "t", "solution": "s", "context": "c"}
            ],
            "extraction_date": "2026-02-02"
        });
        let bytes = serde_json::to_vec(&input).unwrap();
        let file = parse_loa_file(&bytes).unwrap();
        assert_eq!(file.learnings[0].status, Status::Archived);
        assert_eq!(file.learnings[1].status, Status::Active);
        assert_eq!(file.learnings[0].gates.unwrap().total(), 30);
        let out: Value =
            serde_json::from_slice(&write_loa_file(&file.header, &file.learnings)).unwrap();
        assert_eq!(out, input);
        // Key order is kept too.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&out), keys(&input));
        assert_eq!(keys(&out["learnings"][0]), keys(&input["learnings"][0]));
    }

    #[test]
    fn changed_fields_are_written_and_unchanged_keep_their_text() {
        let input = json!({"id": "FP-001", "status": "superseded", "created": "2026-02-02T00:00:00Z", "trigger": "t"});
        let mut l = learning_from_object(&input, Dialect::Loa, 0).unwrap();
        l.status = Status::Active;
        l.pattern = "new".into();
        let out = learning_to_object(&l, Dialect::Loa);
        assert_eq!(out["status"], "active");
        assert_eq!(out["created"], "2026-02-02T00:00:00Z");
        assert_eq!(out["pattern"], "new");
        l.status = Status::Approved;
        let out = learning_to_object(&l, Dialect::Loa);
        assert_eq!(out["finn_status"], "approved");
        let back = learning_from_object(&out, Dialect::Loa, 0).unwrap();
        assert_eq!(back.status, Status::Approved);
    }

    #[test]
    fn anchor_store_round_trips() {
        let input = json!({"version": "1.0.0", "learnings": [{
            "id": "3f2c1a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f", "created": "2026-01-01T10:00:00.000Z",
            "source": "error-cycle", "trigger": "tool:bash:error", "pattern": "p", "solution": "s",
            "gates": {"discovery_depth": 5, "reusability": 5, "trigger_clarity": 5, "verification": 5},
            "target": "openclaw", "status": "active",
            "effectiveness": {"applications": 3, "successes": 2, "failures": 1, "last_applied": "2026-01-02T00:00:00.000Z"}
        }]});
        let ls = parse_anchor_store(&serde_json::to_vec(&input).unwrap()).unwrap();
        assert_eq!(ls[0].source, Some(Source::ErrorCycle));
        assert_eq!(ls[0].effectiveness.unwrap().successes, 2);
        let out: Value = serde_json::from_slice(&write_anchor_store(&ls)).unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn bad_records_are_typed_errors() {
        let e = parse_loa_file(br#"{"learnings": [{"id": "x", "status": "bogus"}]}"#).unwrap_err();
        assert!(matches!(
            e,
            FileError::Record(RecordError::Field {
                field: "status",
                ..
            })
        ));
        let e = parse_loa_file(br#"{"learnings": [{"id": "a/b"}]}"#).unwrap_err();
        assert!(matches!(
            e,
            FileError::Record(RecordError::BadId { index: 0, .. })
        ));
        let e = parse_loa_file(br#"{"learnings": [{"id": "a"}, {"id": "a"}]}"#).unwrap_err();
        assert!(matches!(e, FileError::DuplicateId { .. }));
        let e = parse_loa_file(
            br#"{"learnings": [{"id": "a", "quality_gates": {"discovery_depth": 11}}]}"#,
        )
        .unwrap_err();
        assert!(matches!(e, FileError::Record(RecordError::Field { .. })));
        assert!(matches!(
            parse_anchor_store(b"{not json"),
            Err(FileError::NotJson(_))
        ));
        assert!(matches!(
            parse_anchor_store(br#"{"learnings": []}"#),
            Err(FileError::Shape { .. })
        ));
    }
}

/// An imported file's layout, kept so the file can be exported again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// The name (the file name it was imported from, e.g. `patterns.json`).
    pub name: String,
    /// Its format.
    pub dialect: Dialect,
    /// Top-level fields other than the learnings (see [`LoaFile::header`]).
    pub header: Map<String, Value>,
    /// Its learnings, in file order.
    pub ids: Vec<LearningId>,
}
