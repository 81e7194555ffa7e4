//! What state records: one entry per applied resource, written after every
//! step that changed something.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StateError;
use super::crypto::{Key, Sealed};
use crate::core::Address;
use crate::env::secret::Secret;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exists and matches `attrs`.
    #[default]
    Ready,
    /// A create was started and may or may not have happened: the next apply
    /// looks the resource up (adopts it) before creating.
    Creating,
    /// A delete was started: the next apply or destroy finishes it.
    Deleting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: Status,
    /// Attributes as applied (the diff's "before").
    pub attrs: BTreeMap<String, Value>,
    /// Facts the provider reported (addresses, ports); not compared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<Address>,
    /// Generated secret values, encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
    /// Decrypted secrets in memory only.
    #[serde(skip)]
    pub secrets: BTreeMap<String, Secret>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub format: u32,
    pub environment: String,
    /// Random id of this state's history; a state from another lineage is never overwritten.
    pub lineage: String,
    /// Increases with every save.
    pub serial: u64,
    pub updated_at: String,
    pub resources: BTreeMap<Address, Record>,
}

impl StateFile {
    pub fn new(environment: &str) -> Self {
        let mut bytes = [0u8; 8];
        rand::fill(&mut bytes);
        Self {
            format: FORMAT,
            environment: environment.to_owned(),
            lineage: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            serial: 0,
            updated_at: now(),
            resources: BTreeMap::new(),
        }
    }

    pub fn from_json(bytes: &[u8], what: &str) -> Result<Self, StateError> {
        let s: StateFile = serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
            what: what.into(),
            message: e.to_string(),
        })?;
        if s.format > FORMAT {
            return Err(StateError::Corrupt {
                what: what.into(),
                message: format!(
                    "state format {} is newer than this provisioner understands ({FORMAT}); upgrade provisioner",
                    s.format
                ),
            });
        }
        Ok(s)
    }

    /// Serialized with every in-memory secret sealed under `key`.
    pub fn to_json(&self, key: Option<&Key>) -> Result<Vec<u8>, StateError> {
        let mut copy = self.clone();
        for (addr, r) in &mut copy.resources {
            if r.secrets.is_empty() {
                continue;
            }
            let key = key.ok_or_else(|| StateError::NoKey {
                address: addr.to_string(),
            })?;
            let plain: BTreeMap<&str, &str> = r
                .secrets
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect();
            let bytes = serde_json::to_vec(&plain).map_err(|e| StateError::Corrupt {
                what: addr.to_string(),
                message: e.to_string(),
            })?;
            r.sealed = Some(key.seal(&bytes, addr.as_str())?);
        }
        serde_json::to_vec_pretty(&copy).map_err(|e| StateError::Corrupt {
            what: "state".into(),
            message: e.to_string(),
        })
    }

    /// Decrypt every sealed record into memory.
    pub fn unseal(&mut self, key: &Key) -> Result<(), StateError> {
        for (addr, r) in &mut self.resources {
            if let Some(s) = &r.sealed {
                let bytes = key.open(s, addr.as_str())?;
                let plain: BTreeMap<String, String> =
                    serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                        what: addr.to_string(),
                        message: e.to_string(),
                    })?;
                r.secrets = plain
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect();
            }
        }
        Ok(())
    }

    pub fn has_sealed(&self) -> bool {
        self.resources.values().any(|r| r.sealed.is_some())
    }

    /// The key id sealed records were written with (all share one key).
    pub fn sealed_key_id(&self) -> Option<&str> {
        self.resources
            .values()
            .find_map(|r| r.sealed.as_ref().map(|s| s.key_id.as_str()))
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
