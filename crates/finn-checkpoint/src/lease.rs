//! Fencing: one writer per remote prefix, enforced through the store itself.
//!
//! A writer owns the prefix through a *lease epoch*. Acquiring means creating
//! `lease/{E+1}.lease` with `PutMode::Create` (so exactly one contender wins epoch E+1; this works
//! on every backend, including LocalFileSystem, which has no `PutMode::Update`). The holder then
//! lists what exists and creates a signed *seal* `lease/{E+1}.seal` recording the highest manifest
//! version and the highest shipped LSN present. Readers use seals to fence: a manifest of an older
//! epoch with a version above a later seal's mark, or a shipped batch of an older epoch ending
//! above a later seal's LSN, was written by a zombie after the takeover and is ignored.
//!
//! Writers check the lease before and after every manifest publish and every shipped batch. A
//! zombie therefore finds out on its next write and stops with [`Error::Fenced`]; if its write
//! landed in between, readers ignore it because of the seal.
//!
//! Liveness: a lease lives `ttl` after its creation or its latest renewal
//! (`lease/{E}.renewed`, overwritten by the holder only). A new writer takes over a live lease
//! only when told to ([`Takeover::Force`], a rolling deploy); otherwise it waits for expiry.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ulid::Ulid;

use crate::Lsn;
use crate::error::Error;
use crate::layout::{self, LeaseObject};
use crate::remote::{Created, Remote};
use crate::sign::{KEY_ID_LEN, KeyId, Keyring, SigningKey};

/// Default lease time-to-live.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// What to do when another writer holds a live lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Takeover {
    /// Fail with [`Error::LeaseHeld`] until the lease expires.
    #[default]
    IfExpired,
    /// Take over now; the old holder is fenced off on its next write.
    Force,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct LeaseBody {
    pub(crate) format: u32,
    pub(crate) epoch: u64,
    pub(crate) holder: Ulid,
    pub(crate) acquired_at_ms: u64,
    pub(crate) ttl_ms: u64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct RenewedBody {
    pub(crate) holder: Ulid,
    pub(crate) renewed_at_ms: u64,
}

/// A verified seal: what existed when `epoch` began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seal {
    /// The epoch that sealed.
    pub epoch: u64,
    /// Highest manifest version present when it sealed.
    pub manifest_high_water: u64,
    /// Highest shipped LSN present when it sealed.
    pub shipped_high_water: Lsn,
}

const SEAL_MAGIC: [u8; 8] = *b"FINNSEAL";
const SEAL_FORMAT: u16 = 1;
const SEAL_DOMAIN: &[u8] = b"finn-checkpoint seal v1\0";
const SEAL_BODY_LEN: usize = 8 + 2 + 8 + 16 + 8 + 8 + 8 + KEY_ID_LEN;

fn encode_seal(seal: &Seal, holder: Ulid, key: &SigningKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_BODY_LEN + 64);
    out.extend_from_slice(&SEAL_MAGIC);
    out.extend_from_slice(&SEAL_FORMAT.to_le_bytes());
    out.extend_from_slice(&seal.epoch.to_le_bytes());
    out.extend_from_slice(&holder.to_bytes());
    out.extend_from_slice(&seal.manifest_high_water.to_le_bytes());
    out.extend_from_slice(&seal.shipped_high_water.get().to_le_bytes());
    out.extend_from_slice(&now_ms().to_le_bytes());
    out.extend_from_slice(&key.id().0);
    let sig = key.sign(SEAL_DOMAIN, &out);
    out.extend_from_slice(&sig);
    out
}

