//! A recording, in-memory file system for power-loss tests.
//!
//! SIGKILL keeps everything a process wrote (it is in the page cache); a power loss keeps only
//! what a sync covered, and the kernel may have written back any part of the rest, in any
//! order. [`SimFs`] implements [`Io`] and keeps two views: the one the process sees, and the
//! durable one, which `sync_data` (a file's data) and `sync_dir` (a directory's entries)
//! advance. Everything between is kept as a list of pending writes and entry changes, and
//! [`SimFs::crash`] builds an image from them:
//!
//! - [`Crash::DropUnsynced`]: only what a sync covered.
//! - [`Crash::Subset`]: that plus a seeded random subset of the pending writes (each kept,
//!   dropped or cut at a 512-byte sector boundary) and of the pending entry changes (each
//!   rename applied as a whole or not at all, as a journalling file system does) — unsynced
//!   writes to different files land out of order.
//!
//! [`SimFs::halt_after`] stops the world after a given number of operations (the power fails
//! there: that operation and every later one fail and change nothing), and
//! [`SimFs::fail_next_sync`] makes the next sync fail with `EIO`, as a dying disk would.
//!
//! ```
//! use finn_wal::fs::sim::{Crash, SimFs};
//! use finn_wal::fs::write_atomic_with;
//! use std::io::Write;
//! use std::path::Path;
//!
//! let fs = SimFs::new();
//! let path = Path::new("/state/agent.json");
//! fs.put_durable(path, b"old");
//! write_atomic_with(&fs, path, |file| file.write_all(b"new"))?;
//! for seed in 0..16 {
//!     assert_eq!(fs.crash(Crash::Subset(seed)).read(path).as_deref(), Some(&b"new"[..]));
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::BTreeMap;
use std::io::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Io, IoFile};

/// Bytes a torn write keeps are a multiple of this (a disk sector).
const SECTOR: usize = 512;

type Inode = u64;

/// Which power-loss image [`SimFs::crash`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// Keep only what a sync covered.
    DropUnsynced,
    /// Also keep a random subset (chosen by the seed) of the unsynced writes and entry changes.
    Subset(u64),
}

/// A recording in-memory file system; see the [module docs](self). Clones share one state.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Clone, Debug, Default)]
struct State {
    /// Path → inode, as the process sees it.
    entries: BTreeMap<PathBuf, Inode>,
    /// Inode → contents, as the process sees them.
    data: BTreeMap<Inode, Vec<u8>>,
    durable_entries: BTreeMap<PathBuf, Inode>,
    durable_data: BTreeMap<Inode, Vec<u8>>,
    /// Unsynced writes, oldest first.
    pending_writes: Vec<PendingWrite>,
    /// Unsynced entry changes, oldest first; one operation (a rename) may change two entries.
    pending_entries: Vec<Vec<EntryChange>>,
    next_inode: Inode,
    ops: u64,
    halt_after: Option<u64>,
    fail_next_sync: bool,
}

#[derive(Clone, Debug)]
struct PendingWrite {
    inode: Inode,
    offset: usize,
    bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
struct EntryChange {
    path: PathBuf,
    /// `None` removes the entry.
    inode: Option<Inode>,
}

/// A file open on a [`SimFs`].
#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    inode: Inode,
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or replaces `path` with `bytes`, durably (test setup; not counted as an
    /// operation).
    pub fn put_durable(&self, path: &Path, bytes: &[u8]) {
        let mut s = self.lock();
        let inode = s.new_inode();
        s.data.insert(inode, bytes.to_vec());
        s.durable_data.insert(inode, bytes.to_vec());
        s.entries.insert(path.to_path_buf(), inode);
        s.durable_entries.insert(path.to_path_buf(), inode);
    }

    /// The contents of `path` as the process sees them.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.entries.get(path).map(|i| s.data[i].clone())
    }

    /// The files directly inside `dir`, as the process sees them.
    pub fn list(&self, dir: &Path) -> Vec<PathBuf> {
        let s = self.lock();
        s.entries
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }

    /// Operations performed so far (creates, writes, syncs, renames, removals).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The power fails once `n` operations have been performed: operation `n + 1` and every
    /// later one fail with an error and change nothing.
    pub fn halt_after(&self, n: u64) {
        self.lock().halt_after = Some(n);
    }

