//! The manifest: what a checkpoint version holds, in a canonical byte encoding that is signed whole.
//!
//! The stored object *is* the canonical encoding followed by the signature, so the bytes that are
//! verified are exactly the bytes that are read: there is no second, unsigned representation (the
//! anchors signed a checksum that left the file list out). The layout is in
//! `docs/formats/finn-checkpoint.md`; in short (all integers little-endian, `str` = `u32` length +
//! UTF-8 bytes):
//!
//! ```text
//! magic "FINNMANI" | format u16 = 1 | version u64 | created_at_ms u64 | covered_lsn u64
//! | writer_epoch u64 | lineage [16] | parent: u8 0 | u8 1 lineage [16] version u64 hash [32]
//! | previous: u8 0 | u8 1 version u64 hash [32] | encryption_key_id str | signer_key_id [16]
//! | metadata: u32 n, n x (key str, value str), keys strictly increasing
//! | files: u32 n, n x (path str, size u64, blake3 [32], codec u8, stored_size u64), paths strictly increasing
//! | signature [64] = ed25519(domain "finn-checkpoint manifest v1\0" || every byte before it)
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::Lsn;
use ulid::Ulid;

use crate::codec::Codec;
use crate::path::{CheckpointPath, PathDefect};
use crate::sign::{KEY_ID_LEN, KeyId, Keyring, SignatureError, SigningKey};

/// First bytes of every manifest object.
pub const MANIFEST_MAGIC: [u8; 8] = *b"FINNMANI";
/// Format version written by this crate; readers accept exactly the versions they know.
pub const MANIFEST_FORMAT: u16 = 1;
/// Domain-separation prefix of manifest signatures.
pub const MANIFEST_SIGNATURE_DOMAIN: &[u8] = b"finn-checkpoint manifest v1\0";
/// Largest manifest object a reader accepts (64 MiB), so a hostile object cannot exhaust memory.
pub const MAX_MANIFEST_LEN: usize = 64 << 20;
const SIGNATURE_LEN: usize = 64;

/// Identity of a line of history. A restore that continues writing keeps its lineage; a
/// deliberate fork starts a new one that records its parent.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LineageId(pub Ulid);

impl LineageId {
    /// A fresh lineage id.
    pub fn generate() -> Self {
        Self(Ulid::new())
    }
}

impl fmt::Display for LineageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for LineageId {
    type Err = ulid::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s).map(Self)
    }
}

/// BLAKE3 hash of a whole stored manifest object (body and signature): the link of the chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ManifestHash(pub [u8; 32]);

impl ManifestHash {
    /// Hash of stored manifest bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Display for ManifestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ManifestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManifestHash({self})")
    }
}

impl serde::Serialize for ManifestHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// BLAKE3 hash of a file's (uncompressed) content; names its object.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hash of in-memory content.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl serde::Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// One file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileEntry {
    /// Where the file lives inside the checkpoint.
    pub path: CheckpointPath,
    /// Length of the content in bytes.
    pub size: u64,
    /// BLAKE3 of the content; the object key is derived from it and the codec.
    pub blake3: ContentHash,
    /// How the object is stored.
    pub codec: Codec,
    /// Length of the stored object in bytes.
    pub stored_size: u64,
}

/// Link from a manifest to the one before it in its lineage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ManifestLink {
    /// Version of the previous manifest.
    pub version: u64,
    /// Hash of its stored bytes.
    pub hash: ManifestHash,
}

/// Link from the first manifest of a forked lineage to the manifest it was forked from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ParentLink {
    /// The parent lineage.
    pub lineage: LineageId,
    /// Version of the parent manifest.
    pub version: u64,
    /// Hash of the parent manifest's stored bytes.
    pub hash: ManifestHash,
}

