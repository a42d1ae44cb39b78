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
//!
//! A large file is parsed in pieces by one worker thread per core while the calling thread
//! merges the pieces before them, under the store's lock: other threads of the process wait
//! for the whole import. With [`Sharing::MultiProcess`](crate::Sharing::MultiProcess) the file
//! is parsed first and the lock file is taken only for the merge and the commit, so other
//! processes wait no longer than that.

use std::cmp::Ordering;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::mpsc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::bead::{Bead, Status};
use crate::error::Error;
use crate::jsonl::{LineError, Parsed, parse_line_unboxed};
use crate::state::Entry;
use crate::store::{Sharing, Split, Store};
use crate::timestamp::Timestamp;
use crate::tx::{Input, RawJson, Tx, raw_bead_json, staged_entry};
use crate::validate::{Limits, ValidationError};

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
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        let input = read_input(reader, path)?;
        self.import_input(input, path, options)
    }

    /// Imports JSONL from a reader.
    pub fn import_reader(
        &self,
        reader: impl BufRead,
        options: &ImportOptions,
    ) -> Result<ImportReport, Error> {
        let path = Path::new("<reader>");
        let input = read_input(reader, path)?;
        self.import_input(input, path, options)
    }

    /// Parses and merges `input` in one transaction (see the module docs for who waits for
    /// what); nothing reaches the WAL before every line is parsed and checked.
    fn import_input(
        &self,
        input: Vec<u8>,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<ImportReport, Error> {
        let input: Input = Arc::new(input);
        let limits = &self.options().limits;
        // Parsed into this transaction, or before it (see the module docs).
        let merge_into = |tx: &mut Tx<'_>, parsed: Option<Vec<Vec<ParsedLine>>>| {
            let mut merger = Merger::default();
            match parsed {
                Some(pieces) => pieces.into_iter().for_each(|l| merger.merge(tx, l)),
                None => parse_input(&input, path, limits, CUTTING, |l| merger.merge(tx, l))?,
            }
            Ok::<_, Error>(merger.finish(tx))
        };
        if options.dry_run {
            self.refresh()?;
            let now = self.now();
            let mut report = self.read(|state| {
                let mut tx = Tx::new(state, limits, &self.options().id_prefix, now);
                merge_into(&mut tx, None)
            })?;
            report.dry_run = true;
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
        let parsed = if self.options().sharing == Sharing::MultiProcess {
            let mut pieces = Vec::new();
            parse_input(&input, path, limits, CUTTING, |lines| pieces.push(lines))?;
            Some(pieces)
        } else {
            None
        };
        self.transact_with(Some(split), |tx| {
            tx.set_input(Arc::clone(&input));
            merge_into(tx, parsed)
        })
    }
}

/// A parsed line: its content and, for a bead, the text to put in the WAL as it is.
struct ParsedLine {
    item: Item,
    raw: Option<RawJson>,
}

/// The content of a line: a bead already in the entry the state will keep (allocated by the
/// parse thread, so committing moves a pointer), or a non-issue record.
enum Item {
    Issue(Arc<Entry>),
    Other {
        key: String,
        record: Map<String, Value>,
    },
}

/// How an input is cut for parsing.
#[derive(Clone, Copy, Debug)]
struct Cutting {
    /// Below this many bytes the calling thread parses the input alone.
    parallel_from: usize,
    /// Size of the pieces a larger input is cut into.
    piece: usize,
}

/// Inputs under 1 MiB (about 4,000 beads) are parsed on the calling thread; larger ones in
/// pieces of 4 MiB (about 6,000 beads), small enough that the merge of the first pieces
/// overlaps the parse of the rest, large enough that handing pieces out costs nothing next to
/// parsing them.
const CUTTING: Cutting = Cutting {
    parallel_from: 1 << 20,
    piece: 4 << 20,
};

/// Reads the whole input.
fn read_input(mut reader: impl BufRead, path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    if let Err(source) = reader.read_to_end(&mut bytes) {
        let line = 1 + bytes.iter().filter(|b| **b == b'\n').count() as u64;
        return Err(Error::Import {
            path: path.to_owned(),
            source: LineError::Io { line, source },
        });
    }
    Ok(bytes)
}

