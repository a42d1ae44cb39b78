//! Hot reload: a debounced watch of the document's parent directory.
//!
//! The directory is watched, not the file. A watch on the file follows its inode, so the first
//! save by rename-replace (what most editors and every atomic writer do) moves the watch onto the
//! old, now unlinked inode and every later change goes unseen. Directory events name the file by
//! path, so replacements, deletions and re-creations are all seen.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{EventKind, RemoveKind};
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    DebounceEventResult, DebouncedEvent, Debouncer, NoCache, RecommendedCache, new_debouncer_opt,
};

use crate::error::WatchError;
use crate::loader::{Loader, WatchBackend};
use crate::options::WatchMode;

enum Backend {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, NoCache>),
}

/// Keeps a [`Loader`] reloading on file changes; dropping it stops the watch.
///
/// Dropping waits for the watcher thread to finish (at most one debouncer tick plus a load in
/// progress), so no reload happens after the drop returns.
#[must_use = "dropping the guard stops watching the identity document"]
pub struct WatchGuard {
    backend: Option<Backend>,
    loader: Loader,
    kind: WatchBackend,
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard")
            .field("path", &self.loader.path())
            .field("backend", &self.kind)
            .finish()
    }
}

impl WatchGuard {
    /// Which mechanism this watch uses.
    pub fn backend(&self) -> WatchBackend {
        self.kind
    }

    pub(crate) fn start(loader: Loader) -> Result<Self, WatchError> {
        let path = loader.path().to_path_buf();
        let (Some(name), Some(dir)) = (path.file_name(), watch_dir(&path)) else {
            return Err(WatchError::BadPath { path });
        };
        let name = name.to_os_string();
        let mode = loader.options().watch_mode;
        let backend = select(
            mode,
            || start_native(&loader, &dir, &name),
            || start_poll(&loader, &dir, &name),
            |reason| loader.report_fallback(reason),
        )?;
        let kind = match backend {
            Backend::Native(_) => WatchBackend::Native,
            Backend::Poll(_) => WatchBackend::Poll,
        };
        loader.watch_started(kind);
        tracing::debug!(dir = %dir.display(), ?kind, "watching identity document directory");
        Ok(Self {
            backend: Some(backend),
            loader,
            kind,
        })
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        match self.backend.take() {
            Some(Backend::Native(d)) => d.stop(),
            Some(Backend::Poll(d)) => d.stop(),
            None => {}
        }
        self.loader.watch_stopped();
    }
}

/// The directory to watch: the file's parent, `.` for a bare file name.
fn watch_dir(path: &Path) -> Option<PathBuf> {
    path.file_name()?;
    Some(crate::durable::parent_dir(path))
}

/// The fallback decision, separate from notify so it can be tested with failing backends.
fn select<B>(
    mode: WatchMode,
    native: impl FnOnce() -> Result<B, WatchError>,
    poll: impl FnOnce() -> Result<B, WatchError>,
    on_fallback: impl FnOnce(WatchError),
) -> Result<B, WatchError> {
    match mode {
        WatchMode::Native => native(),
        WatchMode::Poll => poll(),
        WatchMode::Auto => match native() {
            Ok(b) => Ok(b),
            Err(reason) => {
                on_fallback(reason);
                poll()
            }
        },
    }
}

fn notify_error(dir: &Path) -> impl Fn(notify::Error) -> WatchError + '_ {
    move |e| WatchError::Notify {
        dir: dir.to_path_buf(),
        source: Arc::new(e),
    }
}

fn start_native(loader: &Loader, dir: &Path, name: &OsString) -> Result<Backend, WatchError> {
    let o = loader.options();
    let mut debouncer = new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
        o.effective_debounce(),
        Some(o.effective_tick()),
        handler(loader.clone(), dir.to_path_buf(), name.clone()),
        RecommendedCache::new(),
        notify::Config::default(),
    )
    .map_err(notify_error(dir))?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(notify_error(dir))?;
    Ok(Backend::Native(debouncer))
}

fn start_poll(loader: &Loader, dir: &Path, name: &OsString) -> Result<Backend, WatchError> {
    let o = loader.options();
    // Comparing contents catches a rewrite within the file system's mtime granularity.
    let config = notify::Config::default()
        .with_poll_interval(o.poll_interval)
        .with_compare_contents(true);
    let mut debouncer = new_debouncer_opt::<_, PollWatcher, NoCache>(
        o.effective_debounce(),
        Some(o.effective_tick()),
        handler(loader.clone(), dir.to_path_buf(), name.clone()),
        NoCache,
        config,
    )
    .map_err(notify_error(dir))?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(notify_error(dir))?;
    Ok(Backend::Poll(debouncer))
}

/// Runs on the debouncer's thread. Every outcome goes to the loader, which records it in health
/// and sends it as an event: nothing is returned into the void.
fn handler(
    loader: Loader,
    dir: PathBuf,
    name: OsString,
) -> impl FnMut(DebounceEventResult) + Send + 'static {
    move |result| match result {
        Ok(events) => {
            if events.iter().any(|e| dir_removed(e, &dir)) {
                loader.report_watch_failure(WatchError::DirectoryRemoved { dir: dir.clone() });
            }
            if events.iter().any(|e| concerns(e, &name)) {
                // A failed load is already reported by `load` itself.
                let _ = loader.load();
            }
        }
        Err(errors) => {
            for error in errors {
                loader.report_watch_failure(WatchError::Notify {
                    dir: dir.clone(),
                    source: Arc::new(error),
                });
            }
            // An error can mean lost events (e.g. an inotify queue overflow); look at the file.
            let _ = loader.load();
        }
    }
}

/// Whether a debounced event may have changed the document.
fn concerns(event: &DebouncedEvent, name: &OsString) -> bool {
    event.need_rescan()
        || event
            .paths
            .iter()
            .any(|p| p.file_name() == Some(name.as_os_str()))
}

fn dir_removed(event: &DebouncedEvent, dir: &Path) -> bool {
    matches!(
        event.kind,
        EventKind::Remove(RemoveKind::Folder | RemoveKind::Any)
    ) && event.paths.iter().any(|p| p == dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn failed() -> WatchError {
        WatchError::BadPath {
            path: PathBuf::from("x"),
        }
    }

    #[test]
    fn auto_falls_back_to_polling_and_reports_why() {
        let reported = Cell::new(false);
        let got = select(
            WatchMode::Auto,
            || Err::<&str, _>(failed()),
            || Ok("poll"),
            |_| reported.set(true),
        );
        assert_eq!(got.unwrap(), "poll");
        assert!(reported.get());
    }

    #[test]
    fn native_only_does_not_fall_back() {
        let got = select(
            WatchMode::Native,
            || Err::<&str, _>(failed()),
            || Ok("poll"),
            |_| panic!("no fallback in native mode"),
        );
        assert!(got.is_err());
    }

    #[test]
    fn auto_prefers_native() {
        let got = select(
            WatchMode::Auto,
            || Ok("native"),
            || Ok("poll"),
            |_| panic!("native worked"),
        );
        assert_eq!(got.unwrap(), "native");
    }

    #[test]
    fn bare_file_name_watches_the_current_directory() {
        assert_eq!(
            watch_dir(Path::new("BEAUVOIR.md")),
            Some(PathBuf::from("."))
        );
        assert_eq!(watch_dir(Path::new("/")), None);
    }
}
