//! A segmented, CRC-framed write-ahead log that never loses an acknowledged record.
//!
//! `finn-wal` is the bottom layer of [finn](https://docs.rs/finn); most users want that facade.
//!
//! # Example
//! ```
//! use finn_wal::{Kind, NewRecord, Options, Wal};
//! # let dir = tempfile::tempdir()?;
//! let (wal, _report) = Wal::open(dir.path(), Options::default())?;
//! let lsn = wal.append(NewRecord::put(Kind::Session, "s-1", b"hello".to_vec()))?; // after fdatasync
//! assert_eq!(wal.read(lsn)?.map(|r| r.payload), Some(b"hello".to_vec()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod codec;
mod compaction;
mod error;
pub mod fs;
mod id;
mod lock;
mod options;
mod prune;
mod reader;
mod record;
mod recovery;
mod segment;
mod status;
pub mod store;
mod wal;
mod writer;

pub use error::{Corruption, Error, PressureReason};
pub use id::{Kind, Lsn, Op};
pub use options::{
    DEFAULT_COMPACTION_GARBAGE_RATIO, DEFAULT_COMPACTION_MIN_BYTES, DEFAULT_FREE_SPACE_CRITICAL,
    DEFAULT_FREE_SPACE_WARNING, DEFAULT_MAX_SEGMENT_AGE, DEFAULT_SEGMENT_SIZE,
    DEFAULT_WAL_SIZE_CRITICAL, DEFAULT_WAL_SIZE_WARNING, Durability, Options, RecoveryMode,
    Retention,
};
pub use reader::Iter;
pub use record::{NewRecord, Record};
pub use recovery::{RecoveryReport, Repair};
pub use status::{CompactionReport, Pressure, PruneReport, Status};
pub use ulid::Ulid;
pub use wal::Wal;