/// The content of a manifest. Every field is covered by the signature.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    /// Checkpoint version; unique within a remote prefix, rising.
    pub version: u64,
    /// Creation time, milliseconds since the Unix epoch (writer's clock).
    pub created_at_ms: u64,
    /// The WAL LSN the checkpoint's files include (everything `<=` it).
    pub covered_lsn: Lsn,
    /// Epoch of the lease under which the manifest was published (fencing).
    pub writer_epoch: u64,
    /// Line of history the manifest belongs to.
    pub lineage: LineageId,
    /// For the first manifest of a fork: what it was forked from.
    pub parent: Option<ParentLink>,
    /// The previous manifest of the same lineage (None for a lineage's first manifest).
    pub previous: Option<ManifestLink>,
    /// Id of the key encrypting the objects; empty while encryption at rest is not used.
    pub encryption_key_id: String,
    /// Key that signed the manifest.
    pub signer: KeyId,
    /// Caller metadata (sorted by key).
    pub metadata: BTreeMap<String, String>,
    /// The files, sorted by path, paths unique.
    pub files: Vec<FileEntry>,
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What is wrong with a manifest's bytes or structure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestDefect {
    /// The object does not start with [`MANIFEST_MAGIC`].
    #[error("bad magic")]
    BadMagic,
    /// The format version is not one this reader knows.
    #[error("unknown format version {0}")]
    UnknownFormat(u16),
    /// The bytes end in the middle of a field.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Where the missing field starts.
        offset: usize,
    },
    /// Bytes follow the signature.
    #[error("{extra} unexpected bytes after the signature")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The object is larger than [`MAX_MANIFEST_LEN`].
    #[error("manifest is {len} bytes, more than the {MAX_MANIFEST_LEN} accepted")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// An optional field's tag byte is neither 0 nor 1.
    #[error("bad option tag {tag} at byte {offset}")]
    BadTag {
        /// The tag.
        tag: u8,
        /// Where.
        offset: usize,
    },
    /// A string is not UTF-8.
    #[error("string at byte {offset} is not UTF-8")]
    NotUtf8 {
        /// Where.
        offset: usize,
    },
    /// A codec byte is unknown.
    #[error("unknown codec {code} for {path}")]
    UnknownCodec {
        /// The code.
        code: u8,
        /// The file.
        path: String,
    },
    /// A file path is invalid.
    #[error("file path {path:?} is invalid: {defect}")]
    BadPath {
        /// The path as stored.
        path: String,
        /// What is wrong with it.
        defect: PathDefect,
    },
    /// Files or metadata keys are not strictly increasing (unsorted or duplicated).
    #[error("{what} entries are not strictly increasing at {key:?}")]
    NotSorted {
        /// "files" or "metadata".
        what: &'static str,
        /// The offending key.
        key: String,
    },
    /// A raw file claims a stored size different from its size.
    #[error("raw file {path} has stored size {stored_size} but size {size}")]
    RawSizeMismatch {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// Its stored size.
        stored_size: u64,
    },
    /// The previous-link points at or above this version.
    #[error("previous link to version {previous} is not below version {version}")]
    BadPreviousVersion {
        /// This manifest's version.
        version: u64,
        /// The linked version.
        previous: u64,
    },
    /// Version 0 is reserved for "nothing published".
    #[error("version 0 is reserved")]
    ZeroVersion,
}

