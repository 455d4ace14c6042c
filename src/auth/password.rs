//! Passwords: argon2id hashes and the rules a new password must meet.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use super::secret;

pub const MIN_CHARS: usize = 10;
const MAX_CHARS: usize = 256;

/// Why a new password is refused, in words for the form.
pub fn check_rules(password: &str, email: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(format!("Use at least {MIN_CHARS} characters."));
    }
    if chars > MAX_CHARS {
        return Err(format!("Use at most {MAX_CHARS} characters."));
    }
    if password.eq_ignore_ascii_case(email)
        || email
            .split('@')
            .next()
            .is_some_and(|local| password.eq_ignore_ascii_case(local))
    {
        return Err("The password must not be your email address.".into());
    }
    if password
        .chars()
        .all(|c| c == password.chars().next().unwrap_or(c))
    {
        return Err("The password must not repeat one character.".into());
    }
    Ok(())
}

/// One of OWASP's equivalent argon2id settings (7 MiB, 5 passes, 1 lane) rather than the
/// crate's default of 19 MiB and 2 passes: as strong, and a sign-in does not leave a 19 MiB block
/// in the allocator of a process meant to idle small. Stored hashes name their own parameters,
/// so checking a password needs none of this.
fn hasher() -> Result<Argon2<'static>, argon2::password_hash::Error> {
    let params = Params::new(7 * 1024, 5, 1, None)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(hasher()?
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// False for a wrong password and for a stored hash that cannot be read.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends the time a real check would, so a login for an unknown email takes as long as one
/// with a wrong password and does not reveal which emails have accounts.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("not a real password at all").unwrap_or_default());
    verify(password, dummy);
}

/// A password for a new account or a reset, shown once.
pub fn generate() -> String {
    secret::generate("", 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let first = hash("correct horse battery").expect("hashes");
        let second = hash("correct horse battery").expect("hashes");
        assert!(
            first.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
            "{first}"
        );
        assert_ne!(first, second);
        let salt = SaltString::encode_b64(b"sixteen byte salt").expect("salt");
        let other_parameters = Argon2::default()
            .hash_password(b"made elsewhere", &salt)
            .expect("hashes")
            .to_string();
        assert!(
            other_parameters.contains("m=19456,t=2"),
            "{other_parameters}"
        );
        assert!(
            verify("made elsewhere", &other_parameters),
            "a hash names its own parameters"
        );
        assert!(!verify("made elsewherE", &other_parameters));
        assert!(verify("correct horse battery", &first));
        assert!(!verify("correct horse batterY", &first));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_rules("short", "a@b.c").is_err());
        assert!(check_rules("aaaaaaaaaaaa", "a@b.c").is_err());
        assert!(check_rules("alice.smith", "alice.smith@corp.example").is_err());
        assert!(check_rules("a long passphrase", "a@b.c").is_ok());
        assert!(check_rules(&generate(), "a@b.c").is_ok());
    }
}
