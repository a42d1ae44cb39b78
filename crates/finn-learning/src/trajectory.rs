//! Trajectories (JSONL logs of an agent's messages and tool calls) and the candidates the compound
//! cycle extracts from them.
//!
//! An entry is one JSON object per line, as finn's anchors write it:
//! `{"timestamp", "sessionId", "type": "message"|"tool_start"|"tool_end", "tool"?, "role"?,
//! "text"?, "args"?, "result"?, "isError"?}`. Files are named `{YYYY-MM-DD}.jsonl` by the UTC
//! date of their entries ([`TrajectoryLog`]).
//!
//! Two kinds of candidate are extracted:
//! - **error recoveries** (the anchors' rule): a `tool_end` with `isError` followed, within the
//!   next 4 entries of the same session, by a successful `tool_end` of the same tool;
//! - **repeated patterns**: error recoveries of the same tool with the same error signature seen in
//!   at least two sessions ([`extract_repeated`]).
//!
//! Unlike the anchors, every file of a directory is read (not only today's), paths are explicit
//! (never relative to the working directory), and malformed lines are reported with their line
//! number instead of aborting or vanishing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Timestamp;
use crate::record::{NewLearning, Source, Target};

/// The type of a trajectory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A chat message.
    Message,
    /// A tool call started.
    ToolStart,
    /// A tool call ended (successfully or with `isError`).
    ToolEnd,
}

/// One line of a trajectory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrajectoryEntry {
    /// When.
    pub timestamp: Timestamp,
    /// The agent session.
    pub session_id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// The tool (tool entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The speaker (messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Message text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Tool arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Tool result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Whether the tool call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

impl TrajectoryEntry {
    /// A `tool_end` entry.
    pub fn tool_end(
        session: &str,
        tool: &str,
        args: Value,
        result: impl Into<String>,
        is_error: bool,
    ) -> Self {
        TrajectoryEntry {
            timestamp: Timestamp::now(),
            session_id: session.into(),
            kind: EntryKind::ToolEnd,
            tool: Some(tool.into()),
            role: None,
            text: None,
            args: Some(args),
            result: Some(Value::String(result.into())),
            is_error: Some(is_error),
        }
    }

    /// A `tool_start` entry.
    pub fn tool_start(session: &str, tool: &str, args: Value) -> Self {
        TrajectoryEntry {
            timestamp: Timestamp::now(),
            session_id: session.into(),
            kind: EntryKind::ToolStart,
            tool: Some(tool.into()),
            role: None,
            text: None,
            args: Some(args),
            result: None,
            is_error: None,
        }
    }

    /// A `message` entry.
    pub fn message(session: &str, role: &str, text: impl Into<String>) -> Self {
        TrajectoryEntry {
            timestamp: Timestamp::now(),
            session_id: session.into(),
            kind: EntryKind::Message,
            tool: None,
            role: Some(role.into()),
            text: Some(text.into()),
            args: None,
            result: None,
            is_error: None,
        }
    }

    fn is_tool_end(&self, tool: &str, error: bool) -> bool {
        self.kind == EntryKind::ToolEnd
            && self.tool.as_deref() == Some(tool)
            && self.is_error.unwrap_or(false) == error
    }

