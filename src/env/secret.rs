//! Secret references. Environment files never hold secret values: a secret is
//! read from an environment variable, read from a file, or generated once and
//! kept encrypted in state.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    /// Name of an environment variable holding the value.
    Env(String),
    /// Path of a file holding the value (`~` expanded; trailing newline trimmed).
    File(String),
    /// Generated on first apply, then kept encrypted in state.
    Generate(Generate),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    #[serde(default = "default_length")]
    pub length: u16,
    #[serde(default)]
    pub charset: Charset,
}

fn default_length() -> u16 {
    32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Charset {
    #[default]
    Alphanumeric,
    Hex,
    /// 32 random bytes, base64 (keys).
    Base64,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(v) => write!(f, "env:{v}"),
            Self::File(p) => write!(f, "file:{p}"),
            Self::Generate(g) => write!(f, "generate:{}x{:?}", g.length, g.charset),
        }
    }
}

pub use crate::core::Secret;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret `{name}` reads environment variable {var}, which is not set; export it (the value never appears in logs or state)"
    )]
    EnvMissing { name: String, var: String },
    #[error("secret `{name}` reads {path}: {source}; create the file or fix the path")]
    File {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secret `{name}` is generated at apply time and is not in state yet; run `provisioner up` first"
    )]
    NotGenerated { name: String },
}

impl SecretRef {
    /// Resolve an `env:` or `file:` reference; generated secrets live in state.
    pub fn resolve(&self, name: &str) -> Result<Secret, SecretError> {
        match self {
            Self::Env(var) => {
                std::env::var(var)
                    .map(Secret::new)
                    .map_err(|_| SecretError::EnvMissing {
                        name: name.into(),
                        var: var.clone(),
                    })
            }
            Self::File(p) => {
                let path = expand_home(p);
                std::fs::read_to_string(&path)
                    .map(|s| Secret::new(s.trim_end_matches(['\n', '\r']).to_owned()))
                    .map_err(|source| SecretError::File {
                        name: name.into(),
                        path,
                        source,
                    })
            }
            Self::Generate(_) => Err(SecretError::NotGenerated { name: name.into() }),
        }
    }
}

pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RefVisitor)
    }
}

const HINT: &str = "secrets are references, never values: write `{env: VAR}`, `{file: path}` or `{generate: {length: 32}}`";

struct RefVisitor;

impl<'de> Visitor<'de> for RefVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a secret reference")
    }

    // Any scalar here is an inline secret: refuse it without echoing the value.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
        Err(E::custom(format!(
            "inline secret value is not allowed; {HINT}"
        )))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
        self.visit_str("")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
        self.visit_str("")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
        self.visit_str("")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
        self.visit_str("")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!("empty secret reference; {HINT}")));
        };
        let r = match key.as_str() {
            "env" => SecretRef::Env(map.next_value()?),
            "file" => SecretRef::File(map.next_value()?),
            "generate" => {
                let g: Option<Generate> = map.next_value()?;
                SecretRef::Generate(g.unwrap_or(Generate {
                    length: default_length(),
                    charset: Charset::default(),
                }))
            }
            other => {
                return Err(de::Error::custom(format!(
                    "unknown secret source `{other}`; {HINT}"
                )));
            }
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom(format!(
                "a secret reference has exactly one source; {HINT}"
            )));
        }
        Ok(r)
    }
}

/// Keys in free-form values (release overrides) that must hold references, not values.
pub fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "private_key",
        "privatekey",
        "access_key",
        "accesskey",
        "credentials",
    ]
    .iter()
    .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_source() {
        let e: SecretRef = serde_json::from_str(r#"{"env":"X"}"#).unwrap();
        assert_eq!(e, SecretRef::Env("X".into()));
        let g: SecretRef =
            serde_json::from_str(r#"{"generate":{"length":16,"charset":"hex"}}"#).unwrap();
        assert_eq!(
            g,
            SecretRef::Generate(Generate {
                length: 16,
                charset: Charset::Hex
            })
        );
        let g: SecretRef = serde_json::from_str(r#"{"generate":null}"#).unwrap();
        assert!(matches!(g, SecretRef::Generate(_)));
    }

    #[test]
    fn inline_value_is_refused_without_echo() {
        let e = serde_json::from_str::<SecretRef>(r#""hunter2-canary""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inline secret value"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn debug_redacts() {
        assert_eq!(
            format!("{:?}", Secret::new("v".into())),
            "Secret(<redacted>)"
        );
    }
}
