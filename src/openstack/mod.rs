//! The OpenStack layer: authentication, one file per resource kind, and the
//! provider that dispatches plan operations to them. Every resource carries
//! ownership (tags where the API has them, otherwise names or metadata), so
//! lost state can be rebuilt and `destroy` can sweep leftovers.

pub mod auth;
pub mod client;
pub mod floating_ip;
pub mod image;
pub mod keypair;
pub mod network;
pub mod neutron;
pub mod preflight;
pub mod router;
pub mod security_group;
pub mod server;
pub mod server_group;
pub mod subnet;
pub mod volume;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::core::Address;
use crate::env::model::Environment;
use crate::provider::{Live, Provider, ProviderError};
use crate::state::Record;
use client::Api;

pub type Attrs = BTreeMap<String, Value>;

/// What every kind's calls need: the API, the environment (ownership), timeouts.
pub struct Cx {
    pub api: Api,
    /// The `openstack` crate on the same session, for typed catalog lookups
    /// (flavors, images); everything it lacks goes through `api`.
    pub cloud: openstack::Cloud,
    pub env: String,
    pub timeouts: crate::env::model::Timeouts,
    pub external_network: String,
    /// The environment's keypair name: keypairs cannot be tagged, the name is their owner.
    pub keypair_name: String,
    /// SSH to builder servers (the cluster layer's engine and keys).
    pub ssh: std::sync::Arc<crate::ssh::Ssh>,
    ext_net_id: OnceCell<String>,
}

impl Cx {
    /// The external network's id (routers' gateway, floating IPs).
    pub async fn external_network_id(&self) -> Result<String, ProviderError> {
        self.ext_net_id
            .get_or_try_init(|| async {
                let by_id = neutron::show(&self.api, neutron::NETWORKS, &self.external_network).await.ok().flatten();
                let found = match by_id {
                    Some(n) => Some(n),
                    None => neutron::list(&self.api, neutron::NETWORKS, &[("name", self.external_network.clone())]).await?.into_iter().next(),
                };
                let n = found.ok_or_else(|| ProviderError::fatal(format!("external network `{}` does not exist; set cloud.external_network to one of the provider networks", self.external_network)))?;
                neutron::id_of(&n).map_err(ProviderError::from)
            })
            .await
            .cloned()
    }

    /// Poll `probe` until it answers Some, failing after `timeout`.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        probe: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ProviderError>>,
    {
        crate::core::wait::until(timeout, Duration::from_secs(5), probe)
            .await?
            .ok_or_else(|| ProviderError::fatal(format!("{what}: not ready after {timeout:?}; raise timeouts.create if the cloud is slow")))
    }
}

#[async_trait]
pub trait Kind: Send + Sync {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError>;
    async fn find(
        &self,
        cx: &Cx,
        addr: &Address,
        attrs: &Attrs,
        interrupted: bool,
    ) -> Result<Option<Live>, ProviderError>;
    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError>;
    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError>;
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError>;
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError>;
}

pub fn live(id: String, attrs: &Attrs) -> Live {
    Live {
        id,
        attrs: attrs.clone(),
        ..Live::default()
    }
}

/// The recorded attributes with what the API reports overlaid (for drift).
pub fn observed(rec: &Record, fields: &[(&str, Option<Value>)]) -> Attrs {
    let mut a = rec.attrs.clone();
    for (k, v) in fields {
        if let Some(v) = v
            && a.contains_key(*k)
        {
            a.insert((*k).to_owned(), v.clone());
        }
    }
    a
}

pub fn rec_id(rec: &Record) -> Result<&str, ProviderError> {
    rec.id
        .as_deref()
        .ok_or_else(|| ProviderError::fatal("record has no id"))
}

pub struct OpenStackProvider {
    cloud: Option<String>,
    region: String,
    env: String,
    external_network: String,
    keypair_name: String,
    timeouts: crate::env::model::Timeouts,
    ssh: std::sync::Arc<crate::ssh::Ssh>,
    cx: OnceCell<Cx>,
    kinds: BTreeMap<&'static str, Box<dyn Kind>>,
}

pub const KINDS: &[&str] = &[
    "keypair",
    "network",
    "subnet",
    "router",
    "router_interface",
    "security_group",
    "security_group_rule",
    "server_group",
    "server",
    "volume",
    "volume_attachment",
    "floating_ip",
    "image",
];

