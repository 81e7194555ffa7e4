//! The only door between the plan and the systems it changes. Each provider
//! declares the kinds it serves; the registry is built once per run, and every
//! kind of `plan::resource::KINDS` has exactly one provider (a test checks it).
//! Failures keep their class (transient, in use, conflict, quota, fatal) from
//! the call that failed to the exit code.

pub mod bucket;
pub mod certificate;
pub mod container_image;
pub mod secret;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::core::{Address, Secret};
use crate::env::model::Environment;
use crate::plan::diff::Change;
use crate::plan::resource::Desired;
use crate::state::Record;

/// How the executor should treat a failure (design principle 5), and what the
/// exit code says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 429/5xx/reset/404-right-after-create: retry with backoff (`after` from Retry-After).
    Transient { after: Option<Duration> },
    /// 409 "in use": a dependent is still going away; retry, bounded.
    InUse,
    /// Someone else holds it: another run's lock, another field manager. Fail fast.
    Conflict,
    /// The project's quota or capacity does not hold it. Fail fast.
    Quota,
    /// Validation, permission, ownership: fail fast.
    Fatal,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Transient { .. } => "transient",
            Class::InUse => "in_use",
            Class::Conflict => "conflict",
            Class::Quota => "quota",
            Class::Fatal => "fatal",
        }
    }

    /// Exit codes by class (README "Exit codes"): 1 fix the input, 3 retry
    /// later, 4 raise a quota, 5 wait for or resolve the other party.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Fatal => 1,
            Class::Transient { .. } => 3,
            Class::Quota => 4,
            Class::InUse | Class::Conflict => 5,
        }
    }
}

impl Serialize for Class {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub class: Class,
    pub message: String,
    /// The error of the library call underneath, when there was one.
    #[source]
    pub source: Option<Cause>,
}

impl ProviderError {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            source: None,
        }
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(Class::Fatal, message)
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(Class::Transient { after: None }, message)
    }
    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(Class::Quota, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Class::Conflict, message)
    }
    /// Keep the library error that caused this one.
    pub fn caused_by(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(e));
        self
    }
    /// The same failure, said in a wider context.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// What a provider reports about a live resource.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub id: String,
    /// In the same shape as desired attributes, for drift detection.
    pub attrs: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
    /// What the attributes were compared with, when that is worth saying
    /// (`the live cluster, by server-side dry-run`).
    pub basis: Option<String>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// The resource kinds this provider serves; each kind has exactly one provider.
    fn kinds(&self) -> &'static [&'static str];
    /// Checks before the first change (quotas, images, reachability), given the
    /// changes of this provider's kinds. Nothing may be mutated here.
    async fn preflight(
        &self,
        _changes: &[&Change],
        _desired: &[Desired],
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    /// Current state of a recorded resource; None when it no longer exists.
    async fn read(&self, addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError>;
    /// An existing resource this environment owns at `addr` (ownership tags),
    /// so a create interrupted before state was saved is adopted, not duplicated.
    /// `interrupted` is true when state says a create was started.
    async fn find(
        &self,
        addr: &Address,
        attrs: &BTreeMap<String, Value>,
        interrupted: bool,
    ) -> Result<Option<Live>, ProviderError>;
    async fn create(
        &self,
        addr: &Address,
        attrs: &BTreeMap<String, Value>,
    ) -> Result<Live, ProviderError>;
    async fn update(
        &self,
        addr: &Address,
        rec: &Record,
        attrs: &BTreeMap<String, Value>,
    ) -> Result<Live, ProviderError>;
    /// Deleting something already gone is success.
    async fn delete(&self, addr: &Address, rec: &Record) -> Result<(), ProviderError>;
    /// Every resource of this provider's kinds the environment owns (for `state rebuild` and sweeps).
    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError>;
    /// API calls made so far, for reports and benchmarks.
    fn api_calls(&self) -> u64 {
        0
    }
    /// The revisions a resource went through, newest last (releases keep a
    /// history; most kinds have none).
    async fn revisions(&self, _addr: &Address, _rec: &Record) -> Result<Vec<Value>, ProviderError> {
        Ok(Vec::new())
    }
    /// Go back to revision `to` (default: the one before the current), as a
    /// new revision; returns the resource as it now is.
    async fn revert(
        &self,
        addr: &Address,
        _rec: &Record,
        _to: Option<u64>,
    ) -> Result<Live, ProviderError> {
        Err(ProviderError::fatal(format!(
            "{addr}: its kind keeps no revisions to go back to"
        )))
    }
    /// What this provider can say about the live system its records describe
    /// (`provisioner status`): read calls only; None when it has nothing to say.
    async fn status(&self, _records: &BTreeMap<Address, Record>) -> Option<Value> {
        None
    }
    /// Facts about the system this provider manages that the desired model
    /// needs (the cluster's version and served APIs); None when unknown or
    /// unreachable. Read calls only.
    async fn facts(&self) -> Option<Facts> {
        None
    }
    /// A day-2 operation beyond converging, on the system `records` describe;
    /// None when this provider does not offer it. Approval and the state lock
    /// are the caller's.
    async fn task(
        &self,
        _task: &Task,
        _records: &BTreeMap<Address, Record>,
    ) -> Option<Result<Value, ProviderError>> {
        None
    }
}

/// Day-2 operations (`provisioner etcd …`), offered by the layer that owns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Take an etcd snapshot now, on the first member that answers.
    EtcdSnapshot,
    /// The etcd snapshots in the bucket and on the members.
    EtcdSnapshots,
    /// Replace every member's data with a snapshot (a file here, or a name in the bucket).
    EtcdRestore { snapshot: String },
}

