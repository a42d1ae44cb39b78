//! A recording, in-memory file system for power-loss tests.
//!
//! SIGKILL keeps everything a process wrote (it is in the page cache); a power loss keeps only
//! what a sync covered, and the kernel may have written back any part of the rest, in any
//! order. [`SimFs`] implements [`Io`] and keeps two views: the one the process sees, and the
//! durable one, which `sync_data`/`sync_all` (a file's data and length) and `sync_dir` (a
//! directory's entries) advance. Everything between is kept as a list of pending writes (each
//! positional write and each `set_len` a record of its own) and pending entry changes, and
//! [`SimFs::crash`] builds an image from them:
//!
//! - [`Crash::DropUnsynced`]: only what a sync covered.
//! - [`Crash::Subset`]: that plus a seeded random subset of the pending writes (each kept,
//!   dropped or cut at a 512-byte sector boundary) and of the pending entry changes (each
//!   rename or exchange applied as a whole or not at all, as a journalling file system does) —
//!   unsynced writes to different files, and to different places of one file, land out of
//!   order.
//!
//! Directories are entries too: creating one is an entry change of its parent, and renaming
//! one moves everything under it. A rename or exchange becomes durable once every directory it
//! touches has been synced after it (the portable reading of POSIX; ext4 needs only one). An
//! image never holds a file whose directory it does not hold.
//!
//! [`SimFs::halt_after`] stops the world after a given number of operations (the power fails
//! there: that operation and every later one fail and change nothing; reads are refused too
//! but not counted), and [`SimFs::fail_next_sync`] / [`SimFs::fail_nth_sync`] make a sync
//! fail with `EIO` and make nothing durable, as a dying disk would. There is no `O_TMPFILE` ([`Io::create_unnamed`] says `None`, so the WAL
//! takes its portable path) and the lock of [`Io::try_lock`] is an in-memory one.
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

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Io, IoFile, LockGuard, OpenMode};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(Inode),
    Dir,
}

#[derive(Clone, Debug, Default)]
struct State {
    /// Path → node, as the process sees it.
    entries: BTreeMap<PathBuf, Node>,
    /// Inode → contents, as the process sees them.
    data: BTreeMap<Inode, Vec<u8>>,
    durable_entries: BTreeMap<PathBuf, Node>,
    durable_data: BTreeMap<Inode, Vec<u8>>,
    /// Unsynced writes and length changes, oldest first.
    pending_writes: Vec<PendingWrite>,
    /// Unsynced entry changes, oldest first.
    pending_entries: Vec<PendingEntry>,
    locks: BTreeSet<PathBuf>,
    next_inode: Inode,
    ops: u64,
    halt_after: Option<u64>,
    /// Syncs performed (counted in `ops` too).
    syncs: u64,
    /// The sync with this number fails.
    fail_sync: Option<u64>,
}

#[derive(Clone, Debug)]
enum PendingWrite {
    Write {
        inode: Inode,
        offset: usize,
        bytes: Vec<u8>,
    },
    SetLen {
        inode: Inode,
        len: usize,
    },
}

impl PendingWrite {
    fn inode(&self) -> Inode {
        match self {
            PendingWrite::Write { inode, .. } | PendingWrite::SetLen { inode, .. } => *inode,
        }
    }
}

#[derive(Clone, Debug)]
enum EntryOp {
    /// Creates or replaces the entry at the path.
    Set(PathBuf, Node),
    /// Removes the entry at the path.
    Remove(PathBuf),
    /// Moves the entry (and, for a directory, everything under it) over `to`.
    Move { from: PathBuf, to: PathBuf },
    /// Swaps two entries (and what is under them).
    Exchange(PathBuf, PathBuf),
}

#[derive(Clone, Debug)]
struct PendingEntry {
    op: EntryOp,
    /// Directories whose sync the change still waits for.
    waits_for: BTreeSet<PathBuf>,
}

/// A file open on a [`SimFs`].
#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    inode: Inode,
    writable: bool,
}