/// Checks, splits and parses `input` and hands its lines to `merge` piece by piece, in file
/// order. Larger inputs are cut at line ends into pieces, parsed by worker threads (one per
/// core but one) and by this thread, which also merges them in order as they are ready. Each
/// line keeps, for a bead, where its text is when that can go into the WAL as it is (see
/// [`raw_bead_json`]).
/// The first bad line (lowest number) is the error reported, whether it is not UTF-8, not a
/// beads record or a bead with an id `limits` reject ([`Limits::check_imported`]); the pieces
/// after it are not merged.
fn parse_input(
    input: &[u8],
    path: &Path,
    limits: &Limits,
    cutting: Cutting,
    mut merge: impl FnMut(Vec<ParsedLine>),
) -> Result<(), Error> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    if input.len() < cutting.parallel_from || threads == 1 {
        let piece = parse_piece((0, input), limits).map_err(|bad| bad.into_error(path, 0))?;
        merge(piece.lines);
        return Ok(());
    }
    let pieces = cut_at_lines(input, (input.len() / cutting.piece.max(1)).max(threads));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        // This thread is busy for only part of the time (merging), so it parses too: one
        // worker fewer than cores keeps every core busy without time-slicing three threads.
        for _ in 1..threads {
            let done = done.clone();
            let (pieces, next, stop) = (&pieces, &next, &stop);
            // A worker that cannot be started leaves its share to the others, or to this
            // thread below.
            let _ = std::thread::Builder::new()
                .name("finn-beads-parse".to_owned())
                .spawn_scoped(scope, move || {
                    while !stop.load(AtomicOrdering::Relaxed) {
                        let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                        let Some(&piece) = pieces.get(i) else { break };
                        if done.send((i, parse_piece(piece, limits))).is_err() {
                            break;
                        }
                    }
                });
        }
        drop(done);
        let mut parsed: Vec<Option<Result<Piece, BadLine>>> =
            std::iter::repeat_with(|| None).take(pieces.len()).collect();
        // Line numbers in a piece count from its start; the pieces before it add theirs.
        let mut before = 0u64;
        for k in 0..pieces.len() {
            while parsed[k].is_none() {
                // Whatever the workers finished, then a piece nobody took yet, else wait.
                while let Ok((i, result)) = finished.try_recv() {
                    parsed[i] = Some(result);
                }
                if parsed[k].is_some() {
                    break;
                }
                let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                if let Some(&piece) = pieces.get(i) {
                    parsed[i] = Some(parse_piece(piece, limits));
                    continue;
                }
                match finished.recv() {
                    Ok((i, result)) => parsed[i] = Some(result),
                    // Every worker is gone without piece `k` (a worker died): parse it here.
                    Err(_) => parsed[k] = Some(parse_piece(pieces[k], limits)),
                }
            }
            match parsed[k].take() {
                Some(Ok(piece)) => {
                    before += piece.line_count;
                    merge(piece.lines);
                }
                Some(Err(bad)) => {
                    stop.store(true, AtomicOrdering::Relaxed);
                    return Err(bad.into_error(path, before));
                }
                None => unreachable!("piece {k} was parsed above"),
            }
        }
        Ok(())
    })
}