impl Task {
    /// The command that runs it, for messages and the lock.
    pub fn command(&self) -> &'static str {
        match self {
            Task::EtcdSnapshot => "etcd snapshot",
            Task::EtcdSnapshots => "etcd snapshots",
            Task::EtcdRestore { .. } => "etcd restore",
        }
    }
}

/// What providers tell the desired model about their targets.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The Kubernetes cluster's version and APIs, from its discovery.
    pub capabilities: Option<crate::charts::Capabilities>,
    /// The API server the platform layer deploys to; None when no cluster is configured.
    pub cluster: Option<String>,
}

/// How to reach the systems an environment lives in, and how to treat them,
/// from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// clouds.yaml entry (`--cloud`), else `cloud.name`, else `OS_*` variables.
    pub cloud: Option<String>,
    /// Kubeconfig for the platform layer until the cluster layer provides one.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Take over fields another field manager owns (`--force-conflicts`).
    pub force_conflicts: bool,
    /// Do not wait for releases to become ready (`--no-wait`).
    pub no_wait: bool,
    /// `certs rotate`: issue every leaf certificate again (and, with `ca`, the CAs).
    pub rotate: Option<Rotation>,
}

/// What `provisioner certs rotate` renews, whatever the expiry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    /// The CAs too (the service-account key is kept, so tokens stay valid).
    pub ca: bool,
}

pub struct Registry {
    providers: Vec<Arc<dyn Provider>>,
}

impl Registry {
    /// The providers of every layer. Building one does no I/O: providers
    /// authenticate on first use, so plans of empty state stay offline.
    pub fn for_env(env: &Environment, conn: &Options) -> Self {
        Self::new(vec![
            Arc::new(secret::SecretProvider),
            Arc::new(certificate::CertificateProvider),
            Arc::new(bucket::BucketProvider::new(env)),
            Arc::new(container_image::ContainerImageProvider::new(env)),
            Arc::new(crate::openstack::OpenStackProvider::new(
                env,
                conn.cloud.as_deref(),
            )),
            Arc::new(crate::cluster::ClusterProvider::new(env, conn.rotate)),
            Arc::new(crate::k8s::provider::PlatformProvider::new(env, conn)),
        ])
    }

    pub fn new(providers: Vec<Arc<dyn Provider>>) -> Self {
        Self { providers }
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.kinds().contains(&kind))
    }

    /// Each provider once.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.providers.iter()
    }

    /// Every provider's preflight, each given the changes of its own kinds.
    pub async fn preflight(
        &self,
        changes: &[Change],
        desired: &[Desired],
    ) -> Result<(), ProviderError> {
        for p in &self.providers {
            let mine: Vec<&Change> = changes
                .iter()
                .filter(|c| p.kinds().contains(&c.kind.as_str()))
                .collect();
            if !mine.is_empty() {
                p.preflight(&mine, desired).await?;
            }
        }
        Ok(())
    }

    pub fn api_calls(&self) -> u64 {
        self.providers.iter().map(|p| p.api_calls()).sum()
    }

    /// Every provider's facts, merged.
    pub async fn facts(&self) -> Facts {
        let mut out = Facts::default();
        for p in &self.providers {
            if let Some(f) = p.facts().await {
                out.capabilities = out.capabilities.or(f.capabilities);
                out.cluster = out.cluster.or(f.cluster);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::resource::KINDS;

    #[test]
    fn every_kind_has_exactly_one_provider() {
        let env = crate::env::load::load(&crate::env::load::Source::Embedded, "staging")
            .unwrap()
            .env;
        let reg = Registry::for_env(&env, &Options::default());
        for spec in KINDS {
            let n = reg
                .providers()
                .filter(|p| p.kinds().contains(&spec.kind))
                .count();
            assert_eq!(n, 1, "kind `{}` has {n} providers", spec.kind);
        }
        for p in reg.providers() {
            for k in p.kinds() {
                assert!(
                    KINDS.iter().any(|s| s.kind == *k),
                    "a provider serves `{k}`, which KINDS does not declare"
                );
            }
        }
    }
}
