//! WAL shipping: durable WAL records go to the object store in signed, compressed batches, so a
//! restore can replay *every* record after a checkpoint (the anchors restored only the newest
//! batch).
//!
//! Batch object (`wal/{lineage}/{first:020}-{last:020}-{epoch:020}.batch`), little-endian:
//!
//! ```text
//! magic "FINNSHIP" | format u16 = 1 | lineage [16] | epoch u64 | first u64 | last u64 | prev u64
//! | count u32 | codec u8 | payload_len u64 | payload (codec-encoded finn_wal::batch bytes)
//! | signer_key_id [16] | signature [64] = ed25519("finn-checkpoint wal batch v1\0" || all before)
//! ```
//!
//! `prev` is the last LSN this lineage had shipped before the batch. A reader checks that the
//! batches it replays chain through `prev`, so a deleted batch in the middle is detected instead
//! of silently skipped.

use bytes::Bytes;

use crate::Lsn;
use crate::checkpoint::Checkpointer;
use crate::codec::{self, Codec};
use crate::error::Error;
use crate::layout::{self, BatchName};
use crate::manifest::LineageId;
use crate::read::{Reader, scan_batches};
use crate::remote::Created;
use crate::sign::{KEY_ID_LEN, KeyId, Keyring, SigningKey};

const BATCH_MAGIC: [u8; 8] = *b"FINNSHIP";
const BATCH_FORMAT: u16 = 1;
const BATCH_DOMAIN: &[u8] = b"finn-checkpoint wal batch v1\0";
const HEADER_LEN: usize = 8 + 2 + 16 + 8 + 8 + 8 + 8 + 4 + 1 + 8;
/// Largest decoded batch payload a reader accepts (256 MiB).
const MAX_PAYLOAD: u64 = 256 << 20;

/// What one [`Checkpointer::ship_wal`] call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShipReport {
    /// Batches uploaded.
    pub batches: usize,
    /// Records uploaded.
    pub records: usize,
    /// Stored bytes uploaded.
    pub bytes: u64,
    /// Highest LSN confirmed shipped for this lineage. The WAL may prune up to
    /// `min(checkpointed, shipped)`.
    pub shipped_lsn: Lsn,
}

/// A verified, decoded batch.
#[derive(Clone, Debug)]
pub struct ShippedBatch {
    /// Its name (lineage, epoch, LSN range).
    pub name: BatchName,
    /// The last LSN shipped before it in its lineage.
    pub prev: Lsn,
    /// Its records, in LSN order.
    pub records: Vec<finn_wal::Record>,
}

