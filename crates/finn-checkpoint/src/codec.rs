//! How an object's bytes are stored: raw or zstd-compressed.

use std::io::{self, Read, Write};

/// The encoding of a stored object. Recorded per file in the manifest and in the object's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is (code 0, key suffix `.raw`).
    Raw,
    /// A single zstd frame (code 1, key suffix `.zst`).
    Zstd,
}

impl Codec {
    /// The byte stored in manifests and batch headers.
    pub const fn code(self) -> u8 {
        match self {
            Codec::Raw => 0,
            Codec::Zstd => 1,
        }
    }

    /// The codec with this code, if any.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Suffix of object keys stored with this codec.
    pub const fn extension(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Zstd => "zst",
        }
    }
}

/// Compression policy for uploaded objects and shipped WAL batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Compression {
    /// Never compress.
    Off,
    /// zstd at `level`, except for content that is already compressed (recognised by its magic
    /// number, or because zstd saved less than 1/32 of it), which is stored raw.
    Zstd {
        /// zstd level, 1..=22. Default: 3.
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// The zstd level used unless configured otherwise.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Magic numbers of formats that are already compressed: gzip, zstd, xz, bzip2, zip, png, jpeg,
/// webp/riff, 7z. Compressing them again costs CPU and saves nothing.
const COMPRESSED_MAGIC: &[&[u8]] = &[
    &[0x1f, 0x8b],
    &[0x28, 0xb5, 0x2f, 0xfd],
    &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
    b"BZh",
    b"PK\x03\x04",
    b"\x89PNG",
    &[0xff, 0xd8, 0xff],
    b"RIFF",
    b"7z\xbc\xaf",
];

/// Whether `head` (the first bytes of some content) starts like an already compressed format.
pub fn looks_compressed(head: &[u8]) -> bool {
    COMPRESSED_MAGIC.iter().any(|magic| head.starts_with(magic))
}

impl Compression {
    /// The codec to try for content starting with `head`.
    pub(crate) fn codec_for(self, head: &[u8]) -> Codec {
        match self {
            Compression::Off => Codec::Raw,
            Compression::Zstd { .. } if looks_compressed(head) => Codec::Raw,
            Compression::Zstd { .. } => Codec::Zstd,
        }
    }

    pub(crate) fn level(self) -> i32 {
        match self {
            Compression::Off => 0,
            Compression::Zstd { level } => level,
        }
    }

    /// Encodes an in-memory buffer; falls back to raw when compression does not pay.
    pub(crate) fn encode(self, bytes: &[u8]) -> io::Result<(Codec, Vec<u8>)> {
        match self.codec_for(bytes) {
            Codec::Raw => Ok((Codec::Raw, bytes.to_vec())),
            Codec::Zstd => {
                let compressed = zstd::bulk::compress(bytes, self.level())?;
                if worth_it(bytes.len() as u64, compressed.len() as u64) {
                    Ok((Codec::Zstd, compressed))
                } else {
                    Ok((Codec::Raw, bytes.to_vec()))
                }
            }
        }
    }
}

/// Compression is kept when it saves at least 1/32 of the bytes.
pub(crate) fn worth_it(raw: u64, compressed: u64) -> bool {
    compressed < raw - raw / 32
}

/// Decodes a whole in-memory object.
pub(crate) fn decode(codec: Codec, stored: &[u8], limit: u64) -> io::Result<Vec<u8>> {
    match codec {
        Codec::Raw => Ok(stored.to_vec()),
        Codec::Zstd => {
            let mut out = Vec::new();
            let decoder = zstd::stream::read::Decoder::new(stored)?;
            // The limit stops a hostile frame from expanding without bound.
            decoder
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)?;
            if out.len() as u64 > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "object expands past its recorded size",
                ));
            }
            Ok(out)
        }
    }
}

/// A streaming decoder: stored bytes go in through [`Write`], decoded bytes come out into `W`.
pub(crate) enum StreamDecoder<W: Write> {
    Raw(W),
    Zstd(Box<zstd::stream::write::Decoder<'static, W>>),
}

impl<W: Write> StreamDecoder<W> {
    pub(crate) fn new(codec: Codec, out: W) -> io::Result<Self> {
        Ok(match codec {
            Codec::Raw => StreamDecoder::Raw(out),
            Codec::Zstd => StreamDecoder::Zstd(Box::new(zstd::stream::write::Decoder::new(out)?)),
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            StreamDecoder::Raw(w) => Ok(w),
            StreamDecoder::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

impl<W: Write> Write for StreamDecoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamDecoder::Raw(w) => w.write(buf),
            StreamDecoder::Zstd(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            StreamDecoder::Raw(w) => w.flush(),
            StreamDecoder::Zstd(d) => d.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fallback() {
        let text = b"agent state ".repeat(1000);
        let (codec, stored) = Compression::default().encode(&text).unwrap();
        assert_eq!(codec, Codec::Zstd);
        assert!(stored.len() < text.len() / 10);
        assert_eq!(decode(codec, &stored, text.len() as u64).unwrap(), text);

        let gz = [&[0x1f, 0x8b][..], &[7u8; 100][..]].concat();
        assert_eq!(Compression::default().encode(&gz).unwrap().0, Codec::Raw);
        assert_eq!(Compression::Off.encode(&text).unwrap().0, Codec::Raw);
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (c, s) = Compression::default().encode(&random).unwrap();
        assert_eq!(decode(c, &s, random.len() as u64).unwrap(), random);
    }

    #[test]
    fn decode_refuses_to_expand_past_limit() {
        let (codec, stored) = Compression::default().encode(&[0u8; 100_000]).unwrap();
        assert!(decode(codec, &stored, 1000).is_err());
    }

    #[test]
    fn stream_decoder_matches_bulk() {
        let text = b"stream me ".repeat(5000);
        let (codec, stored) = Compression::default().encode(&text).unwrap();
        let mut dec = StreamDecoder::new(codec, Vec::new()).unwrap();
        for chunk in stored.chunks(17) {
            dec.write_all(chunk).unwrap();
        }
        assert_eq!(dec.finish().unwrap(), text);
    }
}
