//! Exporting `issues.jsonl`: beads in id order (tombstones included, so deletions propagate),
//! then non-issue records in key order. Files are replaced atomically.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::Error;
use crate::jsonl::write_line;
use crate::state::State;
use crate::store::Store;

impl State {
    /// Writes every bead and record as JSONL (see the module docs for the order).
    pub fn export_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut beads: Vec<_> = self.beads().collect();
        beads.sort_by(|a, b| a.id.cmp(&b.id));
        for b in beads {
            write_line(out, b)?;
        }
        for record in self.records().values() {
            write_line(out, record)?;
        }
        Ok(())
    }
}

impl Store {
    /// Writes the export to `out`.
    pub fn export_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        self.read(|s| s.export_to(out))
    }

    /// Replaces `path` with a fresh export: a temp file in the same directory is streamed,
    /// fdatasynced and renamed over `path`, then the directory is fsynced. After a crash `path`
    /// holds the old or the new export, never a mix.
    pub fn export_path(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        finn_wal::fs::write_atomic_from(path, |file| {
            let mut w = BufWriter::with_capacity(1 << 16, file);
            self.export_to(&mut w)?;
            w.flush()
        })
        .map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
    }
}