fn decode_seal(bytes: &[u8], keyring: &Keyring) -> Option<(Seal, Ulid)> {
    if bytes.len() != SEAL_BODY_LEN + 64 || bytes[..8] != SEAL_MAGIC {
        return None;
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if u16::from_le_bytes([bytes[8], bytes[9]]) != SEAL_FORMAT {
        return None;
    }
    let epoch = u64_at(10);
    let mut holder = [0u8; 16];
    holder.copy_from_slice(&bytes[18..34]);
    let manifest_high_water = u64_at(34);
    let shipped_high_water = Lsn::new(u64_at(42));
    let mut signer = [0u8; KEY_ID_LEN];
    signer.copy_from_slice(&bytes[58..58 + KEY_ID_LEN]);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&bytes[SEAL_BODY_LEN..]);
    keyring
        .verify(KeyId(signer), SEAL_DOMAIN, &bytes[..SEAL_BODY_LEN], &sig)
        .ok()?;
    Some((
        Seal {
            epoch,
            manifest_high_water,
            shipped_high_water,
        },
        Ulid::from_bytes(holder),
    ))
}

/// Fencing state of a prefix as seen by a reader or writer: current epoch and verified seals.
#[derive(Clone, Debug, Default)]
pub struct Fences {
    /// Highest epoch with a lease object.
    pub current_epoch: u64,
    /// Verified seals by epoch. Seals whose signature does not verify are left out (a forged
    /// seal cannot hide anything), and logged.
    pub seals: BTreeMap<u64, Seal>,
}

impl Fences {
    /// Whether a manifest of `epoch` at `version` was written after a later epoch sealed.
    pub fn manifest_fenced(&self, epoch: u64, version: u64) -> bool {
        self.seals
            .range(epoch + 1..)
            .any(|(_, s)| version > s.manifest_high_water)
    }

    /// Whether a shipped batch of `epoch` ending at `last` was written after a later epoch sealed.
    pub fn batch_fenced(&self, epoch: u64, last: Lsn) -> bool {
        self.seals
            .range(epoch + 1..)
            .any(|(_, s)| last > s.shipped_high_water)
    }

    /// Reads the `lease/` objects of `remote`.
    pub(crate) async fn load(
        remote: &Remote,
        keyring: &Keyring,
    ) -> Result<(Fences, LeaseListing), Error> {
        let listing = LeaseListing::load(remote).await?;
        let mut fences = Fences {
            current_epoch: listing.max_epoch(),
            seals: BTreeMap::new(),
        };
        for epoch in listing.seal_epochs.clone() {
            let key = remote.key(&layout::lease_key(epoch, LeaseObject::Seal));
            let Some(bytes) = remote.get(&key).await? else {
                continue;
            };
            match decode_seal(&bytes, keyring) {
                Some((seal, _)) if seal.epoch == epoch => {
                    fences.seals.insert(epoch, seal);
                }
                _ => tracing::warn!(%key, "ignoring seal that does not verify"),
            }
        }
        Ok((fences, listing))
    }
}

/// What `lease/` holds, from one listing.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeaseListing {
    pub(crate) lease_epochs: Vec<u64>,
    pub(crate) seal_epochs: Vec<u64>,
    pub(crate) renewed_epochs: Vec<u64>,
}

impl LeaseListing {
    pub(crate) async fn load(remote: &Remote) -> Result<Self, Error> {
        let mut out = LeaseListing::default();
        for meta in remote.list(layout::LEASE).await? {
            let Some(rel) = remote.relative(&meta.location) else {
                continue;
            };
            match layout::parse_lease_key(&rel) {
                Some((e, LeaseObject::Lease)) => out.lease_epochs.push(e),
                Some((e, LeaseObject::Seal)) => out.seal_epochs.push(e),
                Some((e, LeaseObject::Renewed)) => out.renewed_epochs.push(e),
                None => {}
            }
        }
        out.lease_epochs.sort_unstable();
        out.seal_epochs.sort_unstable();
        out.renewed_epochs.sort_unstable();
        Ok(out)
    }

    pub(crate) fn max_epoch(&self) -> u64 {
        self.lease_epochs.last().copied().unwrap_or(0)
    }
}

/// A held lease.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub(crate) epoch: u64,
    pub(crate) holder: Ulid,
    pub(crate) ttl: Duration,
    pub(crate) renewed_at_ms: u64,
}

