//! Streaming reads: a buffered frame reader over positioned reads, and [`Iter`].

use crate::fs::IoFile;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::error::Corruption;
use crate::record::{BodyRecords, FRAME_HEADER_LEN, RecordRef, check_crc, next_validated_record};
use crate::segment::Segment;
use crate::{Error, Record};

/// Large positioned reads: one syscall per mebibyte keeps replay near raw read speed.
pub(crate) const READ_CHUNK: usize = 1024 * 1024;

/// What [`FrameReader::next_frame`] found.
#[derive(Debug)]
pub(crate) enum Next<'b> {
    /// A frame whose CRC checks out.
    Frame {
        offset: u64,
        len: u64,
        body: &'b [u8],
    },
    /// A zero frame header or the read limit: no more frames.
    End { offset: u64 },
    /// A frame that fails its check.
    Bad { offset: u64, kind: Corruption },
}

/// Reads frames sequentially through one reusable buffer (no per-frame allocation). It does not
/// own the file so that it can live beside an `Arc<Segment>` in an iterator.
#[derive(Debug)]
pub(crate) struct FrameReader {
    limit: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    filled: usize,
    pos: u64,
    /// Where the body of the frame last returned lies in `buf`.
    last_body: (usize, usize),
}

impl FrameReader {
    /// A reader starting at `offset` that never reads at or past `limit`.
    pub(crate) fn new(offset: u64, limit: u64) -> FrameReader {
        FrameReader {
            limit,
            buf: spare::take(),
            buf_pos: offset,
            filled: 0,
            pos: offset,
            last_body: (0, 0),
        }
    }

    /// The body of the frame the last [`next_frame`](Self::next_frame) returned; valid until
    /// the next call.
    pub(crate) fn last_body(&self) -> &[u8] {
        &self.buf[self.last_body.0..self.last_body.1]
    }

    /// Offset of the next frame.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Continues at `offset` (drops buffered bytes unless they cover it).
    pub(crate) fn seek(&mut self, offset: u64) {
        if offset >= self.buf_pos && offset <= self.buf_pos + self.filled as u64 {
            self.pos = offset;
        } else {
            self.pos = offset;
            self.buf_pos = offset;
            self.filled = 0;
        }
    }

    /// Makes `[pos, pos + n)` available in the buffer as far as the limit and the file allow;
    /// returns how many of those bytes are available.
    fn ensure(&mut self, file: &dyn IoFile, n: usize) -> std::io::Result<usize> {
        let in_file = self.limit.saturating_sub(self.pos);
        let want = (n as u64).min(in_file) as usize;
        let off = (self.pos - self.buf_pos) as usize;
        if off + want <= self.filled {
            return Ok(want);
        }
        self.buf.copy_within(off..self.filled, 0);
        self.filled -= off;
        self.buf_pos = self.pos;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.filled < want {
            let room = self.buf.len() - self.filled;
            let left = self.limit - (self.buf_pos + self.filled as u64);
            let max = (room as u64).min(left) as usize;
            let r = file.read_at(
                &mut self.buf[self.filled..self.filled + max],
                self.buf_pos + self.filled as u64,
            )?;
            if r == 0 {
                break;
            }
            self.filled += r;
        }
        Ok(want.min(self.filled))
    }

    fn window(&self, len: usize) -> &[u8] {
        let off = (self.pos - self.buf_pos) as usize;
        &self.buf[off..off + len]
    }

    /// Reads the next frame.
    pub(crate) fn next_frame(&mut self, file: &dyn IoFile) -> std::io::Result<Next<'_>> {
        let offset = self.pos;
        let got = self.ensure(file, FRAME_HEADER_LEN)?;
        if got < FRAME_HEADER_LEN {
            return Ok(if self.window(got).iter().all(|&b| b == 0) {
                Next::End { offset }
            } else {
                Next::Bad {
                    offset,
                    kind: Corruption::Truncated {
                        expected: FRAME_HEADER_LEN as u64,
                        available: got as u64,
                    },
                }
            });
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(self.window(FRAME_HEADER_LEN));
        let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if body_len == 0 {
            return Ok(if header == [0u8; 8] {
                Next::End { offset }
            } else {
                Next::Bad {
                    offset,
                    kind: Corruption::Malformed,
                }
            });
        }
        let available = self.limit.saturating_sub(offset + FRAME_HEADER_LEN as u64);
        if body_len as u64 > available {
            return Ok(Next::Bad {
                offset,
                kind: Corruption::Truncated {
                    expected: body_len as u64,
                    available,
                },
            });
        }
        let total = FRAME_HEADER_LEN + body_len;
        let got = self.ensure(file, total)?;
        if got < total {
            return Ok(Next::Bad {
                offset,
                kind: Corruption::Truncated {
                    expected: body_len as u64,
                    available: got.saturating_sub(FRAME_HEADER_LEN) as u64,
                },
            });
        }
        let start = (self.pos - self.buf_pos) as usize;
        let body = &self.buf[start + FRAME_HEADER_LEN..start + total];
        if let Err(kind) = check_crc(&header, body) {
            return Ok(Next::Bad { offset, kind });
        }
        self.pos += total as u64;
        self.last_body = (start + FRAME_HEADER_LEN, start + total);
        Ok(Next::Frame {
            offset,
            len: total as u64,
            body,
        })
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.buf));
    }
}