impl SimFs {
    /// An empty file system (holding only `/`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or replaces `path` with `bytes`, durably, with any missing parent directories
    /// (test setup; not counted as an operation).
    pub fn put_durable(&self, path: &Path, bytes: &[u8]) {
        let mut s = self.lock();
        let inode = s.new_inode();
        s.data.insert(inode, bytes.to_vec());
        s.durable_data.insert(inode, bytes.to_vec());
        for dir in path.ancestors().skip(1) {
            if dir.parent().is_some() {
                s.entries.insert(dir.to_path_buf(), Node::Dir);
                s.durable_entries.insert(dir.to_path_buf(), Node::Dir);
            }
        }
        s.entries.insert(path.to_path_buf(), Node::File(inode));
        s.durable_entries
            .insert(path.to_path_buf(), Node::File(inode));
    }

    /// The contents of the file `path` as the process sees them.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        match s.entries.get(path) {
            Some(Node::File(i)) => Some(s.data.get(i).cloned().unwrap_or_default()),
            _ => None,
        }
    }

    /// The files directly inside `dir`, as the process sees them.
    pub fn list(&self, dir: &Path) -> Vec<PathBuf> {
        let s = self.lock();
        s.entries
            .iter()
            .filter(|(p, n)| p.parent() == Some(dir) && matches!(n, Node::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every file at any depth under `dir`, by path relative to `dir`, with its contents; `None`
    /// if `dir` is not a directory.
    pub fn tree(&self, dir: &Path) -> Option<BTreeMap<PathBuf, Vec<u8>>> {
        let s = self.lock();
        if !s.is_dir(dir) {
            return None;
        }
        let mut out = BTreeMap::new();
        for (p, n) in s.entries.range(dir.to_path_buf()..) {
            let Ok(rel) = p.strip_prefix(dir) else { break };
            if let Node::File(i) = n {
                out.insert(
                    rel.to_path_buf(),
                    s.data.get(i).cloned().unwrap_or_default(),
                );
            }
        }
        Some(out)
    }

    /// Operations performed so far (creates, writes, length changes, syncs, renames,
    /// removals; not reads).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The power fails once `n` operations have been performed: operation `n + 1` and every
    /// later one fail with an error and change nothing.
    pub fn halt_after(&self, n: u64) {
        self.lock().halt_after = Some(n);
    }

    /// The next `sync_data`, `sync_all` or `sync_dir` fails with `EIO` and makes nothing
    /// durable.
    pub fn fail_next_sync(&self) {
        self.fail_nth_sync(1);
    }

    /// The `n`-th sync from now (1: the next one) fails with `EIO` and makes nothing durable.
    pub fn fail_nth_sync(&self, n: u64) {
        let mut s = self.lock();
        s.fail_sync = Some(s.syncs + n.max(1));
    }

    /// Syncs (`sync_data`, `sync_all`, `sync_dir`) performed so far, failed ones included.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The image a power loss now would leave, as a fresh file system (durable and visible
    /// views equal, nothing pending, no locks held).
    pub fn crash(&self, mode: Crash) -> SimFs {
        let s = self.lock();
        let mut entries = s.durable_entries.clone();
        let mut data = s.durable_data.clone();
        if let Crash::Subset(seed) = mode {
            let mut rng = SplitMix(seed);
            for w in &s.pending_writes {
                match w {
                    PendingWrite::Write {
                        inode,
                        offset,
                        bytes,
                    } => {
                        let keep = match rng.below(4) {
                            0 | 1 => bytes.len(),
                            2 => 0,
                            _ => rng.below(bytes.len() / SECTOR + 1) * SECTOR,
                        };
                        if keep > 0 {
                            write_at(data.entry(*inode).or_default(), *offset, &bytes[..keep]);
                        }
                    }
                    PendingWrite::SetLen { inode, len } => {
                        if rng.below(2) == 0 {
                            data.entry(*inode).or_default().resize(*len, 0);
                        }
                    }
                }
            }
            for p in &s.pending_entries {
                if rng.below(2) == 0 {
                    apply(&mut entries, &p.op);
                }
            }
        }
        // A file's entry lives in its directory: without the directory it is gone too.
        let orphans: Vec<PathBuf> = entries
            .keys()
            .filter(|p| {
                p.ancestors()
                    .skip(1)
                    .any(|a| a.parent().is_some() && entries.get(a) != Some(&Node::Dir))
            })
            .cloned()
            .collect();
        for p in orphans {
            entries.remove(&p);
        }
        data.retain(|inode, _| entries.values().any(|n| *n == Node::File(*inode)));
        for n in entries.values() {
            if let Node::File(inode) = n {
                data.entry(*inode).or_default();
            }
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
        let mut s = self.alive()?;
        s.ops += 1;
        Ok(s)
    }

    /// Refuses anything once the power has failed, without counting.
    fn alive(&self) -> Result<MutexGuard<'_, State>, Error> {
        let s = self.lock();
        if s.halt_after.is_some_and(|n| s.ops >= n) {
            return Err(Error::other("simulated power loss"));
        }
        Ok(s)
    }

    fn sync_op(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut s = self.op()?;
        s.syncs += 1;
        if s.fail_sync == Some(s.syncs) {
            s.fail_sync = None;
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

    fn is_dir(&self, path: &Path) -> bool {
        path.parent().is_none() || self.entries.get(path) == Some(&Node::Dir)
    }

    fn file(&self, path: &Path) -> Result<Inode, Error> {
        match self.entries.get(path) {
            Some(Node::File(i)) => Ok(*i),
            Some(Node::Dir) => Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{}", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn parent_must_exist(&self, path: &Path) -> Result<(), Error> {
        match path.parent() {
            Some(p) if self.is_dir(p) => Ok(()),
            _ => Err(not_found(path)),
        }
    }

    fn change(&mut self, op: EntryOp, dirs: impl IntoIterator<Item = PathBuf>) {
        apply(&mut self.entries, &op);
        self.pending_entries.push(PendingEntry {
            op,
            waits_for: dirs.into_iter().collect(),
        });
    }
}

/// Applies an entry change to a tree of entries.
fn apply(entries: &mut BTreeMap<PathBuf, Node>, op: &EntryOp) {
    match op {
        EntryOp::Set(path, node) => {
            entries.insert(path.clone(), *node);
        }
        EntryOp::Remove(path) => {
            take_subtree(entries, path);
        }
        EntryOp::Move { from, to } => {
            let moved = take_subtree(entries, from);
            if moved.is_empty() {
                return;
            }
            take_subtree(entries, to);
            for (rel, node) in moved {
                entries.insert(join(to, &rel), node);
            }
        }
        EntryOp::Exchange(a, b) => {
            let under_a = take_subtree(entries, a);
            let under_b = take_subtree(entries, b);
            for (rel, node) in under_a {
                entries.insert(join(b, &rel), node);
            }
            for (rel, node) in under_b {
                entries.insert(join(a, &rel), node);
            }
        }
    }
}

fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// Removes `root` and everything under it; returns them by path relative to `root`.
fn take_subtree(entries: &mut BTreeMap<PathBuf, Node>, root: &Path) -> Vec<(PathBuf, Node)> {
    let keys: Vec<PathBuf> = entries
        .range(root.to_path_buf()..)
        .take_while(|(p, _)| p.starts_with(root))
        .map(|(p, _)| p.clone())
        .collect();
    keys.into_iter()
        .filter_map(|k| {
            let node = entries.remove(&k)?;
            Some((k.strip_prefix(root).ok()?.to_path_buf(), node))
        })
        .collect()
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

fn parent(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_path_buf()
}

/// The in-memory lock of [`SimFs::try_lock`].
#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

impl Io for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn IoFile>> {
        let writable = mode != OpenMode::Read;
        let inode = match mode {
            OpenMode::Read | OpenMode::ReadWrite => self.alive()?.file(path)?,
            OpenMode::CreateNew | OpenMode::Truncate => {
                let mut s = self.op()?;
                s.parent_must_exist(path)?;
                match s.entries.get(path).copied() {
                    Some(Node::File(_)) if mode == OpenMode::CreateNew => {
                        return Err(Error::new(
                            ErrorKind::AlreadyExists,
                            format!("{}", path.display()),
                        ));
                    }
                    Some(Node::File(inode)) => {
                        s.data.insert(inode, Vec::new());
                        s.pending_writes
                            .push(PendingWrite::SetLen { inode, len: 0 });
                        inode
                    }
                    Some(Node::Dir) => return Err(s.file(path).unwrap_err()),
                    None => {
                        let inode = s.new_inode();
                        s.data.insert(inode, Vec::new());
                        s.change(
                            EntryOp::Set(path.to_path_buf(), Node::File(inode)),
                            [parent(path)],
                        );
                        inode
                    }
                }
            }
        };
        Ok(Box::new(SimFile {
            fs: self.clone(),
            inode,
            writable,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        if !s.entries.contains_key(from) {
            return Err(not_found(from));
        }
        s.parent_must_exist(to)?;
        s.change(
            EntryOp::Move {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            },
            [parent(from), parent(to)],
        );
        Ok(())
    }

    fn exchange(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        for p in [a, b] {
            if !s.entries.contains_key(p) {
                return Err(not_found(p));
            }
        }
        s.change(
            EntryOp::Exchange(a.to_path_buf(), b.to_path_buf()),
            [parent(a), parent(b)],
        );
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        s.file(path)?;
        s.change(EntryOp::Remove(path.to_path_buf()), [parent(path)]);
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<OsString>> {
        let s = self.alive()?;
        if !s.is_dir(dir) {
            return Err(not_found(dir));
        }
        Ok(s.entries
            .range(dir.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .filter(|(p, _)| p.parent() == Some(dir))
            .filter_map(|(p, _)| p.file_name().map(|n| n.to_os_string()))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        let mut missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| a.parent().is_some() && !s.is_dir(a))
            .collect();
        missing.reverse();
        for d in missing {
            if s.entries.contains_key(d) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{}", d.display()),
                ));
            }
            s.change(EntryOp::Set(d.to_path_buf(), Node::Dir), [parent(d)]);
        }
        Ok(())
    }

    fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        s.parent_must_exist(dir)?;
        if s.entries.contains_key(dir) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{}", dir.display()),
            ));
        }
        s.change(EntryOp::Set(dir.to_path_buf(), Node::Dir), [parent(dir)]);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        let mut s = self.op()?;
        if s.entries.get(dir) != Some(&Node::Dir) {
            return Err(not_found(dir));
        }
        s.change(EntryOp::Remove(dir.to_path_buf()), [parent(dir)]);
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.lock().is_dir(path)
    }

    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        let s = self.alive()?;
        Ok(path.parent().is_none() || s.entries.contains_key(path))
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut s = self.sync_op()?;
        if !s.is_dir(dir) {
            return Err(not_found(dir));
        }
        let s = &mut *s;
        let mut still = Vec::with_capacity(s.pending_entries.len());
        for mut p in std::mem::take(&mut s.pending_entries) {
            p.waits_for.remove(dir);
            if p.waits_for.is_empty() {
                apply(&mut s.durable_entries, &p.op);
            } else {
                still.push(p);
            }
        }
        s.pending_entries = still;
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> std::io::Result<Option<LockGuard>> {
        let mut s = self.alive()?;
        if !s.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        })))
    }
}