/// Cuts `bytes` into at most `n` pieces of about equal size, each ending just after a newline
/// (the last one at the end of the input), each with its offset in `bytes`.
fn cut_at_lines(bytes: &[u8], n: usize) -> Vec<(usize, &[u8])> {
    let mut pieces = Vec::with_capacity(n);
    let (mut start, mut rest) = (0, bytes);
    for k in (2..=n).rev() {
        let target = rest.len() / k;
        let Some(at) = rest[target..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let (piece, tail) = rest.split_at(target + at + 1);
        pieces.push((start, piece));
        start += piece.len();
        rest = tail;
    }
    pieces.push((start, rest));
    pieces
}

/// The lines of one piece of the input, numbered from 1 at the piece's start.
struct Piece {
    lines: Vec<ParsedLine>,
    /// Lines in the piece, blank ones included.
    line_count: u64,
}

/// Why a line stops an import.
#[derive(Debug)]
enum BadLine {
    /// Not UTF-8, or not a beads record.
    Line(LineError),
    /// A bead with an id that cannot be stored.
    Record {
        /// 1-based line number.
        line: u64,
        /// Why.
        source: ValidationError,
    },
}

impl BadLine {
    /// The import error for this line, in a piece that starts after `before` lines.
    fn into_error(self, path: &Path, before: u64) -> Error {
        match self {
            BadLine::Line(e) => Error::Import {
                path: path.to_owned(),
                source: e.shifted(before),
            },
            BadLine::Record { line, source } => Error::ImportRecord {
                line: line + before,
                source,
            },
        }
    }
}

impl From<LineError> for BadLine {
    fn from(e: LineError) -> Self {
        BadLine::Line(e)
    }
}

/// Parses the lines of `piece`, which starts at `offset` in the input.
fn parse_piece((offset, piece): (usize, &[u8]), limits: &Limits) -> Result<Piece, BadLine> {
    // Lines before the first byte that is not UTF-8 are parsed (one of them may be the first
    // bad line); the line holding that byte is the error otherwise.
    let (text, bad_utf8) = match std::str::from_utf8(piece) {
        Ok(text) => (text, None),
        Err(e) => {
            let valid = piece.get(..e.valid_up_to()).unwrap_or_default();
            (std::str::from_utf8(valid).unwrap_or_default(), Some(e))
        }
    };
    let mut lines = Vec::with_capacity(text.len() / 512);
    let mut line_count = 0u64;
    // Offset in the input of the line at hand.
    let mut at = offset;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let number = i as u64 + 1;
        line_count = number;
        if bad_utf8.is_some() && !l.ends_with('\n') {
            // The valid start of the line with the bad byte.
            break;
        }
        let start = at + (l.len() - l.trim_start().len());
        at += l.len();
        let text = l.trim();
        if text.is_empty() {
            continue;
        }
        lines.push(parse_text(number, text, start, limits)?);
    }
    if let Some(e) = bad_utf8 {
        let line = 1 + text.bytes().filter(|b| *b == b'\n').count() as u64;
        let source = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        return Err(BadLine::Line(LineError::Io { line, source }));
    }
    Ok(Piece { lines, line_count })
}

/// Parses and checks one non-blank line, which starts at `start` in the input.
fn parse_text(
    number: u64,
    text: &str,
    start: usize,
    limits: &Limits,
) -> Result<ParsedLine, BadLine> {
    let json = |source| LineError::Json {
        line: number,
        source,
    };
    let (item, raw) = match parse_line_unboxed(text).map_err(json)? {
        // A line with `_type` goes through a JSON map first, and is encoded from the typed
        // bead; a bead read from the text itself goes into the WAL as that text.
        Parsed::Issue { bead, direct } => {
            limits
                .check_imported(&bead)
                .map_err(|source| BadLine::Record {
                    line: number,
                    source,
                })?;
            let raw = if direct && raw_bead_json(text) {
                Some(RawJson::new(&bead.id, start..start + text.len()))
            } else {
                None
            };
            (Item::Issue(staged_entry(bead, None)), raw)
        }
        Parsed::Other { key, record } => (Item::Other { key, record }, None),
    };
    Ok(ParsedLine { item, raw })
}

/// The merge of an import into its transaction, one piece of lines at a time in file order.
#[derive(Default)]
struct Merger {
    report: ImportReport,
    /// Edges whose target was unknown when their line was merged; the target may still come
    /// later in the file.
    unresolved: Vec<(String, String)>,
}