    fn result_text(&self) -> Option<String> {
        match self.result.as_ref()? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// A trajectory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrajectoryError {
    /// An I/O error on a trajectory file.
    #[error("I/O error on trajectory file {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A line that is not a valid entry. Reported, never silently dropped.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: not a trajectory entry")]
pub struct BadLine {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Why it failed to parse.
    #[source]
    pub source: serde_json::Error,
}

/// Entries read from trajectory files, plus the lines that could not be parsed.
#[derive(Debug, Default)]
pub struct Trajectory {
    /// Entries in file order (files in name order, i.e. by date).
    pub entries: Vec<TrajectoryEntry>,
    /// Unparseable lines.
    pub bad_lines: Vec<BadLine>,
}

impl Trajectory {
    /// Reads one JSONL file. A torn last line (a writer killed mid-append) shows up in
    /// `bad_lines` like any other damaged line.
    pub fn read_file(path: &Path) -> Result<Self, TrajectoryError> {
        let mut t = Trajectory::default();
        t.append_file(path)?;
        Ok(t)
    }

    /// Reads every `*.jsonl` file of `dir`, in file-name order.
    pub fn read_dir(dir: &Path) -> Result<Self, TrajectoryError> {
        let io = |source| TrajectoryError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        let mut t = Trajectory::default();
        for f in files {
            t.append_file(&f)?;
        }
        Ok(t)
    }

    fn append_file(&mut self, path: &Path) -> Result<(), TrajectoryError> {
        let io = |source| TrajectoryError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<TrajectoryEntry>(&line) {
                Ok(e) => self.entries.push(e),
                Err(source) => self.bad_lines.push(BadLine {
                    path: path.to_owned(),
                    line: i + 1,
                    source,
                }),
            }
        }
        Ok(())
    }
}

/// Appends entries to `{dir}/{YYYY-MM-DD}.jsonl` (UTC date of each entry).
///
/// Each append is one `write` of a whole line followed by `fdatasync`, so a crash leaves at most a
/// torn final line, which [`Trajectory`] reports and skips. A newly created file's directory entry
/// is fsynced too.
#[derive(Clone, Debug)]
pub struct TrajectoryLog {
    dir: PathBuf,
}

impl TrajectoryLog {
    /// A log writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TrajectoryLog { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an entry with this timestamp goes to.
    pub fn file_for(&self, at: Timestamp) -> PathBuf {
        self.dir.join(format!("{}.jsonl", at.date()))
    }