/// Until when (ms) the lease of `epoch` is alive, as far as its objects say.
async fn expires_at_ms(remote: &Remote, epoch: u64) -> Result<(u64, Ulid), Error> {
    let key = remote.key(&layout::lease_key(epoch, LeaseObject::Lease));
    let bytes = remote.get(&key).await?.ok_or_else(|| Error::LeaseCorrupt {
        key: key.to_string(),
    })?;
    let body: LeaseBody = serde_json::from_slice(&bytes).map_err(|_| Error::LeaseCorrupt {
        key: key.to_string(),
    })?;
    let mut last = body.acquired_at_ms;
    let rkey = remote.key(&layout::lease_key(epoch, LeaseObject::Renewed));
    if let Some(bytes) = remote.get(&rkey).await?
        && let Ok(r) = serde_json::from_slice::<RenewedBody>(&bytes)
        && r.holder == body.holder
    {
        last = last.max(r.renewed_at_ms);
    }
    Ok((last.saturating_add(body.ttl_ms), body.holder))
}

impl Lease {
    /// Acquires the next epoch of `remote`.
    pub(crate) async fn acquire(
        remote: &Remote,
        ttl: Duration,
        takeover: Takeover,
    ) -> Result<Lease, Error> {
        let listing = LeaseListing::load(remote).await?;
        let current = listing.max_epoch();
        if current > 0 && takeover == Takeover::IfExpired {
            let (until, holder) = expires_at_ms(remote, current).await?;
            let now = now_ms();
            if until > now {
                return Err(Error::LeaseHeld {
                    epoch: current,
                    holder: holder.to_string(),
                    remaining: Duration::from_millis(until - now),
                });
            }
        }
        let epoch = current + 1;
        let holder = Ulid::new();
        let at = now_ms();
        let body = LeaseBody {
            format: 1,
            epoch,
            holder,
            acquired_at_ms: at,
            ttl_ms: ttl.as_millis() as u64,
        };
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let key = remote.key(&layout::lease_key(epoch, LeaseObject::Lease));
        match remote.put_create(&key, bytes).await {
            Ok(Created::Yes) => {}
            Ok(Created::AlreadyExists) => {
                // Our create may have landed with its answer lost; the holder id tells.
                let won = remote
                    .get(&key)
                    .await?
                    .and_then(|b| serde_json::from_slice::<LeaseBody>(&b).ok())
                    .is_some_and(|b| b.holder == holder);
                if !won {
                    return Err(Error::LeaseHeld {
                        epoch,
                        holder: "a concurrent contender".to_owned(),
                        remaining: ttl,
                    });
                }
            }
            Err(e) => {
                // An error may hide a create that landed: look before giving up.
                let won = remote
                    .get(&key)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<LeaseBody>(&b).ok())
                    .is_some_and(|b| b.holder == holder);
                if !won {
                    return Err(e);
                }
            }
        }
        tracing::info!(epoch, %holder, "acquired checkpoint lease");
        Ok(Lease {
            epoch,
            holder,
            ttl,
            renewed_at_ms: at,
        })
    }

    /// Writes the seal of this epoch. Called once, right after acquiring, before any data write.
    pub(crate) async fn seal(
        &self,
        remote: &Remote,
        key: &SigningKey,
        manifest_high_water: u64,
        shipped_high_water: Lsn,
    ) -> Result<Seal, Error> {
        let seal = Seal {
            epoch: self.epoch,
            manifest_high_water,
            shipped_high_water,
        };
        let bytes = Bytes::from(encode_seal(&seal, self.holder, key));
        let k = remote.key(&layout::lease_key(self.epoch, LeaseObject::Seal));
        match remote.put_create(&k, bytes).await? {
            Created::Yes => Ok(seal),
            Created::AlreadyExists => {
                // Only our own lost-answer retry can have created it: the epoch is ours alone.
                let existing = remote
                    .get(&k)
                    .await?
                    .ok_or_else(|| Error::LeaseCorrupt { key: k.to_string() })?;
                let ring = Keyring::trusting(key.verifying_key());
                match decode_seal(&existing, &ring) {
                    Some((s, holder)) if holder == self.holder => Ok(s),
                    _ => Err(Error::LeaseCorrupt { key: k.to_string() }),
                }
            }
        }
    }

    /// Checks that no later epoch exists, renewing the lease when half its TTL has passed.
    ///
    /// Without listing: a successor always creates `lease/{epoch + 1}.lease` (it numbers one
    /// above the highest epoch it lists, and ours is the highest until it exists) and seals it
    /// right after; GC removes a lease object only once its seal exists and never removes seals.
    /// So a later epoch exists exactly when one of those two objects does: two HEADs (one while
    /// the lease object stays) instead of a LIST, the most expensive request, on every check.
    pub(crate) async fn check(&mut self, remote: &Remote) -> Result<(), Error> {
        let next = self.epoch + 1;
        let successor = remote
            .head(&remote.key(&layout::lease_key(next, LeaseObject::Lease)))
            .await?
            .is_some()
            || remote
                .head(&remote.key(&layout::lease_key(next, LeaseObject::Seal)))
                .await?
                .is_some();
        if successor {
            // Rare: list once to name the current epoch in the error.
            let current = LeaseListing::load(remote)
                .await
                .map(|l| l.max_epoch())
                .unwrap_or(next)
                .max(next);
            return Err(Error::Fenced {
                epoch: self.epoch,
                current,
            });
        }
        let now = now_ms();
        if now.saturating_sub(self.renewed_at_ms) >= self.ttl.as_millis() as u64 / 2 {
            let body = RenewedBody {
                holder: self.holder,
                renewed_at_ms: now,
            };
            let k = remote.key(&layout::lease_key(self.epoch, LeaseObject::Renewed));
            remote
                .put(
                    &k,
                    Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                )
                .await?;
            self.renewed_at_ms = now;
        }
        Ok(())
    }

    /// Marks the lease expired so the next writer need not wait for the TTL.
    pub(crate) async fn release(&self, remote: &Remote) -> Result<(), Error> {
        // A renewal dated at the Unix epoch makes creation time + ttl the expiry; overwrite the
        // lease body's effect by writing a renewal that is already past.
        let body = LeaseBody {
            format: 1,
            epoch: self.epoch,
            holder: self.holder,
            acquired_at_ms: 0,
            ttl_ms: 0,
        };
        let k = remote.key(&layout::lease_key(self.epoch, LeaseObject::Lease));
        remote
            .put(
                &k,
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            )
            .await?;
        let r = remote.key(&layout::lease_key(self.epoch, LeaseObject::Renewed));
        remote.delete(&r).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_forgery() {
        let key = SigningKey::generate();
        let seal = Seal {
            epoch: 3,
            manifest_high_water: 10,
            shipped_high_water: Lsn::new(99),
        };
        let bytes = encode_seal(&seal, Ulid::new(), &key);
        let ring = Keyring::trusting(key.verifying_key());
        assert_eq!(decode_seal(&bytes, &ring).map(|s| s.0), Some(seal));
        let mut forged = bytes.clone();
        forged[34] ^= 1;
        assert!(decode_seal(&forged, &ring).is_none());
        assert!(decode_seal(&bytes, &Keyring::new()).is_none());
    }

    #[test]
    fn fencing_rules() {
        let mut f = Fences::default();
        f.seals.insert(
            2,
            Seal {
                epoch: 2,
                manifest_high_water: 5,
                shipped_high_water: Lsn::new(100),
            },
        );
        assert!(!f.manifest_fenced(1, 5));
        assert!(f.manifest_fenced(1, 6));
        assert!(!f.manifest_fenced(2, 6));
        assert!(!f.batch_fenced(1, Lsn::new(100)));
        assert!(f.batch_fenced(1, Lsn::new(101)));
        assert!(!f.batch_fenced(2, Lsn::new(500)));
    }
}
