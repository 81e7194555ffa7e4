//! Content digests: how plans, saved plans and releases tell "the same" from
//! "changed" without keeping the content.

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The digest of a value's canonical JSON (keys sorted by serde_json's map).
pub fn sha256_json(v: &impl serde::Serialize) -> String {
    // Serialising plain data to a Vec cannot fail; an empty input would still
    // give a well-formed (if useless) digest rather than a panic.
    sha256(&serde_json::to_vec(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(
            super::sha256(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
