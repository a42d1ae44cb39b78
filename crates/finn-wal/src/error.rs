//! The one error type of the crate, and the small `Copy` reasons a frame is rejected.

use std::path::PathBuf;

use crate::Lsn;

/// Everything that can go wrong in a [`Wal`](crate::Wal) call.
///
/// Coordinates (paths, offsets, LSNs, pids) are fields, never pre-formatted into the message;
/// underlying causes are reachable through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another [`Wal`](crate::Wal) (in this or another process) holds the directory lock.
    #[error(
        "WAL directory {dir} is locked by another writer (pid {pid:?}); stop it or open read-only"
    )]
    Locked {
        /// The WAL directory.
        dir: PathBuf,
        /// The pid recorded by the holder, if its pid file could be read. Diagnostic only.
        pid: Option<u32>,
    },
    /// An earlier write or fdatasync failed; nothing more is written until the WAL is reopened.
    #[error(
        "WAL is poisoned by an earlier write or fsync failure; reopen it to re-verify the tail"
    )]
    Poisoned,
    /// The WAL was opened with [`Wal::open_read_only`](crate::Wal::open_read_only).
    #[error("WAL is open read-only")]
    ReadOnly,
    /// A frame or segment header failed its check where the [`RecoveryMode`](crate::RecoveryMode)
    /// allows no repair, or damage was found while reading.
    #[error("segment {segment} is corrupt at byte {offset}")]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the damaged frame or header inside the segment.
        offset: u64,
        /// What exactly failed.
        #[source]
        kind: Corruption,
    },
    /// A [`batch`](crate::batch) encoding failed its check.
    #[error("record batch is corrupt at byte {offset}")]
    CorruptBatch {
        /// Byte offset inside the encoded batch.
        offset: u64,
        /// What exactly failed.
        #[source]
        kind: Corruption,
    },
    /// An I/O error, with the path it happened on.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// Appends are refused because the WAL or its filesystem crossed a critical threshold.
    /// Nothing already written is affected; prune checkpointed segments or free space.
    #[error(
        "disk pressure is critical ({reason}: WAL holds {wal_bytes} bytes, filesystem has {free_bytes:?} bytes free); prune checkpointed segments or free space"
    )]
    DiskPressureCritical {
        /// Which threshold was crossed.
        reason: PressureReason,
        /// Bytes of records currently held by the WAL.
        wal_bytes: u64,
        /// Free bytes available to this user on the WAL's filesystem, if known.
        free_bytes: Option<u64>,
    },
    /// A record, key or batch does not fit the format's or the segment's limits.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An LSN argument is not acceptable for this call.
    #[error("LSN {lsn} is not valid here: {reason}")]
    InvalidLsn {
        /// The offending LSN.
        lsn: Lsn,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A record is not well formed (for example a `Put` without a key).
    #[error("invalid record: {reason}")]
    InvalidRecord {
        /// Why it was refused.
        reason: &'static str,
    },
    /// An [`Options`](crate::Options) value is out of range.
    #[error("invalid option {field}: {reason}")]
    InvalidOptions {
        /// The field name.
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(segment: impl Into<PathBuf>, offset: u64, kind: Corruption) -> Self {
        Error::Corrupt {
            segment: segment.into(),
            offset,
            kind,
        }
    }
}

/// Which disk-pressure threshold rejected an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum PressureReason {
    /// The WAL's own size reached [`Options::wal_size_critical`](crate::Options::wal_size_critical).
    WalSize,
    /// Free space fell to [`Options::free_space_critical`](crate::Options::free_space_critical).
    FreeSpace,
}

impl std::fmt::Display for PressureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PressureReason::WalSize => "WAL size",
            PressureReason::FreeSpace => "free space",
        })
    }
}

/// Why a frame or header was rejected: small, `Copy` and matchable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The stored CRC-32 does not match the bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC computed over the frame.
        computed: u32,
    },
    /// The frame claims more bytes than the segment holds.
    #[error("frame says {expected} bytes but {available} remain")]
    Truncated {
        /// Bytes the frame header announces.
        expected: u64,
        /// Bytes left in the segment.
        available: u64,
    },
    /// The frame passed its CRC but its contents are not a valid record encoding.
    #[error("frame body is malformed")]
    Malformed,
    /// A record key is not UTF-8.
    #[error("record key is not UTF-8")]
    KeyNotUtf8,
    /// A record carries a kind code this version does not know.
    #[error("unknown record kind code {code:#06x}")]
    UnknownKind {
        /// The stored code.
        code: u16,
    },
    /// A record's LSN does not follow the previous one.
    #[error("LSN {found} does not follow {previous}")]
    LsnOrder {
        /// LSN of the previous record (or the segment's lower bound).
        previous: u64,
        /// LSN found.
        found: u64,
    },
    /// A zero frame header (the end marker) is followed by non-zero bytes.
    #[error("non-zero bytes after the end-of-log marker")]
    DataAfterEnd,
    /// The segment header is missing, has the wrong magic, or fails its CRC.
    #[error("segment header is invalid")]
    BadHeader,
    /// The segment header names a format version this crate cannot read.
    #[error("unsupported segment format version {version}")]
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// A segment's seal disagrees with the records it describes (found by
    /// [`Wal::verify`](crate::Wal::verify)).
    #[error("segment seal disagrees with its records")]
    SealMismatch,
    /// The segment file name disagrees with the first LSN in its header.
    #[error("file name says first LSN {name}, header says {header}")]
    NameMismatch {
        /// LSN parsed from the file name.
        name: u64,
        /// LSN stored in the header.
        header: u64,
    },
}