impl SimFile {
    fn writable(&self) -> Result<(), Error> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::from_raw_os_error(9)) // EBADF, as a write to an O_RDONLY file
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        let mut s = self.fs.sync_op()?;
        let now = s.data.get(&self.inode).cloned().unwrap_or_default();
        s.durable_data.insert(self.inode, now);
        let inode = self.inode;
        s.pending_writes.retain(|w| w.inode() != inode);
        Ok(())
    }
}

impl IoFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let s = self.fs.alive()?;
        let data = s.data.get(&self.inode).map(Vec::as_slice).unwrap_or(&[]);
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    /// Records one write of all of `buf` (a short write is not modelled).
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        self.writable()?;
        let mut s = self.fs.op()?;
        write_at(s.data.entry(self.inode).or_default(), offset as usize, buf);
        s.pending_writes.push(PendingWrite::Write {
            inode: self.inode,
            offset: offset as usize,
            bytes: buf.to_vec(),
        });
        Ok(buf.len())
    }

    fn size(&self) -> std::io::Result<u64> {
        let s = self.fs.alive()?;
        Ok(s.data.get(&self.inode).map_or(0, |d| d.len() as u64))
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.writable()?;
        let mut s = self.fs.op()?;
        s.data
            .entry(self.inode)
            .or_default()
            .resize(len as usize, 0);
        s.pending_writes.push(PendingWrite::SetLen {
            inode: self.inode,
            len: len as usize,
        });
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> std::io::Result<()> {
        self.sync()
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

    fn write(fs: &SimFs, path: &str, bytes: &[u8]) -> Box<dyn IoFile> {
        let f = fs.open(Path::new(path), OpenMode::CreateNew).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f
    }

    fn fs_with_dir() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs
    }

    #[test]
    fn unsynced_data_and_entries_are_lost() {
        let fs = fs_with_dir();
        let _f = write(&fs, "/d/a", b"hello");
        assert_eq!(fs.read(Path::new("/d/a")).as_deref(), Some(&b"hello"[..]));
        assert_eq!(fs.crash(Crash::DropUnsynced).read(Path::new("/d/a")), None);
    }

    #[test]
    fn a_synced_file_without_its_directory_sync_has_no_name() {
        let fs = fs_with_dir();
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
        let fs = fs_with_dir();
        let _f = write(&fs, "/d/a", b"hello");
        fs.sync_dir(Path::new("/d")).unwrap();
        let image = fs.crash(Crash::DropUnsynced);
        assert_eq!(image.read(Path::new("/d/a")).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_file_in_an_unsynced_directory_is_lost_with_it() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d/e")).unwrap();
        let f = write(&fs, "/d/e/a", b"hello");
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("/d/e")).unwrap();
        assert_eq!(
            fs.crash(Crash::DropUnsynced).read(Path::new("/d/e/a")),
            None
        );
        fs.sync_dir(Path::new("/")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        assert!(
            fs.crash(Crash::DropUnsynced)
                .read(Path::new("/d/e/a"))
                .is_some()
        );
    }

    #[test]
    fn subsets_keep_some_unsynced_writes_and_tear_others() {
        let fs = SimFs::new();
        fs.put_durable(Path::new("/d/a"), b"");
        let f = fs.open(Path::new("/d/a"), OpenMode::ReadWrite).unwrap();
        f.write_all_at(&[7u8; 4 * SECTOR], 0).unwrap();
        let lengths: BTreeSet<usize> = (0..64)
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
    fn positional_writes_into_the_middle_are_kept_or_lost_one_by_one() {
        let fs = SimFs::new();
        fs.put_durable(Path::new("/d/a"), &[0u8; 3 * SECTOR]);
        let f = fs.open(Path::new("/d/a"), OpenMode::ReadWrite).unwrap();
        f.write_all_at(&[1u8; SECTOR], 0).unwrap();
        f.write_all_at(&[2u8; SECTOR], 2 * SECTOR as u64).unwrap();
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let got = fs
                .crash(Crash::Subset(seed))
                .read(Path::new("/d/a"))
                .unwrap();
            assert_eq!(got.len(), 3 * SECTOR);
            assert!(got[SECTOR..2 * SECTOR].iter().all(|&b| b == 0));
            seen.insert((got[0], got[2 * SECTOR]));
        }
        // The later write kept without the earlier one: out of order.
        assert!(seen.contains(&(0, 2)) && seen.contains(&(1, 0)), "{seen:?}");
        assert_eq!(
            fs.crash(Crash::DropUnsynced)
                .read(Path::new("/d/a"))
                .unwrap(),
            vec![0u8; 3 * SECTOR]
        );
    }

    #[test]
    fn set_len_is_durable_after_a_sync() {
        let fs = SimFs::new();
        fs.put_durable(Path::new("/d/a"), b"hello world");
        let f = fs.open(Path::new("/d/a"), OpenMode::ReadWrite).unwrap();
        f.set_len(5).unwrap();
        assert_eq!(f.size().unwrap(), 5);
        let before = fs
            .crash(Crash::DropUnsynced)
            .read(Path::new("/d/a"))
            .unwrap();
        assert_eq!(before, b"hello world");
        f.sync_data().unwrap();
        let after = fs
            .crash(Crash::DropUnsynced)
            .read(Path::new("/d/a"))
            .unwrap();
        assert_eq!(after, b"hello");
    }

    #[test]
    fn directory_renames_and_exchanges_move_whole_trees() {
        let fs = SimFs::new();
        fs.put_durable(Path::new("/r/state/a"), b"old");
        fs.put_durable(Path::new("/r/stage/x/a"), b"new");
        fs.exchange(Path::new("/r/state"), Path::new("/r/stage/x"))
            .unwrap();
        assert_eq!(
            fs.read(Path::new("/r/state/a")).as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(
            fs.read(Path::new("/r/stage/x/a")).as_deref(),
            Some(&b"old"[..])
        );
        fs.sync_dir(Path::new("/r")).unwrap();
        let half = fs.crash(Crash::DropUnsynced);
        assert_eq!(
            half.read(Path::new("/r/state/a")).as_deref(),
            Some(&b"old"[..])
        );
        fs.sync_dir(Path::new("/r/stage")).unwrap();
        let whole = fs.crash(Crash::DropUnsynced);
        assert_eq!(
            whole.read(Path::new("/r/state/a")).as_deref(),
            Some(&b"new"[..])
        );
        fs.rename(Path::new("/r/state"), Path::new("/r/old"))
            .unwrap();
        assert!(fs.is_dir(Path::new("/r/old")) && !fs.is_dir(Path::new("/r/state")));
        let mut names = fs.read_dir(Path::new("/r")).unwrap();
        names.sort();
        assert_eq!(names, vec![OsString::from("old"), OsString::from("stage")]);
    }

    #[test]
    fn halting_refuses_every_later_operation() {
        let fs = fs_with_dir();
        let ops = fs.ops();
        fs.halt_after(ops + 1);
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        assert!(f.write_all_at(b"x", 0).is_err());
        assert!(fs.sync_dir(Path::new("/d")).is_err());
        assert!(
            f.size().is_err(),
            "reads are refused after the power failed"
        );
        assert_eq!(fs.ops(), ops + 1);
        assert_eq!(fs.lock().data.values().map(Vec::len).sum::<usize>(), 0);
    }

    #[test]
    fn a_failed_sync_makes_nothing_durable() {
        let fs = fs_with_dir();
        let f = write(&fs, "/d/a", b"hello");
        fs.fail_next_sync();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        fs.sync_dir(Path::new("/d")).unwrap();
        let image = fs.crash(Crash::DropUnsynced);
        assert_eq!(image.read(Path::new("/d/a")).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let fs = SimFs::new();
        let guard = fs.try_lock(Path::new("/l")).unwrap();
        assert!(guard.is_some());
        assert!(fs.try_lock(Path::new("/l")).unwrap().is_none());
        drop(guard);
        assert!(fs.try_lock(Path::new("/l")).unwrap().is_some());
    }
}