impl OpenStackProvider {
    pub fn new(env: &Environment, cloud_override: Option<&str>) -> Self {
        let mut kinds: BTreeMap<&'static str, Box<dyn Kind>> = BTreeMap::new();
        kinds.insert("keypair", Box::new(keypair::Keypair));
        kinds.insert("network", Box::new(network::NETWORK));
        kinds.insert("subnet", Box::new(subnet::Subnet));
        kinds.insert("router", Box::new(router::Router));
        kinds.insert("router_interface", Box::new(router::Interface));
        kinds.insert("security_group", Box::new(security_group::GROUP));
        kinds.insert("security_group_rule", Box::new(security_group::Rule));
        kinds.insert("server_group", Box::new(server_group::ServerGroup));
        kinds.insert("server", Box::new(server::Server));
        kinds.insert("volume", Box::new(volume::Volume));
        kinds.insert("volume_attachment", Box::new(volume::Attachment));
        kinds.insert("floating_ip", Box::new(floating_ip::FloatingIp));
        kinds.insert("image", Box::new(image::NodeImage));
        Self {
            cloud: auth::cloud_name(cloud_override, env.cloud.name.as_deref()),
            region: env.cloud.region.clone(),
            env: env.name.clone(),
            external_network: env.cloud.external_network.clone(),
            keypair_name: env.keypair.name.clone(),
            timeouts: env.timeouts.clone(),
            ssh: crate::cluster::ssh_for(env),
            cx: OnceCell::new(),
            kinds,
        }
    }

    /// Authenticate on first use, so plans of empty state need no credentials.
    pub async fn cx(&self) -> Result<&Cx, ProviderError> {
        self.cx
            .get_or_try_init(|| async {
                let session = auth::session(self.cloud.as_deref(), &self.region)
                    .await
                    .map_err(|e| ProviderError::fatal(e.to_string()))?;
                Ok::<Cx, ProviderError>(Cx {
                    cloud: openstack::Cloud::from(session.clone()),
                    api: Api::new(session),
                    env: self.env.clone(),
                    timeouts: self.timeouts.clone(),
                    external_network: self.external_network.clone(),
                    keypair_name: self.keypair_name.clone(),
                    ssh: self.ssh.clone(),
                    ext_net_id: OnceCell::new(),
                })
            })
            .await
    }

    fn kind(&self, k: &str) -> Result<&dyn Kind, ProviderError> {
        self.kinds
            .get(k)
            .map(|b| b.as_ref())
            .ok_or_else(|| ProviderError::fatal(format!("no OpenStack kind `{k}`")))
    }
}

#[async_trait]
impl Provider for OpenStackProvider {
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }
    /// Quotas, image, flavors, external network: all before the first create.
    async fn preflight(
        &self,
        changes: &[&crate::plan::diff::Change],
        desired: &[crate::plan::resource::Desired],
    ) -> Result<(), ProviderError> {
        use crate::plan::diff::Action;
        if !changes
            .iter()
            .any(|c| matches!(c.action, Action::Create | Action::Replace))
        {
            return Ok(());
        }
        let needs = preflight::check(self.cx().await?, changes, desired).await?;
        tracing::info!(?needs, "preflight passed");
        Ok(())
    }
    /// API calls made so far (for the benchmark and `--output json` reports).
    fn api_calls(&self) -> u64 {
        self.cx.get().map_or(0, |c| c.api.calls())
    }
    async fn read(&self, addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError> {
        self.kind(addr.kind())?.read(self.cx().await?, rec).await
    }
    async fn find(
        &self,
        addr: &Address,
        attrs: &Attrs,
        interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        self.kind(addr.kind())?
            .find(self.cx().await?, addr, attrs, interrupted)
            .await
    }
    async fn create(&self, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        self.kind(addr.kind())?
            .create(self.cx().await?, addr, attrs)
            .await
    }
    async fn update(
        &self,
        addr: &Address,
        rec: &Record,
        attrs: &Attrs,
    ) -> Result<Live, ProviderError> {
        self.kind(addr.kind())?
            .update(self.cx().await?, rec, attrs)
            .await
    }
    async fn delete(&self, addr: &Address, rec: &Record) -> Result<(), ProviderError> {
        self.kind(addr.kind())?.delete(self.cx().await?, rec).await
    }
    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError> {
        let cx = self.cx().await?;
        let mut out = Vec::new();
        for k in self.kinds.values() {
            out.extend(k.discover(cx).await?);
        }
        Ok(out)
    }
}
