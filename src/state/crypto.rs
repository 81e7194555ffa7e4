//! Encryption at rest for generated secrets in state: XChaCha20-Poly1305 with
//! a 32-byte key, the record's address as associated data (so a sealed blob
//! cannot be moved to another resource), and a key id to name the key in errors.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StateError;
use crate::env::secret::{SecretRef, expand_home};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub alg: String,
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

pub struct Key {
    bytes: [u8; 32],
    pub id: String,
    /// Where it came from, for messages (never the value).
    pub origin: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} from {})", self.id, self.origin)
    }
}

pub const KEY_ENV: &str = "PROVISIONER_STATE_KEY";

impl Key {
    pub fn from_base64(text: &str, origin: String) -> Result<Key, StateError> {
        let raw = B64.decode(text.trim()).map_err(|_| StateError::BadKey {
            origin: origin.clone(),
        })?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| StateError::BadKey {
            origin: origin.clone(),
        })?;
        let digest = Sha256::digest(bytes);
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Key { bytes, id, origin })
    }

    pub fn generate_base64() -> String {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        B64.encode(bytes)
    }

    pub fn seal(&self, plain: &[u8], aad: &str) -> Result<Sealed, StateError> {
        let cipher = XChaCha20Poly1305::new((&self.bytes).into());
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StateError::Crypto {
                address: aad.into(),
                message: "encryption failed".into(),
            })?;
        Ok(Sealed {
            alg: "xchacha20poly1305".into(),
            key_id: self.id.clone(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ct),
        })
    }

    pub fn open(&self, s: &Sealed, aad: &str) -> Result<Vec<u8>, StateError> {
        if s.key_id != self.id {
            return Err(StateError::WrongKey {
                address: aad.into(),
                want: s.key_id.clone(),
                have: self.id.clone(),
                origin: self.origin.clone(),
            });
        }
        let cipher = XChaCha20Poly1305::new((&self.bytes).into());
        let bad = |m: &str| StateError::Crypto {
            address: aad.into(),
            message: m.into(),
        };
        let nonce = B64
            .decode(&s.nonce)
            .map_err(|_| bad("nonce is not base64"))?;
        if nonce.len() != 24 {
            return Err(bad("nonce has the wrong length"));
        }
        let ct = B64
            .decode(&s.ciphertext)
            .map_err(|_| bad("ciphertext is not base64"))?;
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad("authentication failed: the sealed value was modified or moved"))
    }
}

/// Default key file for an environment when nothing else is configured.
pub fn default_key_file(env: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| expand_home("~/.config"));
    base.join("provisioner")
        .join("keys")
        .join(format!("{env}.key"))
}

/// Find the state key: the environment's `state.encryption_key`, else
/// `$PROVISIONER_STATE_KEY`, else the default key file. `create` makes a new
/// key file when none exists (first apply that has a secret to store).
pub fn resolve_key(
    configured: Option<&SecretRef>,
    env: &str,
    create: bool,
) -> Result<Option<Key>, StateError> {
    if let Some(r) = configured {
        let origin = r.to_string();
        let v = r
            .resolve("state.encryption_key")
            .map_err(|e| StateError::KeyUnavailable {
                message: e.to_string(),
            })?;
        return Key::from_base64(v.expose(), origin).map(Some);
    }
    // An empty variable counts as unset (a common CI templating result).
    if let Ok(v) = std::env::var(KEY_ENV)
        .map(|v| v.trim().to_owned())
        .and_then(|v| {
            if v.is_empty() {
                Err(std::env::VarError::NotPresent)
            } else {
                Ok(v)
            }
        })
    {
        return Key::from_base64(&v, format!("env:{KEY_ENV}")).map(Some);
    }
    let path = default_key_file(env);
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| StateError::Io {
            path: path.clone(),
            source: e,
        })?;
        return Key::from_base64(&text, format!("file:{}", path.display())).map(Some);
    }
    if !create {
        return Ok(None);
    }
    let text = write_key_file(&path)?;
    tracing::info!(path = %path.display(), "created a new state encryption key; back it up: without it generated secrets cannot be read");
    Key::from_base64(&text, format!("file:{}", path.display())).map(Some)
}

/// Create a new key file (0600, never overwriting) and return its text.
fn write_key_file(path: &Path) -> Result<String, StateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| StateError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let text = Key::generate_base64();
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_base64(&Key::generate_base64(), "test".into()).unwrap()
    }

    #[test]
    fn round_trip_and_binding() {
        let k = key();
        let s = k.seal(b"top", "secret.a").unwrap();
        assert_eq!(k.open(&s, "secret.a").unwrap(), b"top");
        assert!(k.open(&s, "secret.b").is_err(), "moved blob must not open");
        assert!(!s.ciphertext.contains("top"));
    }

    #[test]
    fn wrong_key_is_named() {
        let (a, b) = (key(), key());
        let s = a.seal(b"x", "secret.a").unwrap();
        let e = b.open(&s, "secret.a").unwrap_err().to_string();
        assert!(e.contains(&a.id) && e.contains(&b.id), "{e}");
    }

    #[test]
    fn bad_key_text() {
        assert!(Key::from_base64("not base64!", "t".into()).is_err());
        assert!(Key::from_base64("AAAA", "t".into()).is_err());
    }
}
