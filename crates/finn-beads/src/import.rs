//! Importing `issues.jsonl`: an upsert merge that never lets older data overwrite newer data.
//!
//! For each incoming bead:
//! - unknown id → created;
//! - incoming `updated_at` later than the local one → the incoming record replaces the local one;
//! - incoming `updated_at` earlier → skipped and reported ([`SkippedOlder`]): a stale export
//!   re-imported after newer changes loses nothing;
//! - same instant and same content → unchanged; same instant, different content → the local
//!   record is kept and the id is reported as a conflict.
//!
//! Non-issue records (memories, ...) are upserted by key. The whole file is parsed and checked
//! before anything is written, so a malformed line aborts the import with nothing applied.

use std::cmp::Ordering;
use std::io::BufRead;
use std::ops::Range;
use std::path::Path;

use serde::Serialize;

use crate::bead::{Bead, Status};
use crate::error::Error;
use crate::jsonl::{Line, LineError, parse_line};
use crate::store::{Split, Store};
use crate::timestamp::Timestamp;
use crate::tx::{RawJson, Tx, raw_bead_json};

/// Most records per WAL batch during an import (batches are also capped at a quarter of the
/// WAL segment size).
pub const IMPORT_CHUNK: usize = 8192;

/// Import options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Report what would change without writing anything.
    pub dry_run: bool,
}

/// An incoming bead skipped because the local one is newer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedOlder {
    /// Bead id.
    pub id: String,
    /// Local `updated_at`.
    pub local: Option<Timestamp>,
    /// Incoming `updated_at`.
    pub incoming: Option<Timestamp>,
}

/// What an import did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Beads created.
    pub created: Vec<String>,
    /// Beads replaced by a newer incoming version.
    pub updated: Vec<String>,
    /// Beads identical to the local version.
    pub unchanged: usize,
    /// Beads skipped because the local version is newer.
    pub skipped_older: Vec<SkippedOlder>,
    /// Beads with the same `updated_at` but different content; the local version was kept.
    pub conflicts: Vec<String>,
    /// Non-issue records created or replaced.
    pub records_written: usize,
    /// Non-issue records identical to the local ones.
    pub records_unchanged: usize,
    /// Dependency edges pointing at ids that exist neither locally nor in the file (kept as data;
    /// a dangling `blocks` edge keeps its bead out of the ready list, as in `bd`).
    pub dangling_dependencies: Vec<(String, String)>,
}

impl ImportReport {
    /// Number of writes the import performs.
    pub fn changes(&self) -> usize {
        self.created.len() + self.updated.len() + self.records_written
    }
}

enum Decision {
    Create,
    Update,
    Unchanged,
    Older,
    Conflict,
}

fn decide(local: &Bead, incoming: &Bead) -> Decision {
    if local == incoming {
        return Decision::Unchanged;
    }
    match (&local.updated_at, &incoming.updated_at) {
        (Some(l), Some(i)) => match i.cmp_instant(l) {
            Ordering::Greater => Decision::Update,
            Ordering::Less => Decision::Older,
            Ordering::Equal => Decision::Conflict,
        },
        (None, Some(_)) => Decision::Update,
        (_, None) => Decision::Older,
    }
}

impl Store {
    /// Imports an `issues.jsonl` file (see the module docs for the merge rules).
    pub fn import_path(
        &self,
        path: impl AsRef<Path>,
        options: &ImportOptions,
    ) -> Result<ImportReport, Error> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let lines = read_all(std::io::BufReader::with_capacity(1 << 16, file), path)?;
        self.import_lines(lines, options)
    }

    /// Imports JSONL from a reader.
    pub fn import_reader(
        &self,
        reader: impl BufRead,
        options: &ImportOptions,
    ) -> Result<ImportReport, Error> {
        let lines = read_all(reader, Path::new("<reader>"))?;
        self.import_lines(lines, options)
    }

    fn import_lines(
        &self,
        lines: Vec<ParsedLine>,
        options: &ImportOptions,
    ) -> Result<ImportReport, Error> {
        for p in &lines {
            if let Line::Issue(b) = &p.line {
                self.options()
                    .limits
                    .check_imported(b)
                    .map_err(|source| Error::ImportRecord {
                        line: p.number,
                        source,
                    })?;
            }
        }
        let mut report = ImportReport {
            dry_run: options.dry_run,
            ..ImportReport::default()
        };
        if options.dry_run {
            self.refresh()?;
            let now = self.now();
            self.read(|state| {
                let limits = &self.options().limits;
                let mut tx = Tx::new(state, limits, &self.options().id_prefix, now);
                merge(&mut tx, lines, &mut report);
            });
            return Ok(report);
        }
        // The records go to the WAL as atomic batches of at most IMPORT_CHUNK records that stay
        // well inside one WAL segment (a batch frame cannot span segments), appended without a
        // sync each and made durable by one sync at the end. A crash leaves a prefix of the
        // batches; running the same import again completes it (applied records are unchanged).
        let split = Split {
            max_records: IMPORT_CHUNK,
            max_bytes: usize::try_from(self.options().wal.segment_size / 4).unwrap_or(usize::MAX),
        };
        self.transact_with(Some(split), |tx| {
            merge(tx, lines, &mut report);
            Ok(())
        })?;
        Ok(report)
    }
}

/// A parsed line: its number, its content and, for a bead, the text to put in the WAL as it is.
struct ParsedLine {
    number: u64,
    line: Line,
    raw: Option<RawJson>,
}