    /// Appends one entry durably.
    pub fn append(&self, entry: &TrajectoryEntry) -> Result<(), TrajectoryError> {
        let path = self.file_for(entry.timestamp);
        let io = |source| TrajectoryError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|source| TrajectoryError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let created = !path.exists();
        let mut line = serde_json::to_vec(entry).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)?;
        if created {
            finn_wal::fs::sync_dir(&self.dir).map_err(|source| TrajectoryError::Io {
                path: self.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Confidence the anchors give an error-recovery candidate.
pub const ERROR_RECOVERY_CONFIDENCE: f64 = 0.6;
/// How many following entries are searched for the successful retry.
pub const RETRY_WINDOW: usize = 4;
const SNIPPET: usize = 200;

/// A candidate learning extracted from a trajectory.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// `tool:<tool>:error` for a single recovery, `pattern:<tool>:<signature>` for a repeated one.
    pub trigger: String,
    /// The tool.
    pub tool: String,
    /// The error text (first 200 characters of the failed result, or "error occurred").
    pub context: String,
    /// `Retry with: <args>` (first 200 characters) or "adjusted args".
    pub resolution: String,
    /// 0–1.
    pub confidence: f64,
    /// Sessions it was seen in, sorted.
    pub sessions: Vec<String>,
    /// How many times it was seen.
    pub occurrences: u32,
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Error recoveries of one session (or every session when `session` is `None`), in order.
pub fn extract_error_recoveries(
    entries: &[TrajectoryEntry],
    session: Option<&str>,
) -> Vec<Candidate> {
    let mut by_session: BTreeMap<&str, Vec<&TrajectoryEntry>> = BTreeMap::new();
    for e in entries {
        if session.is_none_or(|s| s == e.session_id) {
            by_session.entry(&e.session_id).or_default().push(e);
        }
    }
    let mut out = Vec::new();
    for (sid, list) in by_session {
        for (i, e) in list.iter().enumerate() {
            let Some(tool) = e.tool.as_deref() else {
                continue;
            };
            if !e.is_tool_end(tool, true) {
                continue;
            }
            let window = list.iter().skip(i + 1).take(RETRY_WINDOW);
            let Some(success) = window.into_iter().find(|n| n.is_tool_end(tool, false)) else {
                continue;
            };
            let context = e
                .result_text()
                .filter(|r| !r.is_empty())
                .map_or_else(|| "error occurred".to_owned(), |r| truncate(&r, SNIPPET));
            let resolution = match &success.args {
                Some(a) if !a.is_null() => {
                    format!("Retry with: {}", truncate(&a.to_string(), SNIPPET))
                }
                _ => "adjusted args".to_owned(),
            };
            out.push(Candidate {
                trigger: format!("tool:{tool}:error"),
                tool: tool.to_owned(),
                context,
                resolution,
                confidence: ERROR_RECOVERY_CONFIDENCE,
                sessions: vec![sid.to_owned()],
                occurrences: 1,
            });
        }
    }
    out
}

/// The error signature used to recognise the same failure across sessions: the first eight
/// retrieval terms of the error text with digits removed (so line numbers, ports and ids do not
/// split a group).
pub fn error_signature(context: &str) -> String {
    crate::words::terms(context)
        .into_iter()
        .map(|t| {
            t.chars()
                .filter(|c| !c.is_ascii_digit())
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-")
}

/// Recoveries of the same tool and error signature seen in at least `min_sessions` sessions,
/// most widespread first. Confidence is `min(1, sessions / 5)`, the frequency rule of the
/// anchors' pattern miner.
pub fn extract_repeated(recoveries: &[Candidate], min_sessions: usize) -> Vec<Candidate> {
    let mut groups: BTreeMap<(String, String), Vec<&Candidate>> = BTreeMap::new();
    for c in recoveries {
        groups
            .entry((c.tool.clone(), error_signature(&c.context)))
            .or_default()
            .push(c);
    }
    let mut out: Vec<Candidate> = groups
        .into_iter()
        .filter_map(|((tool, sig), group)| {
            let sessions: BTreeSet<&str> = group
                .iter()
                .flat_map(|c| c.sessions.iter().map(String::as_str))
                .collect();
            if sessions.len() < min_sessions.max(2) {
                return None;
            }
            // The most frequent resolution; ties go to the first seen.
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for c in &group {
                match counts.iter_mut().find(|(r, _)| *r == c.resolution) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((&c.resolution, 1)),
                }
            }
            let resolution = counts
                .iter()
                .fold(
                    ("", 0),
                    |best, &(r, n)| if n > best.1 { (r, n) } else { best },
                )
                .0
                .to_owned();
            let n_sessions = sessions.len();
            Some(Candidate {
                trigger: if sig.is_empty() {
                    format!("pattern:{tool}")
                } else {
                    format!("pattern:{tool}:{sig}")
                },
                tool,
                context: group[0].context.clone(),
                resolution,
                confidence: (n_sessions as f64 / 5.0).min(1.0),
                sessions: sessions.into_iter().map(str::to_owned).collect(),
                occurrences: u32::try_from(group.len()).unwrap_or(u32::MAX),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.sessions
            .len()
            .cmp(&a.sessions.len())
            .then_with(|| a.trigger.cmp(&b.trigger))
    });
    out
}

/// The anchors' four candidate checks (`evaluate`) and the resulting quality score.
#[derive(Clone, Debug, PartialEq)]
pub struct Screening {
    /// Trigger, context and resolution are all non-empty.
    pub complete: bool,
    /// The trigger does not mention "session" and confidence > 0.4.
    pub not_session_specific: bool,
    /// The trigger is `tool:…` or `pattern:…`.
    pub well_formed_trigger: bool,
    /// Confidence ≥ 0.5.
    pub confident: bool,
    /// Checks passed / 4.
    pub quality_score: f64,
    /// At least 3 checks passed.
    pub accepted: bool,
}

/// Runs the anchors' candidate checks.
pub fn screen(c: &Candidate) -> Screening {
    let complete = !c.trigger.is_empty() && !c.context.is_empty() && !c.resolution.is_empty();
    let not_session_specific =
        !crate::words::WordList::new(&c.trigger).contains("session") && c.confidence > 0.4;
    let well_formed_trigger = ["tool:", "pattern:"].iter().any(|p| {
        c.trigger
            .strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty())
    });
    let confident = c.confidence >= 0.5;
    let passed = [
        complete,
        not_session_specific,
        well_formed_trigger,
        confident,
    ]
    .iter()
    .filter(|b| **b)
    .count();
    Screening {
        complete,
        not_session_specific,
        well_formed_trigger,
        confident,
        quality_score: passed as f64 / 4.0,
        accepted: passed >= 3,
    }
}

impl Candidate {
    /// The learning this candidate proposes, in prose the quality gates can judge. The text is
    /// built only from what the trajectory shows (tool, error, retry arguments, sessions).
    pub fn to_new_learning(&self, target: Target) -> NewLearning {
        let error = self.context.trim();
        let sessions = self.sessions.len();
        let trigger = format!(
            "When the {} tool fails with an error and a retry is possible: {}",
            self.tool,
            truncate(error, 120)
        );
        let pattern = if sessions > 1 {
            format!(
                "The {} tool failed with this error in {} sessions ({} occurrences) and each time a \
                 retry with different arguments succeeded within {} steps. Error: {}",
                self.tool, sessions, self.occurrences, RETRY_WINDOW, error
            )
        } else {
            format!(
                "The {} tool failed with this error and a retry with different arguments \
                 succeeded within {} steps. Error: {}",
                self.tool, RETRY_WINDOW, error
            )
        };
        let solution = format!(
            "{} — the retry was successful{}. Trigger: `{}`",
            self.resolution,
            if sessions > 1 {
                format!(", confirmed in {sessions} sessions")
            } else {
                String::new()
            },
            self.trigger
        );
        NewLearning::new(Source::ErrorCycle, target, trigger, pattern, solution)
            .with_tags(["compound-cycle".to_owned(), format!("tool-{}", self.tool)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recovery(session: &str, tool: &str, err: &str) -> Vec<TrajectoryEntry> {
        vec![
            TrajectoryEntry::tool_start(session, tool, json!({"cmd": "npm test"})),
            TrajectoryEntry::tool_end(session, tool, json!({"cmd": "npm test"}), err, true),
            TrajectoryEntry::message(session, "assistant", "retrying"),
            TrajectoryEntry::tool_end(
                session,
                tool,
                json!({"cmd": "npm test --force"}),
                "ok",
                false,
            ),
        ]
    }

    #[test]
    fn error_then_success_within_four_entries_is_a_candidate() {
        let entries = recovery("s1", "bash", "EACCES permission denied");
        let c = extract_error_recoveries(&entries, Some("s1"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].trigger, "tool:bash:error");
        assert_eq!(c[0].context, "EACCES permission denied");
        assert_eq!(c[0].resolution, r#"Retry with: {"cmd":"npm test --force"}"#);
        assert!((c[0].confidence - 0.6).abs() < 1e-9);
    }

    #[test]
    fn success_beyond_the_window_or_other_tool_or_session_does_not_count() {
        let mut e = vec![TrajectoryEntry::tool_end(
            "s",
            "bash",
            json!({}),
            "boom",
            true,
        )];
        for _ in 0..4 {
            e.push(TrajectoryEntry::message("s", "user", "hm"));
        }
        e.push(TrajectoryEntry::tool_end(
            "s",
            "bash",
            json!({}),
            "ok",
            false,
        ));
        assert!(extract_error_recoveries(&e, None).is_empty());
        let e = vec![
            TrajectoryEntry::tool_end("s", "bash", json!({}), "boom", true),
            TrajectoryEntry::tool_end("s", "read", json!({}), "ok", false),
            TrajectoryEntry::tool_end("t", "bash", json!({}), "ok", false),
        ];
        assert!(extract_error_recoveries(&e, None).is_empty());
    }

    #[test]
    fn repeated_across_sessions_groups_by_signature() {
        let mut e = recovery("s1", "bash", "connection refused on port 5432");
        e.extend(recovery("s2", "bash", "connection refused on port 5433"));
        e.extend(recovery("s3", "read", "no such file"));
        let rec = extract_error_recoveries(&e, None);
        assert_eq!(rec.len(), 3);
        let rep = extract_repeated(&rec, 2);
        assert_eq!(rep.len(), 1);
        assert_eq!(rep[0].sessions, ["s1", "s2"]);
        assert!(
            rep[0]
                .trigger
                .starts_with("pattern:bash:connection-refus-port")
        );
        assert!((rep[0].confidence - 0.4).abs() < 1e-9);
    }

    #[test]
    fn screening_matches_the_anchor_checks() {
        let good = Candidate {
            trigger: "tool:bash:error".into(),
            tool: "bash".into(),
            context: "x".into(),
            resolution: "y".into(),
            confidence: 0.6,
            sessions: vec![],
            occurrences: 1,
        };
        let s = screen(&good);
        assert!(s.accepted);
        assert!(s.quality_score >= 0.75);
        let bad = Candidate {
            trigger: "session thing".into(),
            confidence: 0.3,
            ..good.clone()
        };
        let s = screen(&bad);
        assert!(!s.accepted);
        assert_eq!(s.quality_score, 0.25);
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2026-01-01.jsonl");
        let good = serde_json::to_string(&TrajectoryEntry::message("s", "user", "hi")).unwrap();
        std::fs::write(&path, format!("{good}\n{{torn\n{good}\n")).unwrap();
        let t = Trajectory::read_file(&path).unwrap();
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.bad_lines.len(), 1);
        assert_eq!(t.bad_lines[0].line, 2);
    }
}
