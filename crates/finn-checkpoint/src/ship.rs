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
use crate::read::Reader;
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

pub(crate) fn encode_batch(
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
pub(crate) fn decode_batch(
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
        level: name.level,
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
            let prev = st.shipped;
            let stored = self.put_level0_batch(&mut st, prev, &records).await?;
            report.batches += 1;
            report.records += records.len();
            report.bytes += stored;
            st.shipped = last;
            st.high_water.lsn = st.high_water.lsn.max(last);
            report.shipped_lsn = last;
        }
        Ok(report)
    }

    /// Encodes `records` (the WAL right after `prev`) as one level-0 batch and creates it under
    /// the lease. An object already at its key with the same bytes (a create whose answer was
    /// lost, or a ship cancelled after the upload) counts as written; different bytes are a
    /// [`Error::ShippedConflict`]. Returns the stored size.
    pub(crate) async fn put_level0_batch(
        &self,
        st: &mut crate::checkpoint::WriterState,
        prev: Lsn,
        records: &[finn_wal::Record],
    ) -> Result<u64, Error> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(0);
        };
        let name = BatchName {
            first: first.lsn,
            last: last.lsn,
            epoch: self.epoch(),
            lineage: st.lineage,
            level: 0,
        };
        let bytes = Bytes::from(encode_batch(
            &name,
            prev,
            records,
            self.options.compression,
            &self.key,
        )?);
        let key = self.remote.key(&layout::batch_key(&name));
        self.checked(st).await?;
        let put = self.remote.put_create(&key, bytes.clone()).await;
        self.checked(st).await?;
        if !matches!(put, Ok(Created::Yes)) {
            let existing = self.remote.get(&key).await?;
            if existing.as_deref() != Some(&bytes[..]) {
                put?;
                return Err(Error::ShippedConflict { lsn: first.lsn });
            }
        }
        Ok(bytes.len() as u64)
    }
}

/// One stored object of shipped WAL, as a listing shows it (nothing downloaded or verified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WalObject {
    /// What its key says: lineage, LSN range, writer epoch, compaction level.
    pub name: BatchName,
    /// Stored size in bytes.
    pub size: u64,
    /// When the store says it was written, milliseconds since the Unix epoch.
    pub last_modified_ms: u64,
}

/// Every shipped-WAL object of one lineage (or all), every level, sorted by name.
pub(crate) async fn scan_wal_objects(
    remote: &crate::remote::Remote,
    lineage: Option<LineageId>,
) -> Result<Vec<WalObject>, Error> {
    let dir = match lineage {
        Some(l) => layout::wal_dir(l),
        None => layout::WAL.to_owned(),
    };
    let mut out: Vec<WalObject> = remote
        .list(&dir)
        .await?
        .into_iter()
        .filter_map(|m| {
            let name = layout::parse_batch_key(&remote.relative(&m.location)?)?;
            Some(WalObject {
                name,
                size: m.size,
                last_modified_ms: m.last_modified.timestamp_millis().max(0) as u64,
            })
        })
        .collect();
    out.sort_by_key(|o| o.name);
    Ok(out)
}

/// The objects to read, in order, to get every record above `after` (through `upto`, if given)
/// out of `objects`, which may overlap (levels) and have gaps (LSN jumps): at each step, of the
/// objects starting at or before the next needed LSN, the one reaching `upto` with the fewest
/// bytes if one does, else the one reaching furthest. Whether the chosen objects really chain
/// is checked when they are read (each batch's `prev`).
pub(crate) fn cover(objects: &[WalObject], after: Lsn, upto: Option<Lsn>) -> Vec<WalObject> {
    let mut sorted = objects.to_vec();
    sorted.sort_by_key(|o| (o.name.first, o.name.last));
    let mut out = Vec::new();
    let mut covered = after;
    let mut i = 0;
    // Each object enters the candidate range once: after a step, everything in the range ends
    // at or before the new `covered`, or the walk has reached `upto`.
    while upto.is_none_or(|u| covered < u) {
        let mut reach = covered.next();
        let mut j = i;
        while j < sorted.len() && sorted[j].name.first <= reach {
            j += 1;
        }
        if !sorted[i..j].iter().any(|o| o.name.last > covered) {
            // A jump in LSNs: continue at the next object, if any.
            i = j;
            let Some(next) = sorted[i..].iter().find(|o| o.name.last > covered) else {
                break;
            };
            reach = next.name.first;
            while j < sorted.len() && sorted[j].name.first <= reach {
                j += 1;
            }
        }
        let candidates = sorted[i..j].iter().filter(|o| o.name.last > covered);
        let pick = match upto {
            Some(u) if sorted[i..j].iter().any(|o| o.name.last >= u) => candidates
                .filter(|o| o.name.last >= u)
                .min_by_key(|o| (o.size, o.name.last)),
            _ => candidates.max_by_key(|o| (o.name.last, std::cmp::Reverse(o.size))),
        };
        let Some(pick) = pick.copied() else { break };
        covered = pick.name.last;
        out.push(pick);
        i = j;
    }
    out
}

