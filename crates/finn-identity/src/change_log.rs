//! The identity change log kept inside `NOTES.md`.
//!
//! `NOTES.md` belongs to the agent and holds more than this log, so the log lives in one delimited
//! region of it and everything outside the region is preserved byte for byte. Each write rewrites
//! the file through a synced temp file and a rename (never an in-place append that a crash could
//! tear), keeps only the newest [`ChangeLog::max_entries`] entries, and is skipped when the newest
//! entry already records the same checksum, so restarts and touch-only saves add nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::checksum::Checksum;
use crate::durable::Staged;
use crate::error::ChangeLogError;

/// First line of the managed region (a prefix; the rest of the line is a human note).
pub const REGION_BEGIN: &str = "<!-- finn-identity:change-log:begin";
/// Last line of the managed region.
pub const REGION_END: &str = "<!-- finn-identity:change-log:end -->";
/// Heading that opens each entry, as the TypeScript loader wrote it.
pub const ENTRY_HEADING: &str = "## [Identity Change] ";

/// How many entries the log keeps by default.
pub const DEFAULT_MAX_ENTRIES: usize = 50;

/// Writes done before giving up when another writer keeps changing the file under us.
const MAX_ATTEMPTS: u32 = 5;

/// One recorded identity change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChangeEntry {
    /// The timestamp as written (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// Checksum of the document that was active before, `None` for the first record.
    pub previous: Option<Checksum>,
    /// Checksum of the document that became active; `None` if the entry was edited unreadably.
    pub checksum: Option<Checksum>,
    /// The new document's version, if it has one.
    pub version: Option<String>,
}

/// The change-log region of one notes file.
#[derive(Clone, Debug)]
pub struct ChangeLog {
    path: PathBuf,
    max_entries: usize,
}

/// The notes file split around the managed region.
struct Split<'a> {
    before: &'a str,
    blocks: Vec<&'a str>,
    after: &'a str,
}

impl ChangeLog {
    /// A change log in the notes file at `path`, keeping the newest `max_entries` (at least 1).
    pub fn new(path: impl Into<PathBuf>, max_entries: usize) -> Self {
        Self {
            path: path.into(),
            max_entries: max_entries.max(1),
        }
    }

    /// The notes file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many entries are kept.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The entries in the region, oldest first. A missing file has none.
    pub fn entries(&self) -> Result<Vec<ChangeEntry>, ChangeLogError> {
        let text = self.read()?;
        Ok(split(&text).blocks.iter().map(|b| parse_entry(b)).collect())
    }

    /// Checksum recorded by the newest entry.
    pub fn last_checksum(&self) -> Result<Option<Checksum>, ChangeLogError> {
        Ok(self.entries()?.last().and_then(|e| e.checksum))
    }

