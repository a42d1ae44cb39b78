//! Ed25519 keys: generation, loading (PKCS#8 PEM or raw), a keyring of trusted and revoked keys.
//!
//! Every signature made by this crate is over `domain || message`, where the domain names what is
//! signed (a manifest or a shipped WAL batch), so a signature of one kind can never be replayed as
//! the other.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};

/// Length of a [`KeyId`] in bytes.
pub const KEY_ID_LEN: usize = 16;

/// Short, stable fingerprint of a public key: the first 16 bytes of
/// `blake3::derive_key("finn-checkpoint key id v1", public_key)`. Displays as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of a raw 32-byte ed25519 public key.
    pub fn of_public_key(public_key: &[u8; 32]) -> Self {
        let full = blake3::derive_key("finn-checkpoint key id v1", public_key);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&full[..KEY_ID_LEN]);
        Self(id)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(hex_id: &str) -> Option<Self> {
        let mut id = [0u8; KEY_ID_LEN];
        hex::decode_to_slice(hex_id, &mut id).ok()?;
        Some(Self(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a key could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: i/o error")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are neither PKCS#8 / SPKI PEM, nor 32 raw bytes, nor 64 hex digits.
    #[error("key {what} is not PKCS#8 PEM, 32 raw bytes or 64 hex digits")]
    Unrecognized {
        /// Where the key came from (a path, or "bytes").
        what: String,
    },
    /// The PEM document could not be decoded.
    #[error("key {what} is not a valid ed25519 PEM document: {reason}")]
    Pem {
        /// Where the key came from.
        what: String,
        /// The decoder's message.
        reason: String,
    },
    /// The raw bytes are not a valid ed25519 public key (not a curve point).
    #[error("key {what} is not a valid ed25519 public key")]
    InvalidPublicKey {
        /// Where the key came from.
        what: String,
    },
}

/// A private signing key. Its [`KeyId`] goes into every manifest it signs.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    id: KeyId,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secret material.
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn from_dalek(inner: ed25519_dalek::SigningKey) -> Self {
        let id = KeyId::of_public_key(inner.verifying_key().as_bytes());
        Self { inner, id }
    }

    /// Parses a key from bytes: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), 32 raw seed bytes, or
    /// 64 hex digits (surrounding whitespace ignored).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        Self::parse(bytes, "bytes")
    }

    fn parse(bytes: &[u8], what: &str) -> Result<Self, KeyError> {
        if let Some(text) = pem_text(bytes) {
            return ed25519_dalek::SigningKey::from_pkcs8_pem(text)
                .map(Self::from_dalek)
                .map_err(|e| KeyError::Pem {
                    what: what.to_owned(),
                    reason: e.to_string(),
                });
        }
        raw_32(bytes)
            .map(|seed| Self::from_seed(&seed))
            .ok_or_else(|| KeyError::Unrecognized {
                what: what.to_owned(),
            })
    }

    /// Loads a key file (PKCS#8 PEM, raw or hex; see [`SigningKey::from_bytes`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// The key as a PKCS#8 PEM document (secret; the string is zeroized on drop).
    pub fn to_pkcs8_pem(&self) -> Result<SecretPem, KeyError> {
        self.inner
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(SecretPem)
            .map_err(|e| KeyError::Pem {
                what: self.id.to_string(),
                reason: e.to_string(),
            })
    }

    /// Writes the key as PKCS#8 PEM to a new file `path` (mode 0600 on Unix; fails if it exists),
    /// fsyncing the file and its directory.
    pub fn save_new(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        use std::io::Write;
        let path = path.as_ref();
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let pem = self.to_pkcs8_pem()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(pem.0.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        finn_wal::fs::sync_dir(dir).map_err(io)
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: self.inner.verifying_key(),
            id: self.id,
        }
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn sign(&self, domain: &[u8], message: &[u8]) -> [u8; 64] {
        let mut buf = Vec::with_capacity(domain.len() + message.len());
        buf.extend_from_slice(domain);
        buf.extend_from_slice(message);
        self.inner.sign(&buf).to_bytes()
    }
}

/// A PEM document holding secret key material; wiped from memory when dropped.
pub struct SecretPem(ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing<String>);

impl SecretPem {
    /// The PEM text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(..)")
    }
}

/// A public key that verifies signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
    id: KeyId,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("id", &self.id)
            .finish()
    }
}

impl VerifyingKey {
    /// Parses a public key: SPKI PEM (`-----BEGIN PUBLIC KEY-----`), 32 raw bytes, or 64 hex digits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        Self::parse(bytes, "bytes")
    }

    fn parse(bytes: &[u8], what: &str) -> Result<Self, KeyError> {
        let inner = if let Some(text) = pem_text(bytes) {
            ed25519_dalek::VerifyingKey::from_public_key_pem(text).map_err(|e| KeyError::Pem {
                what: what.to_owned(),
                reason: e.to_string(),
            })?
        } else {
            let raw = raw_32(bytes).ok_or_else(|| KeyError::Unrecognized {
                what: what.to_owned(),
            })?;
            ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| {
                KeyError::InvalidPublicKey {
                    what: what.to_owned(),
                }
            })?
        };
        Ok(Self {
            id: KeyId::of_public_key(inner.as_bytes()),
            inner,
        })
    }

    /// Loads a public key file (see [`VerifyingKey::from_bytes`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// The key as SPKI PEM.
    pub fn to_public_key_pem(&self) -> Result<String, KeyError> {
        self.inner
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyError::Pem {
                what: self.id.to_string(),
                reason: e.to_string(),
            })
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// Why a signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signer's key is not in the keyring.
    #[error("signed by unknown key {0}; add its public key to the keyring if it is yours")]
    UnknownKey(KeyId),
    /// The signer's key has been revoked.
    #[error("signed by revoked key {0}")]
    RevokedKey(KeyId),
    /// The signature does not match the signed bytes.
    #[error("signature by key {0} does not verify")]
    Invalid(KeyId),
}