/// A few read buffers kept for the next reader: readers come and go (every open, `iter_from`,
/// `entries_since`, maintenance pass), and a fresh mebibyte each time costs its zeroing and a
/// page fault per 4 KiB — more than copying the data into it.
pub(crate) mod spare {
    use std::sync::Mutex;

    pub(crate) use super::READ_CHUNK as LEN;

    /// Kept at most; more readers than this at once allocate their own.
    const KEPT: usize = 4;

    static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// A zeroed-once buffer of [`LEN`] bytes (its contents are whatever the last reader left).
    pub(crate) fn take() -> Vec<u8> {
        BUFFERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| vec![0u8; LEN])
    }

    /// Keeps `buf` unless enough are kept or it grew for a large frame.
    pub(crate) fn give(buf: Vec<u8>) {
        if buf.len() != LEN {
            return;
        }
        let mut kept = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT {
            kept.push(buf);
        }
    }
}

/// Streaming iterator over records in LSN order, returned by
/// [`Wal::iter_from`](crate::Wal::iter_from).
///
/// It holds the segments that existed when it was created; compaction or pruning running
/// meanwhile does not disturb it (unlinked segments stay readable through open descriptors).
/// Memory use is one read buffer (1 MiB, more for a larger frame). Each frame's CRC and
/// structure are checked once, before its first record is handed out; records are decoded
/// straight from the read buffer as they are handed out, one allocation (the payload, plus the
/// key if any) each. (Decoding a frame's records together keeps a batch of allocations live at
/// once, which costs more in the allocator than decoding each record a second time.)
#[derive(Debug)]
pub struct Iter<'a> {
    segments: Vec<Arc<Segment>>,
    next_segment: usize,
    current: Option<(Arc<Segment>, FrameReader)>,
    from: u64,
    /// Records of the current frame still to hand out: byte offset in the frame body of the
    /// next one, and how many remain.
    frame: Option<(usize, u32)>,
    done: bool,
    _wal: PhantomData<&'a ()>,
}

impl Iter<'_> {
    pub(crate) fn new(segments: Vec<Arc<Segment>>, from: u64) -> Self {
        // Skip whole segments that end before `from`.
        let start = segments
            .iter()
            .position(|s| s.last_record().is_some_and(|last| last >= from))
            .unwrap_or(segments.len());
        Iter {
            segments,
            next_segment: start,
            current: None,
            from,
            frame: None,
            done: false,
            _wal: PhantomData,
        }
    }

    /// The next record of the current frame at or above `from`, if any.
    fn next_in_frame(&mut self) -> Option<Record> {
        let (mut at, mut remaining) = self.frame?;
        let (_, reader) = self.current.as_ref()?;
        let body = reader.last_body();
        while remaining > 0 {
            let Some((r, len)) = next_validated_record(&body[at..]) else {
                break;
            };
            at += len;
            remaining -= 1;
            if r.lsn >= self.from {
                self.frame = (remaining > 0).then_some((at, remaining));
                return Some(r.to_record());
            }
        }
        self.frame = None;
        None
    }

    /// Hands every remaining record to `f` borrowed from the read buffer, each frame decoded
    /// once: for a reader that keeps only part of what it reads (the store's fold), which
    /// then allocates only what it keeps.
    pub(crate) fn for_each_ref<E: From<Error>>(
        mut self,
        mut f: impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(r) = self.next_in_frame() {
            f(r.as_ref())?;
        }
        let from = self.from;
        let mut failed = None;
        self.next_frame(|records| {
            for r in records.filter(|r| r.lsn >= from) {
                if let Err(e) = f(r) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Offers each following frame's records to `visit` until it breaks (`Ok(Some)`) or the
    /// log ends (`Ok(None)`).
    fn next_frame<T>(
        &mut self,
        mut visit: impl FnMut(BodyRecords<'_>) -> ControlFlow<T>,
    ) -> Result<Option<T>, Error> {
        loop {
            if self.current.is_none() {
                let Some(seg) = self.segments.get(self.next_segment).cloned() else {
                    return Ok(None);
                };
                self.next_segment += 1;
                let start = seg.seek_hint(self.from);
                let reader = FrameReader::new(start, seg.end());
                self.current = Some((seg, reader));
            }
            let Some((seg, reader)) = self.current.as_mut() else {
                return Ok(None);
            };
            if let Some(&(_, hole_end)) = seg.holes.iter().find(|h| h.0 == reader.pos()) {
                reader.seek(hole_end);
            }
            let limit = reader.limit();
            match reader
                .next_frame(&*seg.file)
                .map_err(|e| Error::io(&seg.path, e))?
            {
                Next::Frame { offset, body, .. } => {
                    let records = BodyRecords::parse(body)
                        .map_err(|kind| Error::corrupt(&seg.path, offset, kind))?;
                    if records.last_lsn >= self.from
                        && let ControlFlow::Break(t) = visit(records)
                    {
                        return Ok(Some(t));
                    }
                }
                Next::End { offset } => {
                    if offset < limit {
                        return Err(Error::corrupt(
                            &seg.path,
                            offset,
                            Corruption::Truncated {
                                expected: limit - offset,
                                available: 0,
                            },
                        ));
                    }
                    self.current = None;
                }
                Next::Bad { offset, kind } => return Err(Error::corrupt(&seg.path, offset, kind)),
            }
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.next_in_frame() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            let next =
                self.next_frame(|records| ControlFlow::Break((records.start, records.count)));
            match next {
                Ok(Some(frame)) => self.frame = Some(frame),
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
