//! Content digests: how plans, saved plans and releases tell "the same" from
//! "changed" without keeping the content.

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The bare hex sha256 of `bytes`, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(Sha256::digest(bytes))
}

/// A digest as lowercase hex (a streamed `Sha256`'s `finalize()`).
pub fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
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
