//! The physical limit: what the disk and kernel allow with no log format at all.
//!
//! `write` + `fdatasync` of the record's bytes into a preallocated, zero-filled, fsynced file
//! (so `fdatasync` never commits metadata), from one thread. Group commit's limit is the same
//! loop writing N records with one `pwrite` and one `fdatasync`: the best any group commit of
//! N writers can do, since it needs at least one sync per group.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A preallocated file written in a ring, so a long benchmark never extends it.
pub struct Prealloc {
    file: File,
    size: u64,
    offset: u64,
}

impl Prealloc {
    /// Creates `path` zero-filled to `size` bytes and makes it (and its directory entry) durable.
    pub fn create(path: &Path, size: u64) -> Prealloc {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .expect("create the baseline file");
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])
                .expect("zero-fill the baseline file");
            left -= n as u64;
        }
        file.sync_all().expect("sync the baseline file");
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .expect("sync the baseline directory");
        }
        Prealloc {
            file,
            size,
            offset: 0,
        }
    }

    /// Writes `bytes` at the next offset (wrapping to the start at the end).
    pub fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if self.offset + len > self.size {
            self.offset = 0;
        }
        self.file
            .write_all_at(bytes, self.offset)
            .expect("write the baseline file");
        self.offset += len;
    }

    /// `fdatasync`.
    pub fn sync(&self) {
        self.file.sync_data().expect("fdatasync the baseline file");
    }
}

/// Reads every file under `dir` sequentially in 1 MiB reads; returns the bytes read. The
/// physical limit of any replay: the bytes have to come in.
pub fn read_dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 20];
    for path in files_under(dir) {
        let mut f = File::open(&path).expect("open for reading");
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    std::hint::black_box(&buf);
    total
}

/// Every regular file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list directory") {
            let entry = entry.expect("directory entry");
            let ty = entry.file_type().expect("file type");
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Drops the page cache of every file under `dir` (after making it durable, so the pages are
/// clean and can go): `posix_fadvise(POSIX_FADV_DONTNEED)` on our own files only, no global
/// `drop_caches`.
pub fn evict(dir: &Path) {
    for path in files_under(dir) {
        let f = File::open(&path).expect("open for eviction");
        f.sync_all().expect("sync before eviction");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)
            .expect("posix_fadvise DONTNEED");
    }
}

/// Copies every file under `from` to the same relative path under `to`, without syncing.
pub fn copy_tree(from: &Path, to: &Path) -> u64 {
    let mut total = 0;
    for path in files_under(from) {
        let rel = path.strip_prefix(from).expect("file under the tree");
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("create directories");
        }
        total += std::fs::copy(&path, &dest).expect("copy file");
    }
    total
}

/// Copies the tree and makes it durable: `fdatasync` of each file and `fsync` of each
/// directory. What any restore has to do at least.
pub fn copy_tree_durably(from: &Path, to: &Path) -> u64 {
    let total = copy_tree(from, to);
    let mut dirs = std::collections::BTreeSet::new();
    for path in files_under(to) {
        File::open(&path)
            .and_then(|f| f.sync_data())
            .expect("fdatasync copied file");
        if let Some(parent) = path.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    dirs.insert(to.to_path_buf());
    for d in dirs {
        File::open(&d)
            .and_then(|f| f.sync_all())
            .expect("fsync directory");
    }
    total
}
