//! provisioner: from an empty OpenStack project to a working Earth-observation
//! data platform, driven by one environment file.
//!
//! Layers, each with one job: `env` (load, overlay, validate), `plan`
//! (desired model, diff, executor, retry), `state` (backends, lock, sealing),
//! `provider` (real operations per resource kind), `cli` (one file per command).

pub mod cli;
pub mod env;
pub mod openstack;
pub mod plan;
pub mod provider;
pub mod s3;
pub mod state;
pub mod ui;
pub mod workload;

/// Errors that reach the command line; each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Env(#[from] env::load::EnvError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Secret(#[from] env::secret::SecretError),
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Preflight(String),
    #[error("{0}")]
    Provider(String),
    #[error("apply finished with {} error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Apply(Vec<String>),
}
