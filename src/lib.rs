//! provisioner: from an empty OpenStack project to a working Earth-observation
//! data platform, driven by one environment file.
//!
//! Layers, each with one job: `env` (load, overlay, validate), `plan`
//! (desired model, diff, executor, retry), `state` (backends, lock, sealing),
//! `provider` (real operations per resource kind), `cli` (one file per command).

pub mod charts;
pub mod cli;
pub mod cluster;
pub mod core;
pub mod env;
pub mod image;
pub mod k8s;
pub mod openstack;
pub mod plan;
pub mod provider;
pub mod s3;
pub mod ssh;
pub mod state;
pub mod ui;
pub mod workload;

use provider::{Class, ProviderError};

/// Errors that reach the command line; each says what to do next, and keeps
/// the class of its cause for the exit code (README "Exit codes").
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
    #[error(transparent)]
    Charts(#[from] charts::ChartError),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// A command line that cannot be run as given.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Preflight(ProviderError),
    #[error("{context}: {source}")]
    Provider {
        context: String,
        #[source]
        source: ProviderError,
    },
    #[error("apply finished with {} error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Apply(Vec<plan::executor::ApplyError>),
    #[error(transparent)]
    Refused(#[from] plan::approval::Refusal),
    #[error(transparent)]
    SavedPlan(#[from] plan::saved::SavedPlanError),
    #[error("writing {what}: {source}")]
    Output {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What kind of failure this is, following the cause down to the provider.
    pub fn class(&self) -> Class {
        match self {
            Error::Preflight(e) | Error::Provider { source: e, .. } => e.class,
            Error::Image(e) if e.is_transient() => Class::Transient { after: None },
            Error::State(state::StateError::Locked { .. } | state::StateError::LockLost { .. }) => {
                Class::Conflict
            }
            // Several failures: the one that needs a person wins, then quota, then
            // conflicts; only all-transient is "retry later".
            Error::Apply(errors) => {
                let classes: Vec<Class> = errors
                    .iter()
                    .map(plan::executor::ApplyError::class)
                    .collect();
                [Class::Fatal, Class::Quota, Class::Conflict, Class::InUse]
                    .into_iter()
                    .find(|c| classes.contains(c))
                    .unwrap_or(Class::Transient { after: None })
            }
            _ => Class::Fatal,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.class().exit_code()
    }
}
