//! Key names inside a remote prefix. The whole bucket layout is here, so it reads in one place:
//!
//! ```text
//! objects/{hash[0..2]}/{hash}.{raw|zst}                 content-addressed file objects (immutable)
//! manifests/{version:020}.manifest                      signed manifests, created with PutMode::Create
//! intents/{ulid}.json                                   in-flight checkpoints (GC hints)
//! lease/{epoch:020}.lease                               lease of a writer epoch, PutMode::Create
//! lease/{epoch:020}.renewed                             its latest renewal (overwritten by its holder)
//! lease/{epoch:020}.seal                                signed seal: what existed when the epoch began
//! wal/{lineage}/{first:020}-{last:020}-{epoch:020}.batch  signed batches of shipped WAL records
//! wal/{lineage}/{first:020}-{last:020}-{epoch:020}.l{n}.batch  the same, compacted to level n >= 1
//! ```
//!
//! Numbers are zero-padded to 20 digits so lexical order is numeric order.

use crate::Lsn;

use crate::codec::Codec;
use crate::manifest::{ContentHash, LineageId};

pub(crate) const OBJECTS: &str = "objects";
pub(crate) const MANIFESTS: &str = "manifests";
pub(crate) const INTENTS: &str = "intents";
pub(crate) const LEASE: &str = "lease";
pub(crate) const WAL: &str = "wal";

pub(crate) fn object_key(hash: &ContentHash, codec: Codec) -> String {
    let hex = hash.to_hex();
    format!("{OBJECTS}/{}/{hex}.{}", &hex[..2], codec.extension())
}

pub(crate) fn parse_object_key(rel: &str) -> Option<(ContentHash, Codec)> {
    let rest = rel.strip_prefix(OBJECTS)?.strip_prefix('/')?;
    let (dir, file) = rest.split_once('/')?;
    let (hex_hash, ext) = file.split_once('.')?;
    let codec = [Codec::Raw, Codec::Zstd]
        .into_iter()
        .find(|c| c.extension() == ext)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut hash).ok()?;
    (dir.len() == 2 && hex_hash.starts_with(dir)).then_some((ContentHash(hash), codec))
}

pub(crate) fn manifest_key(version: u64) -> String {
    format!("{MANIFESTS}/{version:020}.manifest")
}

pub(crate) fn parse_manifest_key(rel: &str) -> Option<u64> {
    let name = rel
        .strip_prefix(MANIFESTS)?
        .strip_prefix('/')?
        .strip_suffix(".manifest")?;
    parse_padded(name)
}

pub(crate) fn intent_key(id: ulid::Ulid) -> String {
    format!("{INTENTS}/{id}.json")
}

/// The objects under `lease/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseObject {
    Lease,
    Renewed,
    Seal,
}

pub(crate) fn lease_key(epoch: u64, what: LeaseObject) -> String {
    let ext = match what {
        LeaseObject::Lease => "lease",
        LeaseObject::Renewed => "renewed",
        LeaseObject::Seal => "seal",
    };
    format!("{LEASE}/{epoch:020}.{ext}")
}

pub(crate) fn parse_lease_key(rel: &str) -> Option<(u64, LeaseObject)> {
    let name = rel.strip_prefix(LEASE)?.strip_prefix('/')?;
    let (num, ext) = name.split_once('.')?;
    let what = match ext {
        "lease" => LeaseObject::Lease,
        "renewed" => LeaseObject::Renewed,
        "seal" => LeaseObject::Seal,
        _ => return None,
    };
    Some((parse_padded(num)?, what))
}

/// What a shipped batch's key says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct BatchName {
    /// LSN of its first record.
    pub first: Lsn,
    /// LSN of its last record.
    pub last: Lsn,
    /// Writer epoch that shipped it.
    pub epoch: u64,
    /// Its lineage.
    pub lineage: LineageId,
    /// Compaction level: 0 for a batch as shipped, n >= 1 for one that merges consecutive
    /// objects of level n - 1 (see [`LevelPolicy`](crate::LevelPolicy)). Named by the key, not
    /// signed: it only says how the object came to be, never what it holds.
    pub level: u8,
}

/// Highest compaction level a key may name.
pub(crate) const MAX_LEVEL: u8 = 9;

pub(crate) fn wal_dir(lineage: LineageId) -> String {
    format!("{WAL}/{lineage}")
}

pub(crate) fn batch_key(b: &BatchName) -> String {
    let level = match b.level {
        0 => String::new(),
        n => format!(".l{n}"),
    };
    format!(
        "{WAL}/{}/{:020}-{:020}-{:020}{level}.batch",
        b.lineage,
        b.first.get(),
        b.last.get(),
        b.epoch
    )
}

pub(crate) fn parse_batch_key(rel: &str) -> Option<BatchName> {
    let rest = rel.strip_prefix(WAL)?.strip_prefix('/')?;
    let (lineage, file) = rest.split_once('/')?;
    let lineage: LineageId = lineage.parse().ok()?;
    let stem = file.strip_suffix(".batch")?;
    let (stem, level) = match stem.split_once('.') {
        None => (stem, 0),
        Some((stem, level)) => {
            let n = level.strip_prefix('l')?;
            // One canonical spelling per level: "l1".."l9", never "l01" or "l0".
            let level: u8 = (n.len() == 1).then(|| n.parse().ok()).flatten()?;
            (stem, (1..=MAX_LEVEL).contains(&level).then_some(level)?)
        }
    };
    let mut parts = stem.split('-');
    let first = parse_padded(parts.next()?)?;
    let last = parse_padded(parts.next()?)?;
    let epoch = parse_padded(parts.next()?)?;
    if parts.next().is_some() || first > last || first == 0 {
        return None;
    }
    Some(BatchName {
        first: Lsn::new(first),
        last: Lsn::new(last),
        epoch,
        lineage,
        level,
    })
}

fn parse_padded(s: &str) -> Option<u64> {
    (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let h = ContentHash([0xab; 32]);
        for codec in [Codec::Raw, Codec::Zstd] {
            assert_eq!(parse_object_key(&object_key(&h, codec)), Some((h, codec)));
        }
        assert_eq!(parse_manifest_key(&manifest_key(42)), Some(42));
        assert_eq!(parse_manifest_key("manifests/42.manifest"), None);
        for what in [LeaseObject::Lease, LeaseObject::Renewed, LeaseObject::Seal] {
            assert_eq!(parse_lease_key(&lease_key(7, what)), Some((7, what)));
        }
        let b = BatchName {
            first: Lsn::new(1),
            last: Lsn::new(99),
            epoch: 3,
            lineage: LineageId::generate(),
            level: 0,
        };
        assert_eq!(parse_batch_key(&batch_key(&b)), Some(b));
        for level in 1..=MAX_LEVEL {
            let l = BatchName { level, ..b };
            assert!(batch_key(&l).ends_with(&format!(".l{level}.batch")));
            assert_eq!(parse_batch_key(&batch_key(&l)), Some(l));
        }
        let base = batch_key(&b);
        for bad in [
            ".l0.batch",
            ".l10.batch",
            ".l01.batch",
            ".x1.batch",
            ".l.batch",
        ] {
            let k = base.replace(".batch", bad);
            assert_eq!(parse_batch_key(&k), None, "{k}");
        }
        assert!(manifest_key(9) < manifest_key(10));
    }
}