impl Manifest {
    /// The canonical body: every field, in the documented order. The signature covers exactly this.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.files.len() * 96);
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_FORMAT.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.created_at_ms.to_le_bytes());
        out.extend_from_slice(&self.covered_lsn.get().to_le_bytes());
        out.extend_from_slice(&self.writer_epoch.to_le_bytes());
        out.extend_from_slice(&self.lineage.0.to_bytes());
        match &self.parent {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.lineage.0.to_bytes());
                out.extend_from_slice(&p.version.to_le_bytes());
                out.extend_from_slice(&p.hash.0);
            }
        }
        match &self.previous {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.version.to_le_bytes());
                out.extend_from_slice(&p.hash.0);
            }
        }
        put_str(&mut out, &self.encryption_key_id);
        out.extend_from_slice(&self.signer.0);
        out.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            put_str(&mut out, f.path.as_str());
            out.extend_from_slice(&f.size.to_le_bytes());
            out.extend_from_slice(&f.blake3.0);
            out.push(f.codec.code());
            out.extend_from_slice(&f.stored_size.to_le_bytes());
        }
        out
    }

    /// Signs the manifest with `key` (setting [`Manifest::signer`]) and returns the stored bytes.
    pub fn sign(mut self, key: &SigningKey) -> SignedManifest {
        self.signer = key.id();
        let mut bytes = self.encode_body();
        let signature = key.sign(MANIFEST_SIGNATURE_DOMAIN, &bytes);
        bytes.extend_from_slice(&signature);
        let hash = ManifestHash::of(&bytes);
        SignedManifest {
            manifest: self,
            bytes,
            hash,
        }
    }

    /// Parses stored bytes and checks structure (not the signature).
    pub fn decode(bytes: &[u8]) -> Result<(Manifest, [u8; SIGNATURE_LEN]), ManifestDefect> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestDefect::TooLarge { len: bytes.len() });
        }
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8)? != MANIFEST_MAGIC {
            return Err(ManifestDefect::BadMagic);
        }
        let format = r.u16()?;
        if format != MANIFEST_FORMAT {
            return Err(ManifestDefect::UnknownFormat(format));
        }
        let version = r.u64()?;
        if version == 0 {
            return Err(ManifestDefect::ZeroVersion);
        }
        let created_at_ms = r.u64()?;
        let covered_lsn = Lsn::new(r.u64()?);
        let writer_epoch = r.u64()?;
        let lineage = LineageId(r.ulid()?);
        let parent = match r.tag()? {
            false => None,
            true => Some(ParentLink {
                lineage: LineageId(r.ulid()?),
                version: r.u64()?,
                hash: ManifestHash(r.array()?),
            }),
        };
        let previous = match r.tag()? {
            false => None,
            true => Some(ManifestLink {
                version: r.u64()?,
                hash: ManifestHash(r.array()?),
            }),
        };
        if let Some(p) = &previous
            && p.version >= version
        {
            return Err(ManifestDefect::BadPreviousVersion {
                version,
                previous: p.version,
            });
        }
        let encryption_key_id = r.string()?;
        let signer = KeyId(r.array::<KEY_ID_LEN>()?);
        let n_meta = r.u32()?;
        let mut metadata = BTreeMap::new();
        let mut last_key: Option<String> = None;
        for _ in 0..n_meta {
            let k = r.string()?;
            let v = r.string()?;
            if last_key.as_ref().is_some_and(|last| *last >= k) {
                return Err(ManifestDefect::NotSorted {
                    what: "metadata",
                    key: k,
                });
            }
            last_key = Some(k.clone());
            metadata.insert(k, v);
        }
        let n_files = r.u32()?;
        // Each entry needs at least 53 bytes, so a huge count in a small object fails fast.
        let mut files = Vec::with_capacity((n_files as usize).min(r.remaining() / 53));
        for _ in 0..n_files {
            let raw_path = r.string()?;
            let size = r.u64()?;
            let blake3 = ContentHash(r.array()?);
            let code = r.u8()?;
            let stored_size = r.u64()?;
            let path = CheckpointPath::new(raw_path.clone()).map_err(|defect| {
                ManifestDefect::BadPath {
                    path: raw_path.clone(),
                    defect,
                }
            })?;
            let codec = Codec::from_code(code).ok_or_else(|| ManifestDefect::UnknownCodec {
                code,
                path: raw_path.clone(),
            })?;
            if codec == Codec::Raw && stored_size != size {
                return Err(ManifestDefect::RawSizeMismatch {
                    path: raw_path,
                    size,
                    stored_size,
                });
            }
            if files
                .last()
                .is_some_and(|last: &FileEntry| last.path >= path)
            {
                return Err(ManifestDefect::NotSorted {
                    what: "files",
                    key: raw_path,
                });
            }
            files.push(FileEntry {
                path,
                size,
                blake3,
                codec,
                stored_size,
            });
        }
        let signature = r.array::<SIGNATURE_LEN>()?;
        if r.remaining() != 0 {
            return Err(ManifestDefect::TrailingBytes {
                extra: r.remaining(),
            });
        }
        let manifest = Manifest {
            version,
            created_at_ms,
            covered_lsn,
            writer_epoch,
            lineage,
            parent,
            previous,
            encryption_key_id,
            signer,
            metadata,
            files,
        };
        Ok((manifest, signature))
    }

    /// Sum of the files' sizes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The entry for `path`, if any.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

/// A manifest together with its stored bytes (body + signature) and their hash.
#[derive(Clone, Debug)]
pub struct SignedManifest {
    manifest: Manifest,
    bytes: Vec<u8>,
    hash: ManifestHash,
}