/// The public keys a reader trusts, and the key ids it refuses even if trusted.
///
/// ```
/// use finn_checkpoint::{Keyring, SigningKey};
/// let old = SigningKey::generate();
/// let new = SigningKey::generate();
/// let mut keyring = Keyring::new();
/// keyring.trust(old.verifying_key());
/// keyring.trust(new.verifying_key());
/// keyring.revoke(old.id()); // a leaked key: everything it signed is refused
/// assert!(keyring.is_trusted(new.id()) && !keyring.is_trusted(old.id()));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    trusted: BTreeMap<KeyId, VerifyingKey>,
    revoked: BTreeSet<KeyId>,
}

impl Keyring {
    /// An empty keyring (trusts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring trusting exactly `key`.
    pub fn trusting(key: VerifyingKey) -> Self {
        let mut ring = Self::new();
        ring.trust(key);
        ring
    }

    /// Adds a trusted public key.
    pub fn trust(&mut self, key: VerifyingKey) -> &mut Self {
        self.trusted.insert(key.id(), key);
        self
    }

    /// Revokes a key id: signatures by it are refused even if the key is trusted.
    pub fn revoke(&mut self, id: KeyId) -> &mut Self {
        self.revoked.insert(id);
        self
    }

    /// Whether signatures by `id` would be accepted.
    pub fn is_trusted(&self, id: KeyId) -> bool {
        self.trusted.contains_key(&id) && !self.revoked.contains(&id)
    }

    pub(crate) fn verify(
        &self,
        id: KeyId,
        domain: &[u8],
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), SignatureError> {
        if self.revoked.contains(&id) {
            return Err(SignatureError::RevokedKey(id));
        }
        let key = self
            .trusted
            .get(&id)
            .ok_or(SignatureError::UnknownKey(id))?;
        let mut buf = Vec::with_capacity(domain.len() + message.len());
        buf.extend_from_slice(domain);
        buf.extend_from_slice(message);
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.inner
            .verify_strict(&buf, &signature)
            .map_err(|_| SignatureError::Invalid(id))
    }
}

fn pem_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    text.starts_with("-----BEGIN").then_some(text)
}

fn raw_32(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.len() == 32 {
        let mut out = [0u8; 32];
        out.copy_from_slice(bytes);
        return Some(out);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_raw_and_hex_round_trip() {
        let key = SigningKey::generate();
        let pem = key.to_pkcs8_pem().unwrap();
        let from_pem = SigningKey::from_bytes(pem.expose().as_bytes()).unwrap();
        assert_eq!(from_pem.id(), key.id());
        let seed = key.inner.to_bytes();
        assert_eq!(SigningKey::from_bytes(&seed).unwrap().id(), key.id());
        assert_eq!(
            SigningKey::from_bytes(hex::encode(seed).as_bytes())
                .unwrap()
                .id(),
            key.id()
        );

        let public = key.verifying_key();
        let pub_pem = public.to_public_key_pem().unwrap();
        assert_eq!(
            VerifyingKey::from_bytes(pub_pem.as_bytes()).unwrap(),
            public
        );
        assert_eq!(
            VerifyingKey::from_bytes(&public.to_bytes()).unwrap(),
            public
        );
        assert!(matches!(
            SigningKey::from_bytes(b"nonsense"),
            Err(KeyError::Unrecognized { .. })
        ));
    }

    #[test]
    fn save_new_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signer.pem");
        let key = SigningKey::generate();
        key.save_new(&path).unwrap();
        assert_eq!(SigningKey::load(&path).unwrap().id(), key.id());
        assert!(key.save_new(&path).is_err(), "save_new never overwrites");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn keyring_refuses_unknown_revoked_and_bad() {
        let key = SigningKey::generate();
        let sig = key.sign(b"d", b"msg");
        let mut ring = Keyring::new();
        assert_eq!(
            ring.verify(key.id(), b"d", b"msg", &sig),
            Err(SignatureError::UnknownKey(key.id()))
        );
        ring.trust(key.verifying_key());
        assert_eq!(ring.verify(key.id(), b"d", b"msg", &sig), Ok(()));
        assert_eq!(
            ring.verify(key.id(), b"e", b"msg", &sig),
            Err(SignatureError::Invalid(key.id()))
        );
        ring.revoke(key.id());
        assert_eq!(
            ring.verify(key.id(), b"d", b"msg", &sig),
            Err(SignatureError::RevokedKey(key.id()))
        );
    }
}
