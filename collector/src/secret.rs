//! Bearer secrets (enrolment tokens, operator API tokens): generated from the OS's CSPRNG,
//! shown once, stored only as SHA-256. The prefix says what a leaked string is (`vge_` enrolment,
//! `vgo_` operator API) so secret scanners and operators can recognise it.

/// Prefix of enrolment tokens.
pub const ENROLLMENT_PREFIX: &str = "vge_";
/// Prefix of operator API tokens.
pub const API_PREFIX: &str = "vgo_";

/// A new secret with `prefix` and its SHA-256 (what the store keeps).
pub fn generate(prefix: &str) -> (String, String) {
    let bytes: [u8; 24] = rand::random();
    let secret = format!("{prefix}{}", hex(&bytes));
    let hash = sha256(&secret);
    (secret, hash)
}

/// SHA-256 of a presented secret, lowercase hex. Secrets are 192 random bits, so a plain hash
/// (no salt, no stretching) cannot be reversed or brute-forced.
pub fn sha256(secret: &str) -> String {
    vigil_tls::sha256_hex(secret.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_unique_and_hashed() {
        let (a, hash_a) = generate(API_PREFIX);
        let (b, _) = generate(API_PREFIX);
        assert!(a.starts_with("vgo_") && a.len() == 4 + 48, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_a, sha256(&a));
        assert!(!hash_a.contains(&a[4..]));
    }
}
