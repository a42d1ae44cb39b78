//! Snapshots: the whole store state as of one WAL position, in one self-checking file.
//!
//! ```text
//! {"format":"finn-learning-snapshot","version":1,"lsn":812,"len":50311,"blake3":"9c0f…"}\n
//! {"learnings":[…],"transitions":[…],"collections":[…]}
//! ```
//!
//! Line one is the header: `lsn` is the last learning WAL record the body includes, `len` the body
//! length in bytes and `blake3` the hex BLAKE3 hash of the body. A file whose header, length, hash
//! or body does not check out is *damaged*: it is renamed aside (never overwritten, never deleted)
//! and the state is rebuilt from the WAL.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::Collection;
use crate::{Learning, TransitionRecord};

/// The snapshot file name inside the store directory.
pub const SNAPSHOT_FILE: &str = "learnings.snapshot";
const FORMAT: &str = "finn-learning-snapshot";
/// The snapshot format version this crate writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    lsn: u64,
    len: u64,
    blake3: String,
}

/// The state a snapshot holds.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(crate) learnings: Vec<Learning>,
    pub(crate) transitions: Vec<TransitionRecord>,
    pub(crate) collections: Vec<Collection>,
}

/// Why a snapshot (or export) file was judged damaged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// The header line is missing or not valid.
    #[error("header is missing or invalid")]
    BadHeader,
    /// The header names another format or an unknown version.
    #[error("unsupported format {format:?} version {version}")]
    Unsupported {
        /// Format named in the header.
        format: String,
        /// Version named in the header.
        version: u32,
    },
    /// The body is shorter or longer than the header says (a torn or appended file).
    #[error("body is {actual} bytes, header says {expected}")]
    Length {
        /// Length from the header.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// The body's hash does not match the header.
    #[error("body hash does not match the header")]
    Checksum,
    /// The body does not parse.
    #[error("body does not parse: {reason}")]
    Body {
        /// Parser message.
        reason: String,
    },
}

pub(crate) fn encode(lsn: u64, body: &Body) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let header = Header {
        format: FORMAT.into(),
        version: SNAPSHOT_VERSION,
        lsn,
        len: body.len() as u64,
        blake3: blake3::hash(&body).to_hex().to_string(),
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(&body);
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, Body), Damage> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(Damage::BadHeader)?;
    let header: Header = serde_json::from_slice(&bytes[..nl]).map_err(|_| Damage::BadHeader)?;
    if header.format != FORMAT || header.version != SNAPSHOT_VERSION {
        return Err(Damage::Unsupported {
            format: header.format,
            version: header.version,
        });
    }
    let body = &bytes[nl + 1..];
    if body.len() as u64 != header.len {
        return Err(Damage::Length {
            expected: header.len,
            actual: body.len() as u64,
        });
    }
    if blake3::hash(body).to_hex().as_str() != header.blake3 {
        return Err(Damage::Checksum);
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| Damage::Body {
        reason: e.to_string(),
    })?;
    Ok((header.lsn, parsed))
}

/// Renames a damaged file aside as `{name}.damaged-{ULID}` and fsyncs its directory. The bytes
/// are kept for inspection; nothing is deleted.
pub(crate) fn quarantine(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let aside = path.with_file_name(format!("{name}.damaged-{}", ulid::Ulid::new()));
    std::fs::rename(path, &aside)?;
    if let Some(dir) = path.parent() {
        finn_wal::fs::sync_dir(dir)?;
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_truncation_and_byte_flip_is_detected() {
        let bytes = encode(7, &Body::default());
        assert_eq!(decode(&bytes).map(|(l, _)| l), Ok(7));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            // A flip in the header may still leave a valid header with the same meaning only if
            // it hits insignificant JSON whitespace, of which there is none.
            assert!(decode(&b).is_err(), "flip at {i}");
        }
    }
}