/// Where a stream of shipped records stops.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stop {
    /// The last LSN wanted.
    pub upto: Option<Lsn>,
    /// The last record time wanted (records are in time order: the WAL's timestamps come from a
    /// monotonic ULID generator).
    pub until_ms: Option<u64>,
}

/// What [`stream_shipped`] read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Streamed {
    /// The last LSN handed to the sink (`after` if none).
    pub covered: Lsn,
    /// Timestamp of that record.
    pub last_time_ms: Option<u64>,
    /// Records handed to the sink.
    pub records: u64,
    /// Objects downloaded.
    pub objects: usize,
    /// Stored bytes downloaded.
    pub bytes: u64,
    /// Whether a record past the stop point was seen (so the stop point is exact, not the end
    /// of what was shipped).
    pub stopped_early: bool,
}

/// A spawned task that is aborted when dropped, so an abandoned prefetch stops downloading.
pub(crate) struct Spawned<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for Spawned<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// How often a read restarts from a fresh listing when an object it planned to read vanished
/// (compaction replaced it by a higher level in the meantime).
const MAX_REPLANS: usize = 3;

/// Reads the shipped records of `lineage` above `after` up to `stop`, in LSN order, handing
/// them to `sink` one batch at a time. Downloads (and verifies) up to `prefetch` objects ahead
/// in spawned tasks, so on a multi-threaded runtime the next objects arrive while the sink
/// works. Holes are [`Error::ShippedGap`]; an object deleted under the read (compaction) makes
/// it list again and continue where it was.
pub(crate) async fn stream_shipped(
    reader: &Reader,
    lineage: LineageId,
    after: Lsn,
    stop: Stop,
    prefetch: usize,
    mut sink: impl FnMut(Vec<finn_wal::Record>) -> Result<(), Error>,
) -> Result<Streamed, Error> {
    use futures::StreamExt;
    let mut out = Streamed {
        covered: after,
        ..Streamed::default()
    };
    let mut replans = 0;
    'listing: loop {
        let objects = reader.wal_objects(lineage).await?;
        let plan = cover(&objects, out.covered, stop.upto);
        let mut fetches = futures::stream::iter(plan)
            .map(|o| {
                let r = reader.clone();
                Spawned(tokio::spawn(async move {
                    r.fetch_batch(&o.name).await.map(|b| (b, o.size))
                }))
            })
            .buffered(prefetch.max(1));
        while let Some(joined) = fetches.next().await {
            let (batch, size) = match joined {
                Ok(Ok(b)) => b,
                Ok(Err(Error::ObjectMissing { key })) if replans < MAX_REPLANS => {
                    replans += 1;
                    tracing::debug!(%key, "shipped object vanished under the read; listing again");
                    continue 'listing;
                }
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(Error::Io {
                        path: "<wal download task>".into(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            };
            out.objects += 1;
            out.bytes += size;
            if batch.prev > out.covered {
                return Err(Error::ShippedGap {
                    lineage,
                    first: batch.name.first,
                    expected_prev: batch.prev,
                    found_prev: out.covered,
                });
            }
            let mut fresh = Vec::with_capacity(batch.records.len());
            for r in batch.records {
                if r.lsn <= out.covered {
                    continue; // overlap with what an earlier object already gave
                }
                if stop.upto.is_some_and(|u| r.lsn > u)
                    || stop.until_ms.is_some_and(|t| r.timestamp_ms > t)
                {
                    out.stopped_early = true;
                    break;
                }
                fresh.push(r);
            }
            if let Some(last) = fresh.last() {
                out.covered = last.lsn;
                out.last_time_ms = Some(last.timestamp_ms);
                out.records += fresh.len() as u64;
                sink(fresh)?;
            }
            if out.stopped_early {
                break 'listing;
            }
        }
        break;
    }
    Ok(out)
}

/// Feeds records to `wal.append_replicated` in calls of at most about `chunk_bytes` encoded
/// bytes (each call ends with an fdatasync). A call the WAL refuses as larger than a segment
/// (nothing is written then: the call is atomic) is split in halves and retried, so any chunk
/// size works with any segment size. A jump in LSNs (a fork continuing above the prefix's
/// high-water mark) is carried over with `advance_to`.
pub(crate) fn append_chunked(
    wal: &finn_wal::Wal,
    records: &[finn_wal::Record],
    chunk_bytes: usize,
) -> Result<(), Error> {
    let mut start = 0;
    let mut size = 0;
    let mut expected = wal.last_lsn().next();
    for (i, r) in records.iter().enumerate() {
        let len = r.payload.len() + r.key.as_ref().map_or(0, String::len) + 64;
        let jump = r.lsn > expected;
        if i > start && (jump || size + len > chunk_bytes) {
            append_fitting(wal, &records[start..i])?;
            start = i;
            size = 0;
        }
        if jump {
            wal.advance_to(r.lsn)?;
        }
        expected = r.lsn.next();
        size += len;
    }
    if start < records.len() {
        append_fitting(wal, &records[start..])?;
    }
    Ok(())
}

fn append_fitting(wal: &finn_wal::Wal, records: &[finn_wal::Record]) -> Result<(), Error> {
    match wal.append_replicated(records) {
        Err(finn_wal::Error::TooLarge { .. }) if records.len() > 1 => {
            let (a, b) = records.split_at(records.len() / 2);
            append_fitting(wal, a)?;
            append_fitting(wal, b)
        }
        other => Ok(other?),
    }
}

/// Objects downloaded ahead by the shipped-WAL readers of [`Reader`] unless told otherwise.
pub const DEFAULT_PREFETCH: usize = 4;

impl Reader {
    /// The shipped batches of `lineage` that readers accept (fenced-off zombie batches left
    /// out), every compaction level, sorted by first LSN.
    pub async fn shipped_batches(&self, lineage: LineageId) -> Result<Vec<BatchName>, Error> {
        Ok(self
            .wal_objects(lineage)
            .await?
            .into_iter()
            .map(|o| o.name)
            .collect())
    }

    /// The accepted shipped-WAL objects of `lineage` (every level; fenced-off zombie objects
    /// left out) with their sizes, sorted by name.
    pub async fn wal_objects(&self, lineage: LineageId) -> Result<Vec<WalObject>, Error> {
        let fences = self.fences().await?;
        Ok(scan_wal_objects(self.remote(), Some(lineage))
            .await?
            .into_iter()
            .filter(|o| !fences.batch_fenced(o.name.epoch, o.name.last))
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
    /// them, across all batches, compaction levels and writer epochs, verified and checked for
    /// holes (each batch's `prev` must be covered by the batches before it). Of overlapping
    /// objects (a level and the objects it merged) only those needed are read. Feed the records
    /// to `Wal::append_replicated`.
    pub async fn shipped_after(
        &self,
        lineage: LineageId,
        after: Lsn,
    ) -> Result<Vec<finn_wal::Record>, Error> {
        let mut out: Vec<finn_wal::Record> = Vec::new();
        stream_shipped(
            self,
            lineage,
            after,
            Stop::default(),
            DEFAULT_PREFETCH,
            |records| {
                out.extend(records);
                Ok(())
            },
        )
        .await?;
        Ok(out)
    }

    /// Replays every shipped record of `lineage` after `after` into `wal` with
    /// `Wal::append_replicated`, one batch at a time (never holding the whole log in memory), in
    /// calls of at most about `chunk_bytes` encoded bytes each (keep it below the WAL's segment
    /// size), downloading the next objects while replaying. Returns the last LSN replayed
    /// (`after` if none).
    pub async fn replay_into(
        &self,
        lineage: LineageId,
        after: Lsn,
        wal: &finn_wal::Wal,
        chunk_bytes: usize,
    ) -> Result<Lsn, Error> {
        let streamed = stream_shipped(
            self,
            lineage,
            after,
            Stop::default(),
            DEFAULT_PREFETCH,
            |records| append_chunked(wal, &records, chunk_bytes),
        )
        .await?;
        Ok(streamed.covered)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(first: u64, last: u64, level: u8, size: u64) -> WalObject {
        WalObject {
            name: BatchName {
                first: Lsn::new(first),
                last: Lsn::new(last),
                epoch: 1,
                lineage: LineageId(ulid::Ulid::nil()),
                level,
            },
            size,
            last_modified_ms: 0,
        }
    }

    fn ranges(v: &[WalObject]) -> Vec<(u64, u64)> {
        v.iter()
            .map(|o| (o.name.first.get(), o.name.last.get()))
            .collect()
    }

    #[test]
    fn cover_prefers_higher_levels_and_small_objects_at_the_target() {
        let mut objects: Vec<_> = (0..10)
            .map(|i| obj(i * 100 + 1, i * 100 + 100, 0, 10))
            .collect();
        objects.push(obj(1, 500, 1, 40));
        objects.push(obj(501, 1000, 1, 40));
        let z = Lsn::ZERO;
        assert_eq!(ranges(&cover(&objects, z, None)), [(1, 500), (501, 1000)]);
        // Reaching 250: the small level-0 object is cheaper than the level-1 one.
        assert_eq!(
            ranges(&cover(&objects, Lsn::new(200), Some(Lsn::new(250)))),
            [(201, 300)]
        );
        // One larger object beats two smaller ones: requests cost more than bytes.
        assert_eq!(
            ranges(&cover(&objects, z, Some(Lsn::new(650)))),
            [(1, 500), (501, 1000)]
        );
        // From the middle of a level-1 object: it still counts (overlap is skipped on read).
        assert_eq!(
            ranges(&cover(&objects, Lsn::new(450), None)),
            [(401, 500), (501, 1000)]
        );
        assert!(cover(&objects, Lsn::new(1000), None).is_empty());
    }

    #[test]
    fn cover_follows_lsn_jumps() {
        let objects = vec![obj(1, 10, 0, 1), obj(21, 30, 0, 1), obj(31, 40, 0, 1)];
        assert_eq!(
            ranges(&cover(&objects, Lsn::ZERO, None)),
            [(1, 10), (21, 30), (31, 40)]
        );
        assert_eq!(
            ranges(&cover(&objects, Lsn::new(12), Some(Lsn::new(25)))),
            [(21, 30)]
        );
    }
}
