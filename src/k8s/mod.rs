//! The platform layer's side of Kubernetes: one client (the only code that
//! talks to an API server), server-side apply with field manager
//! `provisioner`, readiness per kind, release history kept in the cluster,
//! and the provider that installs, prunes and rolls back releases.

pub mod client;
pub mod history;
pub mod normalize;
pub mod provider;
pub mod ready;
pub mod release;

use crate::provider::{Class, ProviderError};

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error(
        "no kubeconfig: {message}\n  hint: pass --kubeconfig FILE (or set KUBECONFIG); once the cluster layer exists its kubeconfig comes from state"
    )]
    Config { message: String },
    #[error(
        "cannot reach the cluster at {server}: {message}\n  hint: check that the API server runs and that --kubeconfig/--context point at it"
    )]
    Unreachable { server: String, message: String },
    #[error("{object}: {message}")]
    Api {
        object: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error(
        "{object}: field {field} is managed by `{manager}`; applying would take it over\n  hint: if provisioner should own it, rerun with --force-conflicts"
    )]
    Conflict {
        object: String,
        field: String,
        manager: String,
    },
    #[error(
        "{object}: the cluster serves no {kind} in {api_version}\n  hint: install its CRD first (ship it in a chart's crds/) or fix apiVersion"
    )]
    NoKind {
        object: String,
        kind: String,
        api_version: String,
    },
    #[error("{0}")]
    NotReady(String),
}

impl From<K8sError> for ProviderError {
    fn from(e: K8sError) -> Self {
        let class = match &e {
            K8sError::Unreachable { .. } => Class::Transient { after: None },
            // Server-side apply reports a manifest it cannot type as a 500; retrying cannot help.
            K8sError::Api {
                code: 500, message, ..
            } if message.contains("typed patch") => Class::Fatal,
            K8sError::Api {
                code: 429 | 500..=599,
                ..
            } => Class::Transient { after: None },
            K8sError::Api { code: 409, .. } | K8sError::Conflict { .. } => Class::Conflict,
            K8sError::Api {
                code: 403, message, ..
            } if message.contains("quota") => Class::Quota,
            _ => Class::Fatal,
        };
        ProviderError::new(class, e.to_string()).caused_by(e)
    }
}
