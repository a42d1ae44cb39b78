//! Signed tombstones: a manifest removed from the middle of the chain on purpose.
//!
//! Every manifest links to the previous one by hash, and a reader rejects a manifest whose
//! previous manifest is missing unless it is older than every manifest present (removed by
//! count retention). Retention with pins or a point-in-time window removes manifests *between*
//! kept ones; before it does, the lease holder writes a tombstone next to the manifest:
//!
//! ```text
//! manifests/{version:020}.deleted
//! magic "FINNTOMB" | format u16 = 1 | version u64 | manifest hash [32] | lineage [16]
//! | deleted_at_ms u64 | signer_key_id [16]
//! | signature [64] = ed25519("finn-checkpoint manifest tombstone v1\0" || all before)
//! ```
//!
//! A reader accepts a missing previous manifest when a tombstone signed by a trusted key names
//! exactly its version and hash: a deleted manifest cannot be passed off as a retention, and a
//! manifest silently lost by the store still breaks the chain.

use bytes::Bytes;

use crate::error::Error;
use crate::lease::now_ms;
use crate::manifest::{LineageId, ManifestHash};
use crate::remote::Remote;
use crate::sign::{KEY_ID_LEN, KeyId, Keyring, SigningKey};

const MAGIC: [u8; 8] = *b"FINNTOMB";
const FORMAT: u16 = 1;
const DOMAIN: &[u8] = b"finn-checkpoint manifest tombstone v1\0";
const BODY_LEN: usize = 8 + 2 + 8 + 32 + 16 + 8 + KEY_ID_LEN;

pub(crate) fn tombstone_key(version: u64) -> String {
    format!("{}/{version:020}.deleted", crate::layout::MANIFESTS)
}

/// A verified tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) version: u64,
    pub(crate) hash: ManifestHash,
    pub(crate) lineage: LineageId,
}

pub(crate) fn encode(t: &Tombstone, key: &SigningKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(BODY_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&t.version.to_le_bytes());
    out.extend_from_slice(&t.hash.0);
    out.extend_from_slice(&t.lineage.0.to_bytes());
    out.extend_from_slice(&now_ms().to_le_bytes());
    out.extend_from_slice(&key.id().0);
    let sig = key.sign(DOMAIN, &out);
    out.extend_from_slice(&sig);
    out
}

pub(crate) fn decode(bytes: &[u8], keyring: &Keyring) -> Option<Tombstone> {
    if bytes.len() != BODY_LEN + 64 || bytes[..8] != MAGIC {
        return None;
    }
    let (body, sig) = bytes.split_at(BODY_LEN);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(sig);
    let mut signer = [0u8; KEY_ID_LEN];
    signer.copy_from_slice(&body[BODY_LEN - KEY_ID_LEN..]);
    keyring
        .verify(KeyId(signer), DOMAIN, body, &signature)
        .ok()?;
    if u16::from_le_bytes([body[8], body[9]]) != FORMAT {
        return None;
    }
    let version = u64::from_le_bytes(body[10..18].try_into().ok()?);
    let hash = ManifestHash(body[18..50].try_into().ok()?);
    let lineage = LineageId(ulid::Ulid::from_bytes(body[50..66].try_into().ok()?));
    Some(Tombstone {
        version,
        hash,
        lineage,
    })
}

/// Writes the tombstone of a manifest about to be deleted.
pub(crate) async fn write(remote: &Remote, t: &Tombstone, key: &SigningKey) -> Result<(), Error> {
    let k = remote.key(&tombstone_key(t.version));
    remote
        .put(&k, Bytes::from(encode(t, key)))
        .await
        .map(|_| ())
}

/// Whether a trusted tombstone says manifest `version` with `hash` of `lineage` was removed on
/// purpose.
pub(crate) async fn removed_on_purpose(
    remote: &Remote,
    keyring: &Keyring,
    version: u64,
    hash: ManifestHash,
    lineage: LineageId,
) -> Result<bool, Error> {
    let k = remote.key(&tombstone_key(version));
    Ok(remote
        .get(&k)
        .await?
        .and_then(|b| decode(&b, keyring))
        .is_some_and(|t| t.version == version && t.hash == hash && t.lineage == lineage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let key = SigningKey::generate();
        let t = Tombstone {
            version: 7,
            hash: ManifestHash([3; 32]),
            lineage: LineageId::generate(),
        };
        let bytes = encode(&t, &key);
        let ring = Keyring::trusting(key.verifying_key());
        assert_eq!(decode(&bytes, &ring), Some(t));
        assert_eq!(decode(&bytes, &Keyring::new()), None, "untrusted signer");
        let mut forged = bytes.clone();
        forged[12] ^= 1;
        assert_eq!(decode(&forged, &ring), None);
        assert!(crate::layout::parse_manifest_key(&tombstone_key(7)).is_none());
    }
}
