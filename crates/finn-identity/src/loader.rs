//! The loader: reads, parses, validates and publishes the active identity document, keeps the last
//! known good one when a new version is unusable, and reports every outcome.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::change_log::ChangeLog;
use crate::checksum::Checksum;
use crate::document::{BoundaryItem, BoundaryKind, IdentityDocument, Principle};
use crate::error::{ChangeLogError, LoadError, ParseError, WatchError};
use crate::options::Options;
use crate::validate::{Issue, Validation, validate};

/// The active document as published on the watch channel: `None` until a document is accepted.
pub type Current = Option<Arc<IdentityDocument>>;

/// What a successful [`Loader::load`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadOutcome {
    /// The file's content differs from the active document's; the new document is now active.
    Reloaded {
        /// Checksum of the document that was active before, if any.
        previous: Option<Checksum>,
        /// Checksum of the document now active.
        checksum: Checksum,
    },
    /// The file has the same content as the active document; nothing was published.
    Unchanged {
        /// Checksum of the active document.
        checksum: Checksum,
    },
}

/// A failure reported through [`Event::Failed`] and [`Health::last_error`].
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// A load did not produce an acceptable document; the last known good stays active.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A document became active but its change-log entry was not written (it is retried on the
    /// next load).
    #[error(transparent)]
    ChangeLog(#[from] ChangeLogError),
    /// The file watcher reported an error; a reload is attempted in case an event was lost.
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// Something that happened to the identity document, sent to every [`Loader::events`] receiver.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A document with new content became active.
    Reloaded {
        /// Checksum of the document that was active before, if any.
        previous: Option<Checksum>,
        /// Checksum of the document now active.
        checksum: Checksum,
        /// The new document's version.
        version: Option<String>,
        /// Issues the policy tolerated.
        tolerated: Vec<Issue>,
    },
    /// Something failed; see [`Failure`]. The active document is unaffected.
    Failed(Failure),
    /// Native file events could not be set up, so the watch polls instead.
    FellBackToPolling {
        /// Why native events were unavailable.
        reason: WatchError,
    },
}

/// Which mechanism a running watch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchBackend {
    /// Operating-system file events.
    Native,
    /// Periodic directory scans.
    Poll,
}

/// A snapshot of the loader's state, for health endpoints.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Health {
    /// Whether a [`WatchGuard`](crate::WatchGuard) is active.
    pub watching: bool,
    /// The backend of the most recently started watch, while watching.
    pub backend: Option<WatchBackend>,
    /// Checksum of the active document.
    pub checksum: Option<Checksum>,
    /// Version of the active document.
    pub version: Option<String>,
    /// True when the most recent load accepted the file on disk, i.e. the active document is
    /// what the file says. False before the first load and while a missing, unreadable or
    /// rejected file is being bridged by the last known good document.
    pub valid: bool,
    /// Issues of the active document that the policy tolerated.
    pub tolerated: Vec<Issue>,
    /// When a document with new content last became active.
    pub last_reload: Option<SystemTime>,
    /// When a load was last attempted.
    pub last_attempt: Option<SystemTime>,
    /// The most recent failure and when it happened; kept after later successes.
    pub last_error: Option<(SystemTime, Failure)>,
    /// Documents with new content made active since the loader was created.
    pub reloads: u64,
    /// Failures since the loader was created (loads, change-log writes, watcher errors).
    pub failures: u64,
}

struct State {
    health: Health,
    /// A document became active but its change-log entry is not written yet.
    log_pending: Option<Checksum>,
    /// Number of live watch guards.
    watchers: usize,
}

struct Inner {
    path: PathBuf,
    options: Options,
    change_log: Option<ChangeLog>,
    current: watch::Sender<Current>,
    events: broadcast::Sender<Event>,
    state: Mutex<State>,
}