    /// The next `sync_data` or `sync_dir` fails with `EIO` and makes nothing durable.
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// The image a power loss now would leave, as a fresh file system (durable and visible
    /// views equal, nothing pending).
    pub fn crash(&self, mode: Crash) -> SimFs {
        let s = self.lock();
        let mut entries = s.durable_entries.clone();
        let mut data = s.durable_data.clone();
        if let Crash::Subset(seed) = mode {
            let mut rng = SplitMix(seed);
            for w in &s.pending_writes {
                let keep = match rng.below(4) {
                    0 | 1 => w.bytes.len(),
                    2 => 0,
                    _ => rng.below(w.bytes.len() / SECTOR + 1) * SECTOR,
                };
                if keep > 0 {
                    write_at(data.entry(w.inode).or_default(), w.offset, &w.bytes[..keep]);
                }
            }
            for op in &s.pending_entries {
                if rng.below(2) == 0 {
                    apply(&mut entries, op);
                }
            }
        }
        data.retain(|inode, _| entries.values().any(|i| i == inode));
        for inode in entries.values() {
            data.entry(*inode).or_default();
        }
        let next_inode = s.next_inode;
        SimFs {
            state: Arc::new(Mutex::new(State {
                durable_entries: entries.clone(),
                durable_data: data.clone(),
                entries,
                data,
                next_inode,
                ..State::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the model half-updated in a way that
        // matters to a test that already failed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an operation, or refuses it once the power has failed.
    fn op(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut s = self.lock();
        if s.halt_after.is_some_and(|n| s.ops >= n) {
            return Err(Error::other("simulated power loss"));
        }
        s.ops += 1;
        Ok(s)
    }

    fn sync_op(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut s = self.op()?;
        if std::mem::take(&mut s.fail_next_sync) {
            return Err(Error::from_raw_os_error(5)); // EIO
        }
        Ok(s)
    }
}

impl State {
    fn new_inode(&mut self) -> Inode {
        self.next_inode += 1;
        self.next_inode
    }

    fn change(&mut self, changes: Vec<EntryChange>) {
        apply(&mut self.entries, &changes);
        self.pending_entries.push(changes);
    }
}

fn apply(entries: &mut BTreeMap<PathBuf, Inode>, changes: &[EntryChange]) {
    for c in changes {
        match c.inode {
            Some(i) => entries.insert(c.path.clone(), i),
            None => entries.remove(&c.path),
        };
    }
}

fn write_at(buf: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if buf.len() < offset + bytes.len() {
        buf.resize(offset + bytes.len(), 0);
    }
    buf[offset..offset + bytes.len()].copy_from_slice(bytes);
}

fn not_found(path: &Path) -> Error {
    Error::new(ErrorKind::NotFound, format!("{}", path.display()))
}

impl Io for SimFs {
    type File = SimFile;

    fn create_new(&self, path: &Path) -> std::io::Result<SimFile> {
        let mut s = self.op()?;
        if s.entries.contains_key(path) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{}", path.display()),
            ));
        }
        let inode = s.new_inode();
        s.data.insert(inode, Vec::new());
        s.change(vec![EntryChange {
            path: path.to_path_buf(),
            inode: Some(inode),
        }]);
        Ok(SimFile {
            fs: self.clone(),
            inode,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        let inode = *s.entries.get(from).ok_or_else(|| not_found(from))?;
        s.change(vec![
            EntryChange {
                path: from.to_path_buf(),
                inode: None,
            },
            EntryChange {
                path: to.to_path_buf(),
                inode: Some(inode),
            },
        ]);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        if !s.entries.contains_key(path) {
            return Err(not_found(path));
        }
        s.change(vec![EntryChange {
            path: path.to_path_buf(),
            inode: None,
        }]);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut s = self.sync_op()?;
        let s = &mut *s;
        for op in &mut s.pending_entries {
            op.retain(|c| {
                if c.path.parent() == Some(dir) {
                    apply(&mut s.durable_entries, std::slice::from_ref(c));
                    false
                } else {
                    true
                }
            });
        }
        s.pending_entries.retain(|op| !op.is_empty());
        Ok(())
    }
}

impl std::io::Write for SimFile {
    /// Records one write of all of `bytes` (a short write is not modelled).
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut s = self.fs.op()?;
        let buf = s.data.entry(self.inode).or_default();
        let offset = buf.len();
        buf.extend_from_slice(bytes);
        s.pending_writes.push(PendingWrite {
            inode: self.inode,
            offset,
            bytes: bytes.to_vec(),
        });
        Ok(bytes.len())
    }

    /// Nothing is buffered: a no-op.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl IoFile for SimFile {
    fn sync_data(&mut self) -> std::io::Result<()> {
        let mut s = self.fs.sync_op()?;
        let now = s.data.get(&self.inode).cloned().unwrap_or_default();
        s.durable_data.insert(self.inode, now);
        let inode = self.inode;
        s.pending_writes.retain(|w| w.inode != inode);
        Ok(())
    }
}

/// A small deterministic generator, so a failing seed reproduces.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(fs: &SimFs, path: &str, bytes: &[u8]) -> SimFile {
        let mut f = fs.create_new(Path::new(path)).unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn unsynced_data_and_entries_are_lost() {
        let fs = SimFs::new();
        let _f = write(&fs, "/d/a", b"hello");
        assert_eq!(fs.read(Path::new("/d/a")).as_deref(), Some(&b"hello"[..]));
        assert_eq!(fs.crash(Crash::DropUnsynced).read(Path::new("/d/a")), None);
    }

    #[test]
    fn a_synced_file_without_its_directory_sync_has_no_name() {
        let fs = SimFs::new();
        write(&fs, "/d/a", b"hello").sync_data().unwrap();
        assert_eq!(fs.crash(Crash::DropUnsynced).read(Path::new("/d/a")), None);
        fs.sync_dir(Path::new("/d")).unwrap();
        let image = fs.crash(Crash::DropUnsynced);
        assert_eq!(
            image.read(Path::new("/d/a")).as_deref(),
            Some(&b"hello"[..])
        );
    }

    #[test]
    fn a_synced_name_without_its_data_sync_is_empty() {
        let fs = SimFs::new();
        let _f = write(&fs, "/d/a", b"hello");
        fs.sync_dir(Path::new("/d")).unwrap();
        let image = fs.crash(Crash::DropUnsynced);
        assert_eq!(image.read(Path::new("/d/a")).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn subsets_keep_some_unsynced_writes_and_tear_others() {
        let fs = SimFs::new();
        fs.put_durable(Path::new("/d/a"), b"");
        let mut f = SimFile {
            fs: fs.clone(),
            inode: fs.lock().entries[Path::new("/d/a")],
        };
        f.write_all(&[7u8; 4 * SECTOR]).unwrap();
        let lengths: std::collections::BTreeSet<usize> = (0..64)
            .map(|seed| {
                fs.crash(Crash::Subset(seed))
                    .read(Path::new("/d/a"))
                    .unwrap()
                    .len()
            })
            .collect();
        assert!(lengths.contains(&0) && lengths.contains(&(4 * SECTOR)));
        assert!(lengths.iter().all(|l| l % SECTOR == 0));
        assert!(
            lengths.len() > 2,
            "some writes are torn at a sector: {lengths:?}"
        );
    }

    #[test]
    fn halting_refuses_every_later_operation() {
        let fs = SimFs::new();
        fs.halt_after(1);
        let mut f = fs.create_new(Path::new("/d/a")).unwrap();
        assert!(f.write_all(b"x").is_err());
        assert!(fs.sync_dir(Path::new("/d")).is_err());
        assert_eq!(fs.ops(), 1);
        assert_eq!(fs.read(Path::new("/d/a")).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_failed_sync_makes_nothing_durable() {
        let fs = SimFs::new();
        let mut f = write(&fs, "/d/a", b"hello");
        fs.fail_next_sync();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        fs.sync_dir(Path::new("/d")).unwrap();
        let image = fs.crash(Crash::DropUnsynced);
        assert_eq!(image.read(Path::new("/d/a")).as_deref(), Some(&b""[..]));
    }
}
