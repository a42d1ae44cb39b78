//! The one place bincode 2 (`=2.0.1`, serde, standard configuration) is used: a typed layer
//! over record payloads.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Step { n: u32, note: String }
//! let bytes = finn_wal::codec::encode(&Step { n: 1, note: "hi".into() })?;
//! let back: Step = finn_wal::codec::decode(&bytes)?;
//! assert_eq!(back, Step { n: 1, note: "hi".into() });
//! # Ok::<(), finn_wal::codec::CodecError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// bincode could not encode the value.
    #[error("could not encode value")]
    Encode(#[source] bincode::error::EncodeError),
    /// The bytes are not a valid encoding of the type.
    #[error("could not decode value")]
    Decode(#[source] bincode::error::DecodeError),
    /// The value ended before the bytes did.
    #[error("{extra} bytes left over after the value")]
    TrailingBytes {
        /// Bytes not consumed.
        extra: usize,
    },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a serde value with bincode 2's standard configuration.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(CodecError::Encode)
}

/// Decodes a value written by [`encode`]; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(CodecError::Decode)?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&7u32).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::TrailingBytes { extra: 1 })
        ));
    }
}