/// Loads an identity document, keeps the last known good one active, and publishes it.
///
/// Cloning is cheap and every clone shares the same state. Readers take the active document from
/// [`current`](Self::current) or a [`subscribe`](Self::subscribe)d watch receiver; loads happen
/// on [`load`](Self::load) and, while a [`watch`](Self::watch) guard lives, after every debounced
/// change to the file.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("BEAUVOIR.md");
/// # std::fs::write(&path, "> **Version**: 1.0.0\n## Core Principles\n### 1. Be kind\nAlways.\n\
/// # ### What I Won't Do\n- **Lie**\n## Interaction Style\n### Calm\n## Recovery Protocol\n```\nrestore\n```\n")?;
/// use finn_identity::{Loader, Options};
/// let loader = Loader::new(&path, Options::default());
/// loader.load()?;
/// let doc = loader.current().expect("loaded");
/// assert_eq!(doc.principles[0].name, "Be kind");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// A loader for the document at `path`. Nothing is read until [`load`](Self::load) or
    /// [`watch`](Self::watch).
    pub fn new(path: impl Into<PathBuf>, options: Options) -> Self {
        let change_log = options
            .notes_path
            .as_ref()
            .map(|p| ChangeLog::new(p, options.change_log_max_entries));
        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                path: path.into(),
                change_log,
                current: watch::Sender::new(None),
                events,
                state: Mutex::new(State {
                    health: Health::default(),
                    log_pending: None,
                    watchers: 0,
                }),
                options,
            }),
        }
    }

    /// The layout the anchors' agents use: `{root}/grimoires/loa/BEAUVOIR.md`, with change-log
    /// entries in `{root}/grimoires/loa/NOTES.md`. `options.notes_path` is overwritten.
    pub fn for_agent_root(root: impl AsRef<Path>, mut options: Options) -> Self {
        let dir = root.as_ref().join("grimoires").join("loa");
        options.notes_path = Some(dir.join("NOTES.md"));
        Self::new(dir.join("BEAUVOIR.md"), options)
    }

    /// The document's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options the loader was created with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The change log, when [`Options::notes_path`] is set.
    pub fn change_log(&self) -> Option<&ChangeLog> {
        self.inner.change_log.as_ref()
    }

    /// Reads the file and makes it the active document if it parses and the policy accepts it.
    ///
    /// On any error the previously active document stays active, and the error is also reported
    /// as [`Event::Failed`] and in [`Health::last_error`]. When the content is new, the document
    /// is published on the watch channel first, then the change-log entry is written; a
    /// change-log failure does not fail the load (it is reported and retried on the next load).
    pub fn load(&self) -> Result<LoadOutcome, LoadError> {
        let mut state = self.lock();
        let now = SystemTime::now();
        state.health.last_attempt = Some(now);
        let (doc, validation) = match self.read_and_check() {
            Ok(ok) => ok,
            Err(error) => {
                state.health.valid = false;
                tracing::warn!(path = %self.inner.path.display(), %error, "identity document not loaded; keeping the last known good");
                self.fail(&mut state, Failure::Load(error.clone()), now);
                return Err(error);
            }
        };
        state.health.valid = true;
        state.health.tolerated = validation.issues.clone();
        let checksum = doc.checksum;
        let previous = state.health.checksum;
        let outcome = if previous == Some(checksum) {
            LoadOutcome::Unchanged { checksum }
        } else {
            let version = doc.metadata.version.clone();
            self.inner.current.send_replace(Some(Arc::new(doc)));
            state.health.checksum = Some(checksum);
            state.health.version = version.clone();
            state.health.last_reload = Some(now);
            state.health.reloads += 1;
            state.log_pending = Some(checksum);
            tracing::info!(
                path = %self.inner.path.display(),
                checksum = %checksum.short(),
                version = version.as_deref().unwrap_or("-"),
                "identity document reloaded"
            );
            let _ = self.inner.events.send(Event::Reloaded {
                previous,
                checksum,
                version,
                tolerated: validation.issues,
            });
            LoadOutcome::Reloaded { previous, checksum }
        };
        self.write_change_log(&mut state, previous, now);
        Ok(outcome)
    }

    /// The file's text, without parsing it or touching the active document.
    pub fn load_raw(&self) -> Result<String, LoadError> {
        let bytes = self.read_bytes()?;
        String::from_utf8(bytes).map_err(|e| LoadError::Parse {
            path: self.inner.path.clone(),
            source: ParseError::NotUtf8 {
                valid_up_to: e.utf8_error().valid_up_to(),
            },
        })
    }

    /// Whether the file differs from the active document: true when its content differs, when it
    /// cannot be read, and when nothing is active yet.
    pub fn has_changed(&self) -> bool {
        let active = self.lock().health.checksum;
        match self.read_bytes() {
            Ok(bytes) => active != Some(Checksum::of(&bytes)),
            Err(_) => true,
        }
    }

    /// The active document.
    pub fn current(&self) -> Current {
        self.inner.current.borrow().clone()
    }

    /// A receiver of the active document; `changed().await` wakes on every new document.
    pub fn subscribe(&self) -> watch::Receiver<Current> {
        self.inner.current.subscribe()
    }

    /// A receiver of [`Event`]s from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The principle numbered `number` in the active document.
    pub fn principle(&self, number: u32) -> Option<Principle> {
        self.current()?.principle(number).cloned()
    }

    /// The boundary items of one kind in the active document; empty before the first load.
    pub fn boundaries(&self, kind: BoundaryKind) -> Vec<BoundaryItem> {
        self.current()
            .map(|d| d.boundaries(kind).to_vec())
            .unwrap_or_default()
    }

    /// Validation of the active document; [`Issue::NotLoaded`] when there is none.
    pub fn validate(&self) -> Validation {
        match self.current() {
            Some(doc) => validate(&doc),
            None => Validation {
                issues: vec![Issue::NotLoaded],
            },
        }
    }

    /// A snapshot of the loader's state.
    pub fn health(&self) -> Health {
        self.lock().health.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State stays consistent across a panic in a reader of it: every update is a field store.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read_bytes(&self) -> Result<Vec<u8>, LoadError> {
        let path = &self.inner.path;
        let io_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                LoadError::NotFound { path: path.clone() }
            } else {
                LoadError::Io {
                    path: path.clone(),
                    source: source.into(),
                }
            }
        };
        let file = File::open(path).map_err(io_error)?;
        let max = self.inner.options.max_len;
        let len = file.metadata().map_err(io_error)?.len();
        if len > max {
            return Err(LoadError::TooLarge {
                path: path.clone(),
                len,
                max,
            });
        }
        // Read at most one byte past the limit, so a file that grows after the size check is
        // caught too.
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        let read = bytes.len() as u64;
        if read > max {
            return Err(LoadError::TooLarge {
                path: path.clone(),
                len: read,
                max,
            });
        }
        Ok(bytes)
    }

    fn read_and_check(&self) -> Result<(IdentityDocument, Validation), LoadError> {
        let bytes = self.read_bytes()?;
        let doc = crate::parse::parse(&bytes).map_err(|source| LoadError::Parse {
            path: self.inner.path.clone(),
            source,
        })?;
        let validation = validate(&doc);
        if self.inner.options.policy.rejects_any(&validation) {
            return Err(LoadError::Rejected {
                path: self.inner.path.clone(),
                issues: validation.issues,
            });
        }
        Ok((doc, validation))
    }

    fn write_change_log(&self, state: &mut State, previous: Option<Checksum>, now: SystemTime) {
        let (Some(log), Some(checksum)) = (&self.inner.change_log, state.log_pending) else {
            return;
        };
        let version = state.health.version.clone();
        match log.record(previous, checksum, version.as_deref(), now) {
            Ok(_) => state.log_pending = None,
            Err(error) => {
                tracing::warn!(path = %log.path().display(), %error, "identity change log not written");
                self.fail(state, Failure::ChangeLog(error), now);
            }
        }
    }

    fn fail(&self, state: &mut State, failure: Failure, at: SystemTime) {
        state.health.failures += 1;
        state.health.last_error = Some((at, failure.clone()));
        let _ = self.inner.events.send(Event::Failed(failure));
    }

    /// Reports a watcher failure (called from the watcher thread).
    pub(crate) fn report_watch_failure(&self, error: WatchError) {
        tracing::warn!(%error, "identity watcher error");
        let mut state = self.lock();
        self.fail(&mut state, Failure::Watch(error), SystemTime::now());
    }

    /// Reports that native events were unavailable and polling is used instead.
    pub(crate) fn report_fallback(&self, reason: WatchError) {
        tracing::warn!(%reason, "native file events unavailable; identity watch falls back to polling");
        let _ = self.inner.events.send(Event::FellBackToPolling { reason });
    }

    pub(crate) fn watch_started(&self, backend: WatchBackend) {
        let mut state = self.lock();
        state.watchers += 1;
        state.health.watching = true;
        state.health.backend = Some(backend);
    }

    pub(crate) fn watch_stopped(&self) {
        let mut state = self.lock();
        state.watchers = state.watchers.saturating_sub(1);
        if state.watchers == 0 {
            state.health.watching = false;
            state.health.backend = None;
        }
    }

    /// Starts watching the document's directory and reloads after every debounced change to the
    /// document (including rename-replace saves, deletion and re-creation). Loads once right
    /// away, so a change made before the watch started is not missed; that load's failure is
    /// reported like any other and does not stop the watch.
    ///
    /// Watching stops when the returned guard is dropped.
    pub fn watch(&self) -> Result<crate::watcher::WatchGuard, WatchError> {
        let guard = crate::watcher::WatchGuard::start(self.clone())?;
        let _ = self.load();
        Ok(guard)
    }
}