    /// Appends an entry unless the newest one already records `checksum`; drops the oldest
    /// entries beyond the cap. Returns whether the file was written. When `previous` is `None`
    /// the newest entry's checksum is recorded as the previous one.
    ///
    /// The write is atomic and durable: temp file, fdatasync, rename, directory fsync. If the file
    /// changes between the read and the rename (another writer appending notes), the write is
    /// redone on the new content, up to a few times.
    pub fn record(
        &self,
        previous: Option<Checksum>,
        checksum: Checksum,
        version: Option<&str>,
        at: SystemTime,
    ) -> Result<bool, ChangeLogError> {
        for _ in 0..MAX_ATTEMPTS {
            let original = self.read()?;
            let parts = split(&original);
            let last_recorded = parts.blocks.last().and_then(|b| parse_entry(b).checksum);
            if last_recorded == Some(checksum) {
                return Ok(false);
            }
            // After a restart the caller has no previous checksum; the log remembers it.
            let entry = render_entry(previous.or(last_recorded), checksum, version, at);
            let mut blocks: Vec<&str> = parts.blocks.clone();
            blocks.push(&entry);
            let excess = blocks.len().saturating_sub(self.max_entries);
            let updated = compose(
                parts.before,
                &blocks[excess..],
                parts.after,
                self.max_entries,
            );

            let staged = Staged::write(&self.path, updated.as_bytes()).map_err(io_err)?;
            // Optimistic concurrency: only rename if nobody changed the file since we read it.
            // A write landing between this check and the rename is still lost; writers that share
            // NOTES.md should replace it atomically too.
            if self.read()? != original {
                drop(staged);
                continue;
            }
            staged.commit().map_err(io_err)?;
            return Ok(true);
        }
        Err(ChangeLogError::Contended {
            path: self.path.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn read(&self) -> Result<String, ChangeLogError> {
        match fs::read(&self.path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| ChangeLogError::NotUtf8 {
                path: self.path.clone(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(ChangeLogError::Io {
                path: self.path.clone(),
                source: source.into(),
            }),
        }
    }
}

fn io_err((path, source): (PathBuf, io::Error)) -> ChangeLogError {
    ChangeLogError::Io {
        path,
        source: source.into(),
    }
}

/// Finds the region. Text outside it is returned untouched; a begin marker without an end marker
/// makes the region run to the end of the file.
fn split(text: &str) -> Split<'_> {
    let Some(begin) = line_start_of(text, REGION_BEGIN, 0) else {
        return Split {
            before: text,
            blocks: Vec::new(),
            after: "",
        };
    };
    let content_start = text[begin..]
        .find('\n')
        .map_or(text.len(), |n| begin + n + 1);
    let (content_end, after_start) = match line_start_of(text, REGION_END, content_start) {
        Some(end) => (
            end,
            text[end..].find('\n').map_or(text.len(), |n| end + n + 1),
        ),
        None => (text.len(), text.len()),
    };
    Split {
        before: &text[..begin],
        blocks: entry_blocks(&text[content_start..content_end]),
        after: &text[after_start..],
    }
}

/// Offset of the first line at or after `from` that starts with `prefix`.
fn line_start_of(text: &str, prefix: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    while pos <= text.len() {
        let rest = text.get(pos..)?;
        if rest.starts_with(prefix) && (pos == 0 || text.as_bytes()[pos - 1] == b'\n') {
            return Some(pos);
        }
        pos += rest.find('\n')? + 1;
    }
    None
}

/// Splits region content into entries, each starting at an entry heading and trimmed.
fn entry_blocks(content: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = Vec::new();
    let mut pos = 0;
    while let Some(at) = line_start_of(content, ENTRY_HEADING, pos) {
        starts.push(at);
        pos = at + ENTRY_HEADING.len();
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let e = starts.get(i + 1).copied().unwrap_or(content.len());
            content[s..e].trim()
        })
        .collect()
}

fn parse_entry(block: &str) -> ChangeEntry {
    let mut lines = block.lines();
    let at = lines
        .next()
        .and_then(|l| l.strip_prefix(ENTRY_HEADING))
        .unwrap_or("")
        .trim()
        .to_owned();
    let mut entry = ChangeEntry {
        at,
        previous: None,
        checksum: None,
        version: None,
    };
    for line in lines {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("- Previous checksum:") {
            entry.previous = Checksum::from_hex(v.trim());
        } else if let Some(v) = line.strip_prefix("- New checksum:") {
            entry.checksum = Checksum::from_hex(v.trim());
        } else if let Some(v) = line.strip_prefix("- Version:") {
            entry.version = Some(v.trim().to_owned());
        }
    }
    entry
}

fn render_entry(
    previous: Option<Checksum>,
    checksum: Checksum,
    version: Option<&str>,
    at: SystemTime,
) -> String {
    let at = DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true);
    let previous = previous.map_or_else(|| "none".to_owned(), |c| c.to_hex());
    let mut s = format!(
        "{ENTRY_HEADING}{at}\n\n- Previous checksum: {previous}\n- New checksum: {checksum}\n"
    );
    if let Some(v) = version {
        // A version is one line by construction; flatten defensively so the entry stays parseable.
        s.push_str(&format!("- Version: {}\n", v.replace(['\r', '\n'], " ")));
    }
    s.push_str("- Document reloaded");
    s
}

fn compose(before: &str, blocks: &[&str], after: &str, max: usize) -> String {
    let mut out = String::with_capacity(before.len() + after.len() + blocks.len() * 256);
    out.push_str(before);
    if !before.is_empty() && !before.ends_with("\n\n") {
        out.push_str(if before.ends_with('\n') { "\n" } else { "\n\n" });
    }
    out.push_str(REGION_BEGIN);
    out.push_str(&format!(
        " (managed by finn-identity: newest {max} entries kept, edits inside are overwritten) -->\n"
    ));
    for block in blocks {
        out.push('\n');
        out.push_str(block);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(REGION_END);
    out.push('\n');
    out.push_str(after);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn entry_format_is_the_anchor_block_with_full_checksums() {
        let (a, b) = (Checksum::of(b"a"), Checksum::of(b"b"));
        let e = render_entry(Some(a), b, Some("0.3.0"), at(1_770_163_200));
        assert_eq!(
            e,
            format!(
                "## [Identity Change] 2026-02-04T00:00:00.000Z\n\n- Previous checksum: {a}\n- New checksum: {b}\n- Version: 0.3.0\n- Document reloaded"
            )
        );
        let parsed = parse_entry(&e);
        assert_eq!(parsed.previous, Some(a));
        assert_eq!(parsed.checksum, Some(b));
        assert_eq!(parsed.version.as_deref(), Some("0.3.0"));
    }

    #[test]
    fn text_outside_the_region_is_preserved_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("NOTES.md");
        let user = "# Notes\n\n- remember the milk\n";
        fs::write(&path, user).unwrap();
        let log = ChangeLog::new(&path, 3);
        assert!(log.record(None, Checksum::of(b"1"), None, at(1)).unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(user));

        // The user appends after the region; the next record keeps it.
        fs::write(&path, format!("{text}\n## Later note\nkeep me\n")).unwrap();
        assert!(
            log.record(Some(Checksum::of(b"1")), Checksum::of(b"2"), None, at(2))
                .unwrap()
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(user));
        assert!(text.ends_with("\n## Later note\nkeep me\n"));
        assert_eq!(log.entries().unwrap().len(), 2);
    }

    #[test]
    fn recording_the_same_checksum_twice_writes_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = ChangeLog::new(dir.path().join("NOTES.md"), 3);
        assert!(log.record(None, Checksum::of(b"1"), None, at(1)).unwrap());
        assert!(!log.record(None, Checksum::of(b"1"), None, at(2)).unwrap());
        assert_eq!(log.entries().unwrap().len(), 1);
    }

    #[test]
    fn begin_marker_without_end_runs_to_end_of_file() {
        let text = format!("top\n{REGION_BEGIN} x -->\n\n{ENTRY_HEADING}t\n\n- New checksum: zz\n");
        let s = split(&text);
        assert_eq!(s.before, "top\n");
        assert_eq!(s.blocks.len(), 1);
        assert_eq!(s.after, "");
    }

    #[test]
    fn non_utf8_notes_are_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("NOTES.md");
        fs::write(&path, [0xff, 0x00, 0xfe]).unwrap();
        let log = ChangeLog::new(&path, 3);
        assert!(matches!(
            log.record(None, Checksum::of(b"1"), None, at(1)),
            Err(ChangeLogError::NotUtf8 { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), [0xff, 0x00, 0xfe]);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the agent keeps in NOTES.md survives any number of records untouched.
        #[test]
        fn user_text_survives_records(user in "(\\PC|\n){0,300}", n in 1usize..6) {
            prop_assume!(!user.contains("finn-identity:change-log"));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("NOTES.md");
            fs::write(&path, &user).unwrap();
            let log = ChangeLog::new(&path, 2);
            for i in 0..n {
                log.record(None, Checksum::of(&i.to_le_bytes()), Some("v"), UNIX_EPOCH).unwrap();
            }
            let text = fs::read_to_string(&path).unwrap();
            prop_assert!(text.starts_with(&user));
            prop_assert_eq!(log.entries().unwrap().len(), n.min(2));
            prop_assert_eq!(log.last_checksum().unwrap(), Some(Checksum::of(&(n - 1).to_le_bytes())));
        }
    }
}
