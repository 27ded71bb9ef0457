//! Content digests (`algorithm:encoded`), restricted to the algorithms the registry can verify.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A hash algorithm that Berth can verify. The spec's grammar admits others, but a registry must
/// never accept content under a digest it cannot check, so anything else is rejected at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    #[error("digest {0:?} has an encoded part of the wrong length or alphabet")]
    BadEncoding(String),
}

/// A validated digest. The encoded part is always lowercase hex of the algorithm's exact length,
/// which also makes it safe to use as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoded part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(bytes);
        h.finish()
    }

    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(truncate(s)))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                // The spec's algorithm grammar: [a-z0-9]+ ([+._-] [a-z0-9]+)*
                let well_formed = !other.is_empty()
                    && other.split(['+', '.', '_', '-']).all(|c| {
                        !c.is_empty()
                            && c.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    });
                return Err(if well_formed {
                    DigestError::UnsupportedAlgorithm(truncate(other))
                } else {
                    DigestError::Malformed(truncate(s))
                });
            }
        };
        if enc.len() != algorithm.hex_len()
            || !enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadEncoding(truncate(s)));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_owned(),
        })
    }
}

/// Error messages echo untrusted input; keep them short.
fn truncate(s: &str) -> String {
    s.chars().take(160).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for either supported algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Serialises the state mid-stream, so that a chunked upload can resume after a restart or
    /// on another replica without re-reading what was already received.
    pub fn save(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        let (tag, state): (u8, &[u8]) = match self {
            Hasher::Sha256(h) => (1, &h.serialize()),
            Hasher::Sha512(h) => (2, &h.serialize()),
        };
        let mut out = Vec::with_capacity(1 + state.len());
        out.push(tag);
        out.extend_from_slice(state);
        out
    }

    /// Restores a state written by [`Hasher::save`]; `None` for anything else.
    pub fn restore(bytes: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        let (&tag, state) = bytes.split_first()?;
        match tag {
            1 => {
                let arr = state.try_into().ok()?;
                sha2::Sha256::deserialize(arr).ok().map(Hasher::Sha256)
            }
            2 => {
                let arr = state.try_into().ok()?;
                sha2::Sha512::deserialize(arr).ok().map(Hasher::Sha512)
            }
            _ => None,
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(input.parse::<Digest>().is_ok(), ok, "{input}");
    }

    #[test]
    fn parses_valid_and_rejects_invalid() {
        let h64 = "a".repeat(64);
        check(&format!("sha256:{h64}"), true);
        check(&format!("sha512:{}", "0".repeat(128)), true);
        check(&format!("sha256:{}", "A".repeat(64)), false);
        check(&format!("sha256:{}", "a".repeat(63)), false);
        check(&format!("sha512:{h64}"), false);
        check(&format!("md5:{h64}"), false);
        check("sha256", false);
        check("", false);
        check(&format!("sha256:../{}", "a".repeat(61)), false);
        assert!(matches!(
            format!("blake3:{h64}").parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn hashes_known_vectors() {
        assert_eq!(
            Digest::sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of(Algorithm::Sha512, b"abc").hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn saved_state_resumes() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = alg.hasher();
            h.update(b"hello ");
            let saved = h.save();
            let mut resumed = Hasher::restore(&saved).unwrap();
            resumed.update(b"world");
            assert_eq!(resumed.finish(), Digest::of(alg, b"hello world"));
        }
        assert!(Hasher::restore(b"").is_none());
        assert!(Hasher::restore(&[1, 2, 3]).is_none());
        assert!(Hasher::restore(&[9; 200]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_round_trips(s in ".{0,200}") {
            if let Ok(d) = s.parse::<Digest>() {
                proptest::prop_assert_eq!(d.to_string(), s);
            }
        }
    }
}