/// Why stored manifest bytes were not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestRejection {
    /// The bytes are malformed.
    #[error("malformed manifest: {0}")]
    Malformed(#[source] ManifestDefect),
    /// The signature is missing from the keyring, revoked, or wrong.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl SignedManifest {
    /// Parses stored bytes and verifies the signature against `keyring`.
    pub fn verify(bytes: Vec<u8>, keyring: &Keyring) -> Result<SignedManifest, ManifestRejection> {
        let (manifest, signature) =
            Manifest::decode(&bytes).map_err(ManifestRejection::Malformed)?;
        let body = &bytes[..bytes.len() - SIGNATURE_LEN];
        keyring.verify(manifest.signer, MANIFEST_SIGNATURE_DOMAIN, body, &signature)?;
        let hash = ManifestHash::of(&bytes);
        Ok(SignedManifest {
            manifest,
            bytes,
            hash,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Hash of the stored bytes (what the next manifest links to).
    pub fn hash(&self) -> ManifestHash {
        self.hash
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.bytes[self.bytes.len() - SIGNATURE_LEN..]
    }

    /// A link to this manifest.
    pub fn link(&self) -> ManifestLink {
        ManifestLink {
            version: self.manifest.version,
            hash: self.hash,
        }
    }
}

impl std::ops::Deref for SignedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        &self.manifest
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ManifestDefect> {
        if self.remaining() < n {
            return Err(ManifestDefect::Truncated { offset: self.pos });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ManifestDefect> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ManifestDefect> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, ManifestDefect> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ManifestDefect> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ManifestDefect> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn ulid(&mut self) -> Result<Ulid, ManifestDefect> {
        Ok(Ulid::from_bytes(self.array()?))
    }

    fn tag(&mut self) -> Result<bool, ManifestDefect> {
        let offset = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(ManifestDefect::BadTag { tag, offset }),
        }
    }

    fn string(&mut self) -> Result<String, ManifestDefect> {
        let len = self.u32()? as usize;
        let offset = self.pos;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| ManifestDefect::NotUtf8 { offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(files: usize) -> Manifest {
        let mut metadata = BTreeMap::new();
        metadata.insert("agent".to_owned(), "finn".to_owned());
        Manifest {
            version: 7,
            created_at_ms: 1_700_000_000_000,
            covered_lsn: Lsn::new(42),
            writer_epoch: 3,
            lineage: LineageId(Ulid::from_parts(1, 2)),
            parent: Some(ParentLink {
                lineage: LineageId(Ulid::from_parts(3, 4)),
                version: 2,
                hash: ManifestHash([9; 32]),
            }),
            previous: Some(ManifestLink {
                version: 6,
                hash: ManifestHash([8; 32]),
            }),
            encryption_key_id: String::new(),
            signer: KeyId([0; KEY_ID_LEN]),
            metadata,
            files: (0..files)
                .map(|i| FileEntry {
                    path: CheckpointPath::new(format!("dir/file-{i:03}")).unwrap(),
                    size: 100 + i as u64,
                    blake3: ContentHash([i as u8; 32]),
                    codec: Codec::Zstd,
                    stored_size: 50,
                })
                .collect(),
        }
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let key = SigningKey::generate();
        let signed = sample(3).sign(&key);
        let ring = Keyring::trusting(key.verifying_key());
        let back = SignedManifest::verify(signed.bytes().to_vec(), &ring).unwrap();
        assert_eq!(back.manifest(), signed.manifest());
        assert_eq!(back.hash(), signed.hash());
    }

    /// Every single byte of the stored manifest is protected: flipping any bit of any byte makes
    /// verification fail (by structure or by signature), so no field is left unsigned.
    #[test]
    fn every_byte_is_covered() {
        let key = SigningKey::generate();
        let ring = Keyring::trusting(key.verifying_key());
        let signed = sample(2).sign(&key);
        for i in 0..signed.bytes().len() {
            let mut bytes = signed.bytes().to_vec();
            bytes[i] ^= 0x01;
            assert!(
                SignedManifest::verify(bytes, &ring).is_err(),
                "byte {i} is not covered"
            );
        }
        let mut longer = signed.bytes().to_vec();
        longer.push(0);
        assert!(SignedManifest::verify(longer, &ring).is_err());
    }

    #[test]
    fn bad_path_is_rejected_on_read() {
        let key = SigningKey::generate();
        let mut m = sample(1);
        // Bypass construction-time validation the way a hostile writer would: edit the bytes.
        m.files[0].path = CheckpointPath::new("aa/evil").unwrap();
        let mut bytes = m.sign(&key).bytes().to_vec();
        let at = bytes.windows(7).position(|w| w == b"aa/evil").unwrap();
        bytes[at..at + 7].copy_from_slice(b"../evil");
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestDefect::BadPath {
                defect: PathDefect::ParentDir,
                ..
            })
        ));
    }

    #[test]
    fn unsorted_files_are_rejected() {
        let key = SigningKey::generate();
        let mut m = sample(2);
        m.files.swap(0, 1);
        let bytes = m.sign(&key).bytes().to_vec();
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestDefect::NotSorted { what: "files", .. })
        ));
    }
}