fn encode_batch(
    name: &BatchName,
    prev: Lsn,
    records: &[finn_wal::Record],
    compression: crate::Compression,
    key: &SigningKey,
) -> Result<Vec<u8>, Error> {
    let raw = finn_wal::batch::encode_records(records);
    let (codec, payload) = compression.encode(&raw).map_err(|source| Error::Io {
        path: layout::batch_key(name).into(),
        source,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + KEY_ID_LEN + 64);
    out.extend_from_slice(&BATCH_MAGIC);
    out.extend_from_slice(&BATCH_FORMAT.to_le_bytes());
    out.extend_from_slice(&name.lineage.0.to_bytes());
    out.extend_from_slice(&name.epoch.to_le_bytes());
    out.extend_from_slice(&name.first.get().to_le_bytes());
    out.extend_from_slice(&name.last.get().to_le_bytes());
    out.extend_from_slice(&prev.get().to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.push(codec.code());
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&key.id().0);
    let sig = key.sign(BATCH_DOMAIN, &out);
    out.extend_from_slice(&sig);
    Ok(out)
}

/// Verifies and decodes a stored batch against the name its key gives.
fn decode_batch(
    key: &str,
    name: &BatchName,
    bytes: &[u8],
    keyring: &Keyring,
) -> Result<ShippedBatch, Error> {
    let reject = |reason: &str| Error::BatchRejected {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < HEADER_LEN + KEY_ID_LEN + 64 || bytes[..8] != BATCH_MAGIC {
        return Err(reject("bad magic or too short"));
    }
    let (body, sig) = bytes.split_at(bytes.len() - 64);
    let mut signer = [0u8; KEY_ID_LEN];
    signer.copy_from_slice(&body[body.len() - KEY_ID_LEN..]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(sig);
    keyring
        .verify(KeyId(signer), BATCH_DOMAIN, body, &signature)
        .map_err(|e| reject(&e.to_string()))?;
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
    if u16::from_le_bytes([body[8], body[9]]) != BATCH_FORMAT {
        return Err(reject("unknown format"));
    }
    let lineage = LineageId(ulid::Ulid::from_bytes(
        body[10..26].try_into().unwrap_or([0; 16]),
    ));
    let (epoch, first, last, prev) = (
        u64_at(26),
        Lsn::new(u64_at(34)),
        Lsn::new(u64_at(42)),
        Lsn::new(u64_at(50)),
    );
    let count = u32::from_le_bytes(body[58..62].try_into().unwrap_or([0; 4]));
    let codec = Codec::from_code(body[62]).ok_or_else(|| reject("unknown codec"))?;
    let raw_len = u64_at(63);
    if (BatchName {
        first,
        last,
        epoch,
        lineage,
    }) != *name
    {
        return Err(reject("header does not match key"));
    }
    if raw_len > MAX_PAYLOAD || prev >= first {
        return Err(reject("implausible header"));
    }
    let payload = &body[HEADER_LEN..body.len() - KEY_ID_LEN];
    let raw = codec::decode(codec, payload, raw_len).map_err(|source| Error::Decode {
        key: key.to_owned(),
        source,
    })?;
    let records = finn_wal::batch::decode_records(&raw).map_err(|e| reject(&e.to_string()))?;
    let ordered = records.windows(2).all(|w| w[0].lsn < w[1].lsn);
    if records.len() != count as usize
        || !ordered
        || records.first().map(|r| r.lsn) != Some(first)
        || records.last().map(|r| r.lsn) != Some(last)
    {
        return Err(reject("records do not match header"));
    }
    Ok(ShippedBatch {
        name: *name,
        prev,
        records,
    })
}

impl Checkpointer {
    /// Ships every durable WAL record of `wal` not yet shipped, in batches of at most
    /// [`CheckpointerOptions::ship_batch_records`](crate::CheckpointerOptions) records. Each
    /// batch is created with `PutMode::Create` under a key naming lineage, LSN range and writer
    /// epoch; the lease is checked before and after each, so a zombie stops with
    /// [`Error::Fenced`] and readers ignore anything it slipped in after the takeover.
    ///
    /// WAL reads are synchronous and bounded by one batch between awaits.
    ///
    /// # Cancel safety
    /// Cancelling may leave one uploaded batch unconfirmed; the next call notices it is present
    /// (same key, same bytes) and continues.
    pub async fn ship_wal(&self, wal: &finn_wal::Wal) -> Result<ShipReport, Error> {
        let mut st = self.state.lock().await;
        self.checked(&mut st).await?;
        let mut report = ShipReport {
            shipped_lsn: st.shipped,
            ..Default::default()
        };
        let durable = wal.durable_lsn();
        let max_records = self.options.ship_batch_records.max(1);
        let max_bytes = self.options.ship_batch_bytes.max(1);
        while st.shipped < durable {
            let mut records = Vec::new();
            let mut size = 0usize;
            for r in wal.iter_from(st.shipped.next())? {
                let r = r?;
                if r.lsn > durable
                    || records.len() >= max_records
                    || (size >= max_bytes && !records.is_empty())
                {
                    break;
                }
                size += r.payload.len() + r.key.as_ref().map_or(0, String::len) + 48;
                records.push(r);
            }
            let (Some(first), Some(last)) = (
                records.first().map(|r| r.lsn),
                records.last().map(|r| r.lsn),
            ) else {
                break;
            };
            if first <= st.foreign_lsn {
                return Err(Error::LsnReused {
                    lsn: first,
                    high_water: st.foreign_lsn,
                });
            }
            let name = BatchName {
                first,
                last,
                epoch: self.epoch(),
                lineage: st.lineage,
            };
            let bytes = Bytes::from(encode_batch(
                &name,
                st.shipped,
                &records,
                self.options.compression,
                &self.key,
            )?);
            let key = self.remote.key(&layout::batch_key(&name));
            self.checked(&mut st).await?;
            let put = self.remote.put_create(&key, bytes.clone()).await;
            self.checked(&mut st).await?;
            match put {
                Ok(Created::Yes) => {}
                Ok(Created::AlreadyExists) | Err(_) => {
                    let existing = self.remote.get(&key).await?;
                    if existing.as_deref() != Some(&bytes[..]) {
                        return match put {
                            Err(e) => Err(e),
                            Ok(_) => Err(Error::ShippedConflict { lsn: first }),
                        };
                    }
                }
            }
            report.batches += 1;
            report.records += records.len();
            report.bytes += bytes.len() as u64;
            st.shipped = last;
            st.high_water.lsn = st.high_water.lsn.max(last);
            report.shipped_lsn = last;
        }
        Ok(report)
    }
}

impl Reader {
    /// The shipped batches of `lineage` that readers accept (fenced-off zombie batches left
    /// out), sorted by first LSN.
    pub async fn shipped_batches(&self, lineage: LineageId) -> Result<Vec<BatchName>, Error> {
        let fences = self.fences().await?;
        Ok(scan_batches(self.remote(), Some(lineage))
            .await?
            .into_iter()
            .filter(|b| !fences.batch_fenced(b.epoch, b.last))
            .collect())
    }

    /// Downloads and verifies one batch (signature, header against key, every record CRC).
    pub async fn fetch_batch(&self, name: &BatchName) -> Result<ShippedBatch, Error> {
        let rel = layout::batch_key(name);
        let key = self.remote().key(&rel);
        let bytes = self
            .remote()
            .get(&key)
            .await?
            .ok_or_else(|| Error::ObjectMissing {
                key: key.to_string(),
            })?;
        decode_batch(&rel, name, &bytes, self.keyring())
    }

    /// Every shipped record of `lineage` with LSN greater than `after`, in LSN order: all of
    /// them, across all batches and writer epochs, verified and checked for holes (each batch's
    /// `prev` must be covered by the batches before it). Feed them to
    /// `Wal::append_replicated`.
    pub async fn shipped_after(
        &self,
        lineage: LineageId,
        after: Lsn,
    ) -> Result<Vec<finn_wal::Record>, Error> {
        let mut out: Vec<finn_wal::Record> = Vec::new();
        let mut covered = after;
        for name in self.shipped_batches(lineage).await? {
            if name.last <= after {
                continue;
            }
            let batch = self.fetch_batch(&name).await?;
            if batch.prev > covered {
                return Err(Error::ShippedGap {
                    lineage,
                    first: name.first,
                    expected_prev: batch.prev,
                    found_prev: covered,
                });
            }
            for r in batch.records {
                if r.lsn <= covered {
                    // Overlap (a batch shipped twice with other bounds): must be the same record.
                    if let Some(seen) = out.iter().rev().find(|o| o.lsn == r.lsn)
                        && seen != &r
                    {
                        return Err(Error::ShippedConflict { lsn: r.lsn });
                    }
                    continue;
                }
                covered = r.lsn;
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Replays every shipped record of `lineage` after `after` into `wal` with
    /// `Wal::append_replicated`, one batch at a time (never holding the whole log in memory), in
    /// calls of at most about `chunk_bytes` encoded bytes each (keep it below the WAL's segment
    /// size). Returns the last LSN replayed (`after` if none).
    pub async fn replay_into(
        &self,
        lineage: LineageId,
        after: Lsn,
        wal: &finn_wal::Wal,
        chunk_bytes: usize,
    ) -> Result<Lsn, Error> {
        let mut covered = after;
        for name in self.shipped_batches(lineage).await? {
            if name.last <= covered {
                continue;
            }
            let batch = self.fetch_batch(&name).await?;
            if batch.prev > covered {
                return Err(Error::ShippedGap {
                    lineage,
                    first: name.first,
                    expected_prev: batch.prev,
                    found_prev: covered,
                });
            }
            let fresh: Vec<_> = batch
                .records
                .into_iter()
                .filter(|r| r.lsn > covered)
                .collect();
            let mut chunk = Vec::new();
            let mut size = 0;
            for r in fresh {
                let len = r.payload.len() + r.key.as_ref().map_or(0, String::len) + 64;
                if !chunk.is_empty() && size + len > chunk_bytes {
                    wal.append_replicated(&chunk)?;
                    chunk.clear();
                    size = 0;
                }
                size += len;
                covered = r.lsn;
                chunk.push(r);
            }
            if !chunk.is_empty() {
                wal.append_replicated(&chunk)?;
            }
        }
        Ok(covered)
    }

    /// Highest LSN shipped for `lineage` (fenced batches excluded), or `Lsn::ZERO`.
    pub async fn shipped_high_water(&self, lineage: LineageId) -> Result<Lsn, Error> {
        Ok(self
            .shipped_batches(lineage)
            .await?
            .iter()
            .map(|b| b.last)
            .max()
            .unwrap_or(Lsn::ZERO))
    }
}