/// Below this many lines an import parses on the calling thread only.
const PARALLEL_PARSE_MIN_LINES: usize = 4096;

/// Reads the whole input, then parses its lines (on several threads for large inputs), keeping
/// each line's number and, for a bead, where its text is when that can go into the WAL as it is
/// (see [`raw_bead_json`]). The first bad line (lowest number) is the error reported.
fn read_all(mut reader: impl BufRead, path: &Path) -> Result<Vec<ParsedLine>, Error> {
    let err = |source| Error::Import {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    if let Err(source) = reader.read_to_end(&mut bytes) {
        let line = 1 + bytes.iter().filter(|b| **b == b'\n').count() as u64;
        return Err(err(LineError::Io { line, source }));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..valid]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            let source = std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error());
            return Err(err(LineError::Io { line, source }));
        }
    };
    let buf = text.as_str();
    // Non-blank lines as (number, byte range of the trimmed text).
    let mut spans: Vec<(u64, Range<usize>)> = Vec::new();
    let mut at = 0usize;
    for (i, l) in buf.split_inclusive('\n').enumerate() {
        let start = at + (l.len() - l.trim_start().len());
        let end = at + l.trim_end().len();
        at += l.len();
        if start < end {
            spans.push((i as u64 + 1, start..end));
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    let parsed = if threads == 1 || spans.len() < PARALLEL_PARSE_MIN_LINES {
        parse_spans(buf, &spans)
    } else {
        let per = spans.len().div_ceil(threads);
        let parts: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = spans
                .chunks(per)
                .map(|chunk| {
                    std::thread::Builder::new()
                        .name("finn-beads-parse".to_owned())
                        .spawn_scoped(scope, move || parse_spans(buf, chunk))
                        // No thread to be had: this chunk is parsed here instead.
                        .map_err(|_| chunk)
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join(),
                    Err(chunk) => Ok(parse_spans(buf, chunk)),
                })
                .collect()
        });
        let mut out = Vec::with_capacity(spans.len());
        for part in parts {
            match part {
                Ok(Ok(lines)) => out.extend(lines),
                // Chunks are in file order: the first failing chunk holds the first bad line.
                Ok(Err(e)) => return Err(err(e)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(out)
    };
    parsed.map_err(err)
}

fn parse_spans(buf: &str, spans: &[(u64, Range<usize>)]) -> Result<Vec<ParsedLine>, LineError> {
    let mut out = Vec::with_capacity(spans.len());
    for (number, range) in spans {
        let text = buf.get(range.clone()).unwrap_or("");
        let line = parse_line(text).map_err(|source| LineError::Json {
            line: *number,
            source,
        })?;
        // Only the fast path of `parse_line` deserializes the bead from the text itself; a line
        // with `_type` goes through a JSON map first, and is encoded from the typed bead.
        let raw = match &line {
            Line::Issue(_) if !text.contains("\"_type\"") && raw_bead_json(text) => {
                Some(RawJson::new(text).map_err(|source| LineError::Json {
                    line: *number,
                    source,
                })?)
            }
            _ => None,
        };
        out.push(ParsedLine {
            number: *number,
            line,
            raw,
        });
    }
    Ok(out)
}

fn merge(tx: &mut Tx<'_>, lines: Vec<ParsedLine>, report: &mut ImportReport) {
    // Edges whose target is unknown so far; the target may still come later in the file.
    let mut unresolved: Vec<(String, String)> = Vec::new();
    tx.reserve(lines.len());
    for ParsedLine { line, raw, .. } in lines {
        match line {
            Line::Issue(b) => {
                for d in &b.dependencies {
                    if tx.get(&d.depends_on_id).is_none() {
                        unresolved.push((b.id.clone(), d.depends_on_id.clone()));
                    }
                }
                let decision = match tx.get(&b.id) {
                    None => Decision::Create,
                    Some(local) => decide(local, &b),
                };
                match decision {
                    Decision::Create => {
                        report.created.push(b.id.clone());
                        tx.put_imported(b, None, raw);
                    }
                    Decision::Update => {
                        // Keep a live lease only if the incoming record still shows the holder.
                        let lease = tx.lease(&b.id).cloned().filter(|l| {
                            b.status == Status::InProgress
                                && b.assignee.as_deref() == Some(l.worker.as_str())
                        });
                        report.updated.push(b.id.clone());
                        tx.put_imported(b, lease, raw);
                    }
                    Decision::Unchanged => report.unchanged += 1,
                    Decision::Older => report.skipped_older.push(SkippedOlder {
                        local: tx.get(&b.id).and_then(|l| l.updated_at.clone()),
                        incoming: b.updated_at.clone(),
                        id: b.id,
                    }),
                    Decision::Conflict => report.conflicts.push(b.id),
                }
            }
            Line::Other { key, record } => {
                let same = tx
                    .records
                    .get(&key)
                    .or_else(|| tx.state().records().get(&key))
                    .is_some_and(|r| *r == record);
                if same {
                    report.records_unchanged += 1;
                } else {
                    report.records_written += 1;
                    tx.put_record(&key, record);
                }
            }
        }
    }
    // Every bead of the file is now local or staged (import validates all lines first, and
    // every merge decision leaves the id known), so a target still unknown is in neither.
    report.dangling_dependencies = unresolved
        .into_iter()
        .filter(|(_, target)| tx.get(target).is_none())
        .collect();
}
