//! Delta restore: keep the local files that already match the checkpoint, fetch only the rest.
//!
//! A machine that restarts with most of its state intact (or a restore to a point close to the
//! local state) need not download everything again: a local file whose size and BLAKE3 equal the
//! manifest's entry *is* that file. Only mismatching and missing files are downloaded, each
//! verified as in [`Reader::fetch_files`].

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures::StreamExt;

use crate::error::Error;
use crate::manifest::{FileEntry, Manifest};
use crate::read::{FetchReport, Reader};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// Whether `path` is a regular file (not a symlink) with exactly the entry's size and BLAKE3.
fn matches(path: &Path, entry: &FileEntry) -> Result<bool, Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(path)(e)),
    };
    if !meta.file_type().is_file() || meta.len() != entry.size {
        return Ok(false);
    }
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(*hasher.finalize().as_bytes() == entry.blake3.0)
}

/// Copies a verified local file to `dest` durably: temp file beside it, fdatasync, rename,
/// directory fsync. The content is hashed again while copying, so a file that changed after
/// the check is not installed.
fn copy_verified(src: &Path, dest: &Path, entry: &FileEntry) -> Result<(), Error> {
    let dir = dest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.finn-delta-{}", ulid::Ulid::new()));
    let result = (|| {
        let mut from = std::fs::File::open(src).map_err(io(src))?;
        let mut to = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut len = 0u64;
        loop {
            let n = from.read(&mut buf).map_err(io(src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut to, &buf[..n]).map_err(io(&tmp))?;
            len += n as u64;
        }
        let hash = hasher.finalize();
        if len != entry.size || *hash.as_bytes() != entry.blake3.0 {
            return Err(Error::HashMismatch {
                path: src.display().to_string(),
                expected: entry.blake3.to_hex(),
                actual: hash.to_hex().to_string(),
            });
        }
        to.sync_data().map_err(io(&tmp))?;
        drop(to);
        std::fs::rename(&tmp, dest).map_err(io(dest))?;
        finn_wal::fs::sync_dir(&dir).map_err(io(&dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Every regular file and symlink under `dir`, as `/`-separated relative paths.
fn local_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    Ok(out)
}

impl Reader {
    /// Delta restore: makes `dir` hold exactly the files of `manifest`, reusing local copies.
    /// Each file whose copy under `local` has the manifest's size and BLAKE3 is kept (when
    /// `local` is `dir`) or copied from there (hashed again while copying); every other file is
    /// downloaded and verified like [`Reader::fetch_files`]. When `local` is `dir`, files the
    /// manifest does not hold are removed afterwards, so the directory equals the checkpoint.
    ///
    /// [`FetchReport::downloaded`] counts the stored bytes fetched: after 1 % of the files
    /// changed, about 1 % of the bytes.
    pub async fn fetch_files_delta(
        &self,
        manifest: &Manifest,
        dir: &Path,
        local: &Path,
        parallelism: usize,
    ) -> Result<FetchReport, Error> {
        self.fetch_files_delta_counted(manifest, dir, local, parallelism, None)
            .await
    }

    pub(crate) async fn fetch_files_delta_counted(
        &self,
        manifest: &Manifest,
        dir: &Path,
        local: &Path,
        parallelism: usize,
        progress: Option<&crate::RestoreProgress>,
    ) -> Result<FetchReport, Error> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let in_place = match (dir.canonicalize(), local.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let jobs: Vec<_> = manifest
            .files
            .iter()
            .map(|f| {
                Box::pin(async move {
                    let dest = f.path.under(dir);
                    let src = f.path.under(local);
                    let entry = f.clone();
                    let reused = tokio::task::spawn_blocking(move || {
                        if !matches(&src, &entry)? {
                            return Ok::<bool, Error>(false);
                        }
                        if !in_place {
                            copy_verified(&src, &dest, &entry)?;
                        }
                        Ok(true)
                    })
                    .await
                    .map_err(|e| Error::Io {
                        path: f.path.under(local),
                        source: std::io::Error::other(e.to_string()),
                    })??;
                    if reused {
                        return Ok((f.size, 0, true));
                    }
                    let dest = f.path.under(dir);
                    if let Some(parent) = dest.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(io(parent))?;
                    }
                    if in_place
                        && std::fs::symlink_metadata(&dest).is_ok_and(|m| !m.file_type().is_file())
                    {
                        // A directory or symlink where the file belongs: out of the way first.
                        let meta = std::fs::symlink_metadata(&dest).map_err(io(&dest))?;
                        if meta.is_dir() {
                            std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
                        } else {
                            std::fs::remove_file(&dest).map_err(io(&dest))?;
                        }
                    }
                    let downloaded = self.fetch_file(f, &dest).await?;
                    Ok::<_, Error>((f.size, downloaded, false))
                })
            })
            .collect();
        let mut report = FetchReport::default();
        let mut results = futures::stream::iter(jobs).buffer_unordered(parallelism.max(1));
        while let Some(r) = results.next().await {
            let (size, downloaded, reused) = r?;
            report.files += 1;
            report.bytes += size;
            report.downloaded += downloaded;
            if let Some(p) = progress {
                p.file_done(size);
            }
            if reused {
                report.reused_files += 1;
                report.reused_bytes += size;
            }
        }
        drop(results);
        if in_place {
            let wanted: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
            let dir = dir.to_path_buf();
            let extra: Vec<PathBuf> = local_files(&dir)?
                .into_iter()
                .filter(|(rel, _)| !wanted.contains(rel.as_str()))
                .map(|(_, p)| p)
                .collect();
            for p in &extra {
                std::fs::remove_file(p).map_err(io(p))?;
                if let Some(parent) = p.parent() {
                    finn_wal::fs::sync_dir(parent).map_err(io(parent))?;
                }
            }
            report.removed_files = extra.len();
        }
        Ok(report)
    }
}
