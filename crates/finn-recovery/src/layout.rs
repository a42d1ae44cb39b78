//! Where things live in the data directory.
//!
//! ```text
//! <data_dir>/
//!   state/                      the live state directory (what checkpoints cover)
//!   wal/                        the local finn-wal directory
//!   recovery/
//!     lock                      held (File::try_lock) for the length of a cascade run
//!     boot-journal.json         the boot journal (loop_guard.rs)
//!     swap.json                 present only while a staged state is being swapped in
//!     staging/<ulid>/           a candidate state being staged and verified
//!     aside/<ulid>-<what>/      previous states, WALs and interrupted swaps (AsideRetention)
//! ```
//!
//! The state directory and the recovery directory must be on the same filesystem: the swap is a
//! `rename`, which cannot cross filesystems. The cascade checks this before it stages anything.

use std::path::{Path, PathBuf};

/// Name of the recovery directory inside the data directory.
pub const RECOVERY_DIR: &str = "recovery";
/// Name of the staging directory inside the recovery directory.
pub const STAGING_DIR: &str = "staging";
/// Name of the directory holding set-aside states inside the recovery directory.
pub const ASIDE_DIR: &str = "aside";
/// Name of the lock file inside the recovery directory.
pub const LOCK_FILE: &str = "lock";
/// Name of the swap record inside the recovery directory.
pub const SWAP_RECORD: &str = "swap.json";
/// Default name of the state directory inside the data directory.
pub const DEFAULT_STATE_DIR: &str = "state";
/// Default name of the WAL directory inside the data directory.
pub const DEFAULT_WAL_DIR: &str = "wal";

/// Paths of a data directory: `state/`, `wal/` and `recovery/` (`lock`, `boot-journal.json`,
/// `swap.json`, `staging/<ulid>/`, `aside/<ulid>-<what>/`). `state/` and `recovery/` must share
/// a filesystem (the swap is a rename).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    data_dir: PathBuf,
    state_dir: PathBuf,
    wal_dir: PathBuf,
}

impl Layout {
    /// The default layout under `data_dir`: `state/`, `wal/`, `recovery/`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            state_dir: data_dir.join(DEFAULT_STATE_DIR),
            wal_dir: data_dir.join(DEFAULT_WAL_DIR),
            data_dir,
        }
    }

    /// Uses another state directory (it must be on the data directory's filesystem).
    pub fn with_state_dir(mut self, state_dir: impl Into<PathBuf>) -> Self {
        self.state_dir = state_dir.into();
        self
    }

    /// Uses another WAL directory.
    pub fn with_wal_dir(mut self, wal_dir: impl Into<PathBuf>) -> Self {
        self.wal_dir = wal_dir.into();
        self
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The live state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The local WAL directory.
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// `<data_dir>/recovery`.
    pub fn recovery_dir(&self) -> PathBuf {
        self.data_dir.join(RECOVERY_DIR)
    }

    /// `<data_dir>/recovery/boot-journal.json`.
    pub fn journal_path(&self) -> PathBuf {
        self.recovery_dir().join(crate::loop_guard::JOURNAL_FILE)
    }

    /// `<data_dir>/recovery/staging`.
    pub fn staging_root(&self) -> PathBuf {
        self.recovery_dir().join(STAGING_DIR)
    }

    /// `<data_dir>/recovery/aside`.
    pub fn aside_root(&self) -> PathBuf {
        self.recovery_dir().join(ASIDE_DIR)
    }

    /// `<data_dir>/recovery/swap.json`.
    pub fn swap_record(&self) -> PathBuf {
        self.recovery_dir().join(SWAP_RECORD)
    }

    /// `<data_dir>/recovery/lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.recovery_dir().join(LOCK_FILE)
    }
}
