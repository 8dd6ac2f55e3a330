//! Signatures of fleet entries (pure): Ed25519 through `ring` (already in
//! the build for rustls). A host signs the canonical bytes of each entry it
//! publishes with its private key ([fleet] key_file); a host with
//! [fleet.peers] applies only entries that verify with the public key of the
//! host they name. Keys and signatures travel as standard base64 text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::fmt;
use std::sync::Arc;

/// An Ed25519 private key is a 32-byte seed; a public key 32 bytes; a
/// signature 64 (88 characters of base64).
pub const SEED_LEN: usize = 32;
pub const SIG_TEXT_LEN: usize = 88;

/// Why key text is not a key; each reads after "the file" or the peer's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not base64")]
    PublicNotBase64,
    #[error("is {0} bytes, an Ed25519 public key is 32")]
    PublicLen(usize),
    #[error("holds {0} bytes, an Ed25519 private key is {SEED_LEN}")]
    SeedLen(usize),
    /// ring's reason, as it words it.
    #[error("is not an Ed25519 private key ({0})")]
    Rejected(String),
    #[error("is not text (fix: base64 of a 32-byte seed, as `fwctl fleet keygen` writes)")]
    SeedNotText,
    #[error("is not base64 (fix: base64 of a 32-byte seed, as `fwctl fleet keygen` writes)")]
    SeedNotBase64,
}

/// A peer's public key, as `[fleet.peers]` gives it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_text())
    }
}

impl PublicKey {
    /// From base64 text (44 characters), or why not.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::PublicNotBase64)?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::PublicLen(b.len()))?;
        Ok(PublicKey(key))
    }

    pub fn to_text(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Whether `sig` (base64) is this key's signature of `msg`.
    pub fn verifies(&self, msg: &[u8], sig: &str) -> bool {
        if sig.len() != SIG_TEXT_LEN {
            return false;
        }
        let Ok(sig) = STANDARD.decode(sig) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(msg, &sig)
            .is_ok()
    }
}

/// This host's private key (never printed: Debug shows the public half).
#[derive(Clone)]
pub struct SigningKey {
    pair: Arc<Ed25519KeyPair>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public().to_text())
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &SigningKey) -> bool {
        self.public() == other.public()
    }
}

impl SigningKey {
    pub fn from_seed(seed: &[u8]) -> Result<SigningKey, KeyError> {
        if seed.len() != SEED_LEN {
            return Err(KeyError::SeedLen(seed.len()));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(SigningKey {
            pair: Arc::new(pair),
        })
    }

    /// From a key file's content: the seed in base64, one line.
    pub fn from_text(text: &[u8]) -> Result<SigningKey, KeyError> {
        let text = std::str::from_utf8(text).map_err(|_| KeyError::SeedNotText)?;
        let mut seed = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::SeedNotBase64)?;
        let key = SigningKey::from_seed(&seed);
        seed.fill(0);
        key
    }

    /// The key file's content for a seed.
    pub fn seed_text(seed: &[u8; SEED_LEN]) -> String {
        STANDARD.encode(seed) + "\n"
    }

    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    /// The signature of `msg`, in base64.
    pub fn sign(&self, msg: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(msg).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_and_for_its_message_only() {
        let k = SigningKey::from_seed(&[7u8; 32]).unwrap();
        let other = SigningKey::from_seed(&[8u8; 32]).unwrap();
        let sig = k.sign(b"ban 203.0.113.5");
        assert_eq!(sig.len(), SIG_TEXT_LEN);
        assert!(k.public().verifies(b"ban 203.0.113.5", &sig));
        assert!(!k.public().verifies(b"ban 203.0.113.6", &sig));
        assert!(!other.public().verifies(b"ban 203.0.113.5", &sig));
        assert!(!k.public().verifies(b"ban 203.0.113.5", ""));
        assert!(!k.public().verifies(b"ban 203.0.113.5", &"A".repeat(88)));
        // Text round trips; bad text says why.
        let text = k.public().to_text();
        assert_eq!(PublicKey::parse(&text).unwrap(), k.public());
        let why = |e: KeyError| e.to_string();
        assert_eq!(
            PublicKey::parse("not base64!").unwrap_err(),
            KeyError::PublicNotBase64
        );
        assert_eq!(
            why(PublicKey::parse("AAAA").unwrap_err()),
            "is 3 bytes, an Ed25519 public key is 32"
        );
        let seed = SigningKey::seed_text(&[7u8; 32]);
        assert_eq!(SigningKey::from_text(seed.as_bytes()).unwrap(), k);
        assert_eq!(
            why(SigningKey::from_text(b"AAAA").unwrap_err()),
            "holds 3 bytes, an Ed25519 private key is 32"
        );
        assert!(why(SigningKey::from_text(b"\xff").unwrap_err()).starts_with("is not text (fix:"));
        // Debug never shows the private half.
        assert!(format!("{k:?}").contains(&text));
    }
}
