//! Saved plans (`plan ENV --out FILE`, then `up ENV --plan FILE`): what a
//! reviewer approved is exactly what is applied, or nothing is.
//!
//! The file records the changes and the desired attributes they apply (in
//! desired form: references, never secret values), the digest of every input
//! file, the state's lineage, serial and a digest per record, the provisioner
//! version, and a checksum over all of it. Applying refuses a file whose
//! checksum does not match (it was edited), a plan for another environment or
//! version, and a stale plan: the state or an input changed since, named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diff::Change;
use super::resource::{Desired, kind_spec};
use super::session::{Operation, Plan};
use crate::core::Address;
use crate::core::digest::sha256_json;
use crate::state::{Record, StateFile};

const KIND: &str = "provisioner-plan";
const FORMAT: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot read the plan file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the plan file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a provisioner plan file: {message}\n  hint: write one with `provisioner plan ENV --out FILE`", path.display())]
    NotAPlan { path: PathBuf, message: String },
    #[error("refused: {} was edited after it was written (its checksum does not match its content)\n  hint: make a new plan with `provisioner plan ENV --out FILE`; a reviewed plan is applied as written or not at all", path.display())]
    Edited { path: PathBuf },
    #[error("refused: {} was made by provisioner {made_with}, this is {running}\n  hint: plan again with this version", path.display())]
    Version {
        path: PathBuf,
        made_with: String,
        running: String,
    },
    #[error("refused: {} is a plan for environment `{planned}`, not `{given}`", path.display())]
    OtherEnvironment {
        path: PathBuf,
        planned: String,
        given: String,
    },
    #[error("refused: {} is stale, nothing was changed:\n{}\n  hint: review a new plan: `provisioner plan {environment} --out FILE`", path.display(), changed.iter().map(|c| format!("    {c}")).collect::<Vec<_>>().join("\n"))]
    Stale {
        path: PathBuf,
        environment: String,
        changed: Vec<String>,
    },
}

/// A desired resource as saved: its address and attributes (kind semantics
/// and dependencies follow from them).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedResource {
    address: Address,
    attrs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateStamp {
    lineage: String,
    serial: u64,
    /// Digest of each record as it was read (sealed blobs included, never opened).
    records: BTreeMap<Address, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    format_version: String,
    kind: String,
    provisioner_version: String,
    environment: String,
    pub operation: Operation,
    targets: Vec<String>,
    /// Every input file (environment files, charts, stacks) and its digest.
    inputs: BTreeMap<String, String>,
    state: StateStamp,
    changes: Vec<Change>,
    desired: Vec<SavedResource>,
    /// Records `destroy`'s sweep added to the state it planned against.
    swept: BTreeMap<Address, Record>,
    /// `sha256:` of this document's JSON without the `checksum` key.
    #[serde(default)]
    checksum: String,
}

/// The checksum of a plan document: over its JSON value (as written or as
/// read), so it does not depend on how the fields round-trip.
fn checksum_of(doc: &Value) -> String {
    let mut v = doc.clone();
    if let Value::Object(m) = &mut v {
        m.remove("checksum");
    }
    sha256_json(&v)
}

fn stamp(state: &StateFile, swept: &BTreeMap<Address, Record>) -> StateStamp {
    let records = state
        .resources
        .iter()
        .filter(|(a, _)| !swept.contains_key(*a))
        .map(|(a, r)| (a.clone(), sha256_json(r)))
        .collect();
    StateStamp {
        lineage: state.lineage.clone(),
        serial: state.serial,
        records,
    }
}

