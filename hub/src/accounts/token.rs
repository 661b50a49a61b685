//! Opaque bearer tokens: `ahk_…` API keys for members, `aha_…` tokens for agents.
//!
//! A token is a prefix plus 32 random bytes in lowercase hex. Only its SHA-256 is stored;
//! the prefix and the first characters are kept so people and secret scanners can
//! recognise a leaked token and admins can tell keys apart in listings.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of member API keys.
pub const API_KEY_PREFIX: &str = "ahk_";
/// Prefix of agent tokens.
pub const AGENT_TOKEN_PREFIX: &str = "aha_";

/// A freshly generated token: the secret (shown once) and what the database keeps.
pub struct NewToken {
    pub secret: String,
    pub hash: String,
    /// The first characters, safe to display (`ahk_3fa9c2d1`).
    pub display_prefix: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("display_prefix", &self.display_prefix)
            .finish_non_exhaustive()
    }
}

pub fn generate(prefix: &str) -> NewToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", hex::encode(bytes));
    NewToken {
        hash: hash(&secret),
        display_prefix: secret[..prefix.len() + 8].to_string(),
        secret,
    }
}

/// The stored form of a token.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` looks like a token of this kind (cheap check before a lookup).
pub fn has_shape(secret: &str, prefix: &str) -> bool {
    secret.len() == prefix.len() + 64
        && secret.starts_with(prefix)
        && secret[prefix.len()..]
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_unique_and_stored_hashed() {
        let first = generate(API_KEY_PREFIX);
        let second = generate(API_KEY_PREFIX);
        assert!(first.secret.starts_with("ahk_"));
        assert_ne!(first.secret, second.secret);
        assert_eq!(first.hash, hash(&first.secret));
        assert!(!first.hash.contains(&first.secret[4..]));
        assert!(has_shape(&first.secret, API_KEY_PREFIX));
        assert!(!has_shape(&first.secret, AGENT_TOKEN_PREFIX));
        assert!(!format!("{first:?}").contains(&first.secret));
    }
}
