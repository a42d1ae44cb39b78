//! The content checksum that decides whether a document really changed.

use std::fmt;

/// BLAKE3 digest of a document's raw bytes, exactly as read from disk.
///
/// Two files with the same bytes have the same checksum; any byte difference (including CRLF versus
/// LF line endings) is a change. [`Display`](fmt::Display) prints the full 64 lowercase hex digits;
/// [`Checksum::short`] gives the first 16, the width the TypeScript loader used.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum([u8; 32]);

impl Checksum {
    /// Hashes `bytes`.
    ///
    /// ```
    /// let a = finn_identity::Checksum::of(b"# Me\n");
    /// assert_eq!(a, finn_identity::Checksum::of(b"# Me\n"));
    /// assert_ne!(a, finn_identity::Checksum::of(b"# Me\r\n"));
    /// ```
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32-byte digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The full digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The first 16 hex digits (64 bits), for log lines and compatibility with the TypeScript
    /// loader's truncated checksum. Not for equality decisions: compare [`Checksum`]s instead.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(16);
        s
    }

    /// Parses 64 hex digits (either case) back into a checksum; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *byte = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.short())
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_short_prefix() {
        let c = Checksum::of(b"identity");
        let hex = c.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with(&c.short()));
        assert_eq!(c.short().len(), 16);
        assert_eq!(Checksum::from_hex(&hex), Some(c));
        assert_eq!(Checksum::from_hex(&hex.to_uppercase()), Some(c));
        assert_eq!(Checksum::from_hex(&hex[..63]), None);
        assert_eq!(Checksum::from_hex(&format!("{}zz", &hex[..62])), None);
    }
}
