//! Turning fetched bytes into file contents: gunzip (bounded) and hash check over
//! the decompressed data, as Ignition does.

use std::io::Read;

use sha2::{Digest, Sha256, Sha512};

/// Upper bound on decompressed resource size (guards against gzip bombs).
pub const MAX_RESOURCE_SIZE: u64 = 256 << 20;

/// Hash algorithm of `verification.hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256 (`sha256-…`).
    Sha256,
    /// SHA-512 (`sha512-…`).
    Sha512,
}

impl HashAlg {
    fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    fn hex_digest(self, data: &[u8]) -> String {
        let digest: Vec<u8> = match self {
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
            HashAlg::Sha512 => Sha512::digest(data).to_vec(),
        };
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why fetched bytes cannot be a file's contents.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The gzip stream is corrupt.
    #[error("gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// Decompressed, it is larger than allowed (a gzip bomb, or just too big).
    #[error("gzip: decompressed data exceeds {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The hash of the (decompressed) data is not the one the config gives.
    #[error("{} mismatch: expected {expected}, got {got}", alg.name())]
    HashMismatch {
        /// The algorithm.
        alg: HashAlg,
        /// The digest the config gives (lowercase hex).
        expected: String,
        /// The digest of the data.
        got: String,
    },
}

/// Decompresses `bytes` when `gzip` is set (at most [`MAX_RESOURCE_SIZE`] bytes out),
/// then checks `hash` (algorithm, hex digest) over the decompressed data.
///
/// Errors: `gzip: …` for corrupt data, `gzip: decompressed data exceeds … bytes`,
/// `sha512 mismatch: expected …, got …`.
pub fn resolve_resource(bytes: Vec<u8>, gzip: bool, hash: Option<(HashAlg, String)>) -> Result<Vec<u8>, ResourceError> {
    resolve_with_limit(bytes, gzip, hash, MAX_RESOURCE_SIZE)
}

fn resolve_with_limit(bytes: Vec<u8>, gzip: bool, hash: Option<(HashAlg, String)>, limit: u64) -> Result<Vec<u8>, ResourceError> {
    let data = if gzip { gunzip(&bytes, limit)? } else { bytes };
    if let Some((alg, expected)) = hash {
        let got = alg.hex_digest(&data);
        if !got.eq_ignore_ascii_case(expected.trim()) {
            return Err(ResourceError::HashMismatch { alg, expected: expected.trim().to_ascii_lowercase(), got });
        }
    }
    Ok(data)
}

fn gunzip(bytes: &[u8], limit: u64) -> Result<Vec<u8>, ResourceError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).take(limit + 1).read_to_end(&mut out).map_err(ResourceError::Gzip)?;
    if out.len() as u64 > limit {
        return Err(ResourceError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn plain_without_hash_is_returned_as_is() {
        assert_eq!(resolve_resource(b"hello".to_vec(), false, None).unwrap(), b"hello");
    }

    #[test]
    fn sha256_matches_in_any_case() {
        let h = Some((HashAlg::Sha256, HELLO_SHA256.to_uppercase()));
        assert_eq!(resolve_resource(b"hello".to_vec(), false, h).unwrap(), b"hello");
    }

    #[test]
    fn hash_is_checked_over_decompressed_data() {
        let h = Some((HashAlg::Sha256, HELLO_SHA256.to_string()));
        assert_eq!(resolve_resource(gz(b"hello"), true, h).unwrap(), b"hello");
    }

    #[test]
    fn hash_over_compressed_data_is_a_mismatch() {
        let compressed = gz(b"hello");
        let wrong = HashAlg::Sha256.hex_digest(&compressed);
        let err = resolve_resource(compressed, true, Some((HashAlg::Sha256, wrong))).unwrap_err().to_string();
        assert!(err.starts_with("sha256 mismatch: expected "), "{err}");
        assert!(err.ends_with(&format!("got {HELLO_SHA256}")), "{err}");
    }

    #[test]
    fn sha512_mismatch_names_both_digests() {
        let expected = "00".repeat(64);
        let err = resolve_resource(b"hello".to_vec(), false, Some((HashAlg::Sha512, expected.clone()))).unwrap_err();
        let got = HashAlg::Sha512.hex_digest(b"hello");
        assert_eq!(err.to_string(), format!("sha512 mismatch: expected {expected}, got {got}"));
        assert!(matches!(err, ResourceError::HashMismatch { alg: HashAlg::Sha512, .. }), "{err:?}");
    }

    #[test]
    fn sha512_match() {
        let good = HashAlg::Sha512.hex_digest(b"data");
        assert!(resolve_resource(b"data".to_vec(), false, Some((HashAlg::Sha512, good))).is_ok());
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let err = resolve_resource(b"not gzip at all".to_vec(), true, None).unwrap_err();
        assert!(matches!(err, ResourceError::Gzip(_)), "{err:?}");
        assert!(err.to_string().starts_with("gzip: "), "{err}");
    }

    #[test]
    fn gzip_bomb_is_cut_off() {
        let bomb = gz(&vec![0u8; 1 << 20]);
        let err = resolve_with_limit(bomb.clone(), true, None, 1024).unwrap_err();
        assert!(matches!(err, ResourceError::TooLarge { limit: 1024 }), "{err:?}");
        assert_eq!(err.to_string(), "gzip: decompressed data exceeds 1024 bytes");
        assert_eq!(resolve_with_limit(bomb, true, None, 1 << 20).unwrap().len(), 1 << 20);
    }
}
