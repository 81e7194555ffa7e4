//! A machine's SSH host key as pinned in state: its type and key, compared
//! exactly, shown as OpenSSH shows fingerprints (`SHA256:…`).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The public key blob, base64 (as in known_hosts).
    pub key: String,
}

impl HostKey {
    pub fn from_blob(kind: ssh2::HostKeyType, blob: &[u8]) -> Self {
        let kind = match kind {
            ssh2::HostKeyType::Rsa => "ssh-rsa",
            ssh2::HostKeyType::Dss => "ssh-dss",
            ssh2::HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
            ssh2::HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
            ssh2::HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
            ssh2::HostKeyType::Ed25519 => "ssh-ed25519",
            ssh2::HostKeyType::Unknown => "unknown",
        };
        Self {
            kind: kind.into(),
            key: base64::engine::general_purpose::STANDARD.encode(blob),
        }
    }

    /// A known_hosts line (`TYPE KEY`), as cloud console logs print them.
    pub fn parse(line: &str) -> Option<Self> {
        let mut it = line.split_whitespace();
        let (kind, key) = (it.next()?, it.next()?);
        base64::engine::general_purpose::STANDARD.decode(key).ok()?;
        Some(Self {
            kind: kind.into(),
            key: key.into(),
        })
    }

    pub fn fingerprint(&self) -> String {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(&self.key)
            .unwrap_or_default();
        let d = Sha256::digest(blob);
        format!(
            "{} SHA256:{}",
            self.kind,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(d)
        )
    }

    /// libssh2's name for the method, to ask for this key type first.
    pub fn method(&self) -> &str {
        &self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_fingerprints_like_openssh() {
        // tests/fixtures/ssh/id_ed25519.pub, whose `ssh-keygen -lf` is known
        let line = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ssh/id_ed25519.pub"
        ))
        .unwrap();
        let k = HostKey::parse(&line).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        let out = std::process::Command::new("ssh-keygen")
            .args([
                "-lf",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/ssh/id_ed25519.pub"
                ),
            ])
            .output()
            .unwrap();
        let want = String::from_utf8_lossy(&out.stdout);
        let sha = k.fingerprint();
        let sha = sha.split(' ').nth(1).unwrap();
        assert!(want.contains(sha), "{want} vs {sha}");
        assert!(HostKey::parse("ssh-ed25519 not*base64").is_none());
    }
}
