//! Exporting `issues.jsonl`: beads in id order (tombstones included, so deletions propagate),
//! then non-issue records in key order. Files are replaced atomically.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::jsonl::write_line;
use crate::state::State;
use crate::store::Store;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path.file_name().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "export path has no file name",
            ))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);
        let result = (|| {
            let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 16, file);
            self.export_to(&mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_data()?;
            drop(file);
            std::fs::rename(&tmp, path)?;
            finn_wal::fs::sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}
