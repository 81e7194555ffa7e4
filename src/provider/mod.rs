//! Providers do the real work for resource kinds: read, find (adopt), create,
//! update, delete. Kinds without a provider can be planned but not applied.

pub mod bucket;
pub mod secret;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::env::model::Environment;
use crate::env::secret::Secret;
use crate::plan::resource::Address;
use crate::state::Record;

/// How the executor should treat a failure (design principle 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 429/5xx/reset/404-right-after-create: retry with backoff (`after` from Retry-After).
    Transient { after: Option<Duration> },
    /// 409 "in use": a dependent is still going away; retry, bounded.
    InUse,
    /// Validation, quota, permission, ownership: fail fast.
    Fatal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub class: Class,
    pub message: String,
}

impl ProviderError {
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { class: Class::Fatal, message: message.into() }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self { class: Class::Transient { after: None }, message: message.into() }
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
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Current state of a recorded resource; None when it no longer exists.
    async fn read(&self, addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError>;
    /// An existing resource this environment owns at `addr` (ownership tags),
    /// so a create interrupted before state was saved is adopted, not duplicated.
    /// `interrupted` is true when state says a create was started.
    async fn find(&self, addr: &Address, attrs: &BTreeMap<String, Value>, interrupted: bool) -> Result<Option<Live>, ProviderError>;
    async fn create(&self, addr: &Address, attrs: &BTreeMap<String, Value>) -> Result<Live, ProviderError>;
    async fn update(&self, addr: &Address, rec: &Record, attrs: &BTreeMap<String, Value>) -> Result<Live, ProviderError>;
    /// Deleting something already gone is success.
    async fn delete(&self, addr: &Address, rec: &Record) -> Result<(), ProviderError>;
    /// Every resource of this provider's kinds the environment owns (for `state rebuild` and sweeps).
    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError>;
}

pub struct Registry {
    entries: Vec<(Vec<&'static str>, Arc<dyn Provider>)>,
    /// The OpenStack provider itself, for preflight and call counts.
    pub openstack: Arc<crate::openstack::OpenStackProvider>,
}

impl Registry {
    pub fn for_env(env: &Environment, cloud: Option<&str>) -> Self {
        let openstack = Arc::new(crate::openstack::OpenStackProvider::new(env, cloud));
        let entries: Vec<(Vec<&'static str>, Arc<dyn Provider>)> = vec![
            (vec!["secret"], Arc::new(secret::SecretProvider)),
            (vec!["bucket"], Arc::new(bucket::BucketProvider::new(env))),
            (crate::openstack::KINDS.to_vec(), openstack.clone()),
        ];
        Self { entries, openstack }
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Provider>> {
        self.entries.iter().find(|(kinds, _)| kinds.contains(&kind)).map(|(_, p)| p)
    }

    /// Each provider once, with the kinds it serves.
    pub fn providers(&self) -> impl Iterator<Item = (&[&'static str], &Arc<dyn Provider>)> {
        self.entries.iter().map(|(k, p)| (k.as_slice(), p))
    }
}
