//! Secrets handed to clients (session cookies, API tokens, generated passwords) and the digests
//! stored in their place. Tokens carry 256 random bits, so a plain SHA-256 is a safe digest; only
//! passwords, which people choose, need argon2.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new random secret, base64url, with a readable prefix (`rd_` for API tokens).
pub fn generate(prefix: &str, bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut random);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random))
}

/// What the database keeps instead of a token.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_digests_stable() {
        let a = generate("rd_", 32);
        let b = generate("rd_", 32);
        assert_ne!(a, b);
        assert!(a.starts_with("rd_") && a.len() == 3 + 43, "{a}");
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&a).len(), 64);
    }
}