impl SavedPlan {
    /// `inputs`: every input file and its digest (`Session::inputs`).
    pub fn new(plan: &Plan, environment: &str, inputs: Vec<(String, String)>) -> Self {
        // Only what the changes apply: the rest of the model is not needed to apply them.
        let applied: Vec<&Address> = plan.changes.iter().map(|c| &c.address).collect();
        let mut p = SavedPlan {
            format_version: FORMAT.into(),
            kind: KIND.into(),
            provisioner_version: env!("CARGO_PKG_VERSION").into(),
            environment: environment.to_owned(),
            operation: plan.operation,
            targets: plan.targets.clone(),
            inputs: inputs.into_iter().collect(),
            state: stamp(&plan.state, &plan.swept),
            changes: plan.changes.clone(),
            desired: plan
                .desired
                .iter()
                .filter(|d| applied.contains(&&d.address))
                .map(|d| SavedResource {
                    address: d.address.clone(),
                    attrs: d.attrs.clone(),
                })
                .collect(),
            swept: plan.swept.clone(),
            checksum: String::new(),
        };
        p.checksum = serde_json::to_value(&p)
            .map(|v| checksum_of(&v))
            .unwrap_or_default();
        p
    }

    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        let write = |source| SavedPlanError::Write {
            path: path.to_path_buf(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| write(std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(write)?;
        std::fs::rename(&tmp, path).map_err(write)
    }

    pub fn read(path: &Path) -> Result<Self, SavedPlanError> {
        let bytes = std::fs::read(path).map_err(|source| SavedPlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let not_a_plan = |message: String| SavedPlanError::NotAPlan {
            path: path.to_path_buf(),
            message,
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| not_a_plan(e.to_string()))?;
        if v.get("kind").and_then(Value::as_str) != Some(KIND) {
            return Err(not_a_plan(format!("no `kind: {KIND}`")));
        }
        if v.get("format_version").and_then(Value::as_str) != Some(FORMAT) {
            return Err(not_a_plan(format!("format_version is not {FORMAT}")));
        }
        if v.get("checksum").and_then(Value::as_str) != Some(checksum_of(&v).as_str()) {
            return Err(SavedPlanError::Edited {
                path: path.to_path_buf(),
            });
        }
        // The checksum matched, so the shape is ours unless another version wrote it.
        serde_json::from_value(v).map_err(|e| not_a_plan(e.to_string()))
    }

    /// The plan to apply, if it still holds for these inputs and this state.
    pub fn into_plan(
        self,
        path: &Path,
        environment: &str,
        inputs: Vec<(String, String)>,
        mut state: StateFile,
    ) -> Result<Plan, SavedPlanError> {
        let path = path.to_path_buf();
        if self.provisioner_version != env!("CARGO_PKG_VERSION") {
            return Err(SavedPlanError::Version {
                path,
                made_with: self.provisioner_version,
                running: env!("CARGO_PKG_VERSION").into(),
            });
        }
        if self.environment != environment {
            return Err(SavedPlanError::OtherEnvironment {
                path,
                planned: self.environment,
                given: environment.to_owned(),
            });
        }
        let mut changed = Vec::new();
        let now: BTreeMap<String, String> = inputs.into_iter().collect();
        for (f, d) in &self.inputs {
            match now.get(f) {
                None => changed.push(format!("input {f} is no longer read")),
                Some(n) if n != d => changed.push(format!("input {f} changed")),
                _ => {}
            }
        }
        changed.extend(
            now.keys()
                .filter(|f| !self.inputs.contains_key(*f))
                .map(|f| format!("input {f} is new")),
        );
        // A state never written has a lineage of its own each time it is read: only
        // written states are compared by lineage.
        if self.state.serial > 0 && state.serial > 0 && state.lineage != self.state.lineage {
            changed.push(format!(
                "the state was replaced (lineage {} → {})",
                self.state.lineage, state.lineage
            ));
        } else if state.serial != self.state.serial {
            let current = stamp(&state, &BTreeMap::new());
            changed.push(format!(
                "the state changed since the plan was made (serial {} → {})",
                self.state.serial, state.serial
            ));
            for (a, d) in &current.records {
                match self.state.records.get(a) {
                    None => changed.push(format!("  {a} was added")),
                    Some(old) if old != d => changed.push(format!("  {a} changed")),
                    _ => {}
                }
            }
            changed.extend(
                self.state
                    .records
                    .keys()
                    .filter(|a| !current.records.contains_key(*a))
                    .map(|a| format!("  {a} was removed")),
            );
        }
        if !changed.is_empty() {
            return Err(SavedPlanError::Stale {
                path,
                environment: environment.to_owned(),
                changed,
            });
        }
        let mut desired = Vec::new();
        for r in self.desired {
            if kind_spec(r.address.kind()).is_none() {
                return Err(SavedPlanError::NotAPlan {
                    path,
                    message: format!("unknown kind of {}", r.address),
                });
            }
            desired.push(Desired::new(
                r.address,
                Value::Object(r.attrs.into_iter().collect()),
            ));
        }
        for (a, r) in &self.swept {
            state
                .resources
                .entry(a.clone())
                .or_insert_with(|| r.clone());
        }
        Ok(Plan {
            operation: self.operation,
            targets: self.targets,
            state,
            swept: self.swept,
            desired,
            changes: self.changes,
            notes: Vec::new(),
        })
    }
}