impl Merger {
    fn merge(&mut self, tx: &mut Tx<'_>, lines: Vec<ParsedLine>) {
        let report = &mut self.report;
        tx.reserve(lines.len());
        for ParsedLine { item, raw, .. } in lines {
            match item {
                Item::Issue(mut entry) => {
                    let b = &entry.bead;
                    for d in &b.dependencies {
                        if tx.get(&d.depends_on_id).is_none() {
                            self.unresolved
                                .push((b.id.clone(), d.depends_on_id.clone()));
                        }
                    }
                    let decision = match tx.get(&b.id) {
                        None => Decision::Create,
                        Some(local) => decide(local, b),
                    };
                    match decision {
                        Decision::Create => {
                            report.created.push(b.id.clone());
                            tx.put_imported_new(entry, raw);
                        }
                        Decision::Update => {
                            // Keep a live lease only if the incoming record still shows the
                            // holder.
                            let lease = tx.lease(&b.id).cloned().filter(|l| {
                                b.status == Status::InProgress
                                    && b.assignee.as_deref() == Some(l.worker.as_str())
                            });
                            report.updated.push(b.id.clone());
                            if lease.is_some() {
                                // Only this line holds the entry yet: the lease is set in place.
                                Arc::make_mut(&mut entry).lease = lease;
                            }
                            tx.put_imported(entry, raw);
                        }
                        Decision::Unchanged => report.unchanged += 1,
                        Decision::Older => report.skipped_older.push(SkippedOlder {
                            local: tx.get(&b.id).and_then(|l| l.updated_at.clone()),
                            incoming: b.updated_at.clone(),
                            id: b.id.clone(),
                        }),
                        Decision::Conflict => report.conflicts.push(b.id.clone()),
                    }
                }
                Item::Other { key, record } => {
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
    }

    /// The report, once every piece is merged.
    fn finish(self, tx: &Tx<'_>) -> ImportReport {
        let mut report = self.report;
        // Every bead of the file is now local or staged (import validates all lines first, and
        // every merge decision leaves the id known), so a target still unknown is in neither.
        report.dangling_dependencies = self
            .unresolved
            .into_iter()
            .filter(|(_, target)| tx.get(target).is_none())
            .collect();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_end_at_line_ends_and_cover_the_input() {
        let text = b"{\"id\":\"a\"}\n\n{\"id\":\"bb\"}\n{\"id\":\"c\"}";
        for n in 1..6 {
            let pieces = cut_at_lines(text, n);
            assert!(pieces.len() <= n);
            let slices: Vec<&[u8]> = pieces.iter().map(|(_, p)| *p).collect();
            assert_eq!(slices.concat(), text.to_vec());
            for (offset, p) in &pieces {
                assert_eq!(&text[*offset..*offset + p.len()], *p);
            }
            for (_, p) in &pieces[..pieces.len() - 1] {
                assert_eq!(p.last(), Some(&b'\n'));
            }
        }
    }

    fn ids(lines: &[ParsedLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match &l.item {
                Item::Issue(e) => e.bead.id.clone(),
                Item::Other { key, .. } => key.clone(),
            })
            .collect()
    }

    #[test]
    fn many_small_pieces_are_merged_in_file_order_and_stop_at_the_first_bad_line() {
        let limits = Limits::default();
        let path = Path::new("<test>");
        let lines: Vec<String> = (0..200).map(|i| format!(r#"{{"id":"b-{i}"}}"#)).collect();
        // Pieces of about two lines: far more pieces than threads.
        let cutting = Cutting {
            parallel_from: 0,
            piece: 30,
        };
        let mut merged = Vec::new();
        let mut pieces = 0;
        parse_input(lines.join("\n").as_bytes(), path, &limits, cutting, |l| {
            pieces += 1;
            merged.extend(ids(&l));
        })
        .unwrap();
        assert!(pieces > 10, "{pieces} pieces");
        let expected: Vec<String> = (0..200).map(|i| format!("b-{i}")).collect();
        assert_eq!(merged, expected);

        let mut bad = lines.clone();
        bad[149] = "{oops".to_owned();
        bad[180] = "{oops".to_owned();
        let mut merged = Vec::new();
        let err = parse_input(bad.join("\n").as_bytes(), path, &limits, cutting, |l| {
            merged.extend(ids(&l))
        })
        .unwrap_err();
        let Error::Import { source, .. } = err else {
            panic!("a line that is not JSON must fail as such: {err:?}");
        };
        assert_eq!(source.line(), 150);
        // Only pieces wholly before the bad line were merged.
        assert!(merged.len() < 149);
        assert_eq!(merged, expected[..merged.len()]);
    }

    #[test]
    fn a_piece_numbers_its_lines_from_one_and_stops_at_bad_utf8() {
        let limits = Limits::default();
        let piece = parse_piece((0, b"{\"id\":\"a\"}\n\n{\"id\":\"b\"}\n"), &limits).unwrap();
        assert_eq!(piece.line_count, 3);
        assert_eq!(
            piece.lines.len(),
            2,
            "the blank line is counted, not parsed"
        );
        let Err(BadLine::Line(e)) =
            parse_piece((0, b"{\"id\":\"a\"}\n{\"id\":\"\xff\"}\n"), &limits)
        else {
            panic!("a line that is not UTF-8 must fail as such");
        };
        assert!(matches!(e, LineError::Io { line: 2, .. }), "{e:?}");
        assert_eq!(e.shifted(10).line(), 12);
    }
}
