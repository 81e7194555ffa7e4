//! Container images pushed to the environment's registry (kind
//! `container_image`). A create or update builds the image again from its
//! recipe (the cache makes that a hash of the binary) and refuses to push
//! if the digest is not the one planned; the registry is asked for each blob
//! first, so an unchanged layer is never sent twice. Deleting forgets the
//! image but leaves it in the registry: a digest is content, and another
//! environment may run the very same one (Terraform's `keep_remotely`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::{Class, Live, Provider, ProviderError};
use crate::core::Address;
use crate::env::model::{Environment, RegistryConfig};
use crate::image::registry::{Endpoint, Registry, RegistryError};
use crate::image::{ImageError, cache};
use crate::state::Record;

pub struct ContainerImageProvider {
    config: Option<RegistryConfig>,
    registry: OnceCell<Registry>,
}

fn error(e: ImageError) -> ProviderError {
    let class = if e.is_transient() {
        Class::Transient { after: None }
    } else {
        Class::Fatal
    };
    ProviderError::new(class, e.to_string()).caused_by(e)
}

fn registry_error(e: RegistryError) -> ProviderError {
    error(ImageError::Registry(e))
}

/// How to reach the environment's registry, its password read now.
pub fn endpoint(r: &RegistryConfig) -> Result<Endpoint, ProviderError> {
    let password = match &r.password {
        Some(p) => Some(
            p.resolve("registry.password")
                .map_err(|e| ProviderError::fatal(e.to_string()))?,
        ),
        None => None,
    };
    Ok(Endpoint {
        url: r.url.clone(),
        username: r.username.clone(),
        password,
        ca_file: r.ca_file.as_deref().map(crate::env::secret::expand_home),
        insecure: r.insecure,
    })
}

impl ContainerImageProvider {
    pub fn new(env: &Environment) -> Self {
        Self {
            config: env.registry.clone(),
            registry: OnceCell::new(),
        }
    }

    async fn registry(&self) -> Result<&Registry, ProviderError> {
        self.registry
            .get_or_try_init(|| async {
                let cfg = self.config.as_ref().ok_or_else(|| {
                    ProviderError::fatal("container images need `registry:` in the environment")
                })?;
                Registry::new(&endpoint(cfg)?).map_err(registry_error)
            })
            .await
    }

    async fn live(&self, attrs: &BTreeMap<String, Value>) -> Result<Option<Live>, ProviderError> {
        let (Some(repo), Some(digest)) = (
            attrs.get("repository").and_then(Value::as_str),
            attrs.get("digest").and_then(Value::as_str),
        ) else {
            return Ok(None);
        };
        let r = self.registry().await?;
        if !r.manifest_exists(repo, digest).await.map_err(registry_error)? {
            return Ok(None);
        }
        Ok(Some(Live {
            id: format!("{}/{repo}@{digest}", r.host),
            attrs: attrs.clone(),
            outputs: [("reference".to_owned(), json!(format!("{}/{repo}@{digest}", r.host)))]
                .into_iter()
                .collect(),
            ..Live::default()
        }))
    }

    async fn push(&self, addr: &Address, attrs: &BTreeMap<String, Value>) -> Result<Live, ProviderError> {
        let dir = attrs
            .get("recipe")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::fatal(format!("{addr}: no recipe folder")))?
            .to_owned();
        let want = attrs.get("digest").and_then(Value::as_str).unwrap_or_default().to_owned();
        let built = tokio::task::spawn_blocking(move || {
            crate::image::build(&crate::image::Recipe::load(&dir)?, std::path::Path::new("."))
        })
        .await
        .map_err(|e| ProviderError::fatal(format!("{addr}: build task: {e}")))?
        .map_err(error)?;
        if built.digest != want {
            return Err(ProviderError::conflict(format!(
                "{addr}: the image built now is {}, not the planned {want}: its inputs changed since the plan; plan again",
                built.digest
            )));
        }
        let r = self.registry().await?;
        let report = r
            .push(&built, &cache::Blobs::new(&cache::root()))
            .await
            .map_err(error)?;
        tracing::info!(image = %addr, uploaded = report.uploaded, skipped = report.skipped, bytes = report.bytes_uploaded, "pushed");
        let mut live = self
            .live(attrs)
            .await?
            .ok_or_else(|| ProviderError::transient(format!("{addr}: pushed, but the registry does not list {want} yet")))?;
        live.outputs.insert("uploaded_blobs".into(), json!(report.uploaded));
        live.outputs.insert("skipped_blobs".into(), json!(report.skipped));
        Ok(live)
    }
}

#[async_trait]
impl Provider for ContainerImageProvider {
    fn kinds(&self) -> &'static [&'static str] {
        &["container_image"]
    }

    fn api_calls(&self) -> u64 {
        self.registry.get().map_or(0, Registry::calls)
    }

    /// The registry answers and takes our credentials before anything changes.
    async fn preflight(
        &self,
        changes: &[&crate::plan::diff::Change],
        desired: &[crate::plan::resource::Desired],
    ) -> Result<(), ProviderError> {
        let Some(repo) = desired
            .iter()
            .filter(|d| changes.iter().any(|c| c.address == d.address))
            .find_map(|d| d.attrs.get("repository")?.as_str().map(str::to_owned))
        else {
            return Ok(());
        };
        self.registry().await?.ping(&repo).await.map_err(registry_error)
    }

    async fn read(&self, _addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError> {
        self.live(&rec.attrs).await
    }

    async fn find(
        &self,
        _addr: &Address,
        attrs: &BTreeMap<String, Value>,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        // Content-addressed: an image with this digest is this image, whoever pushed it.
        self.live(attrs).await
    }

    async fn create(&self, addr: &Address, attrs: &BTreeMap<String, Value>) -> Result<Live, ProviderError> {
        self.push(addr, attrs).await
    }

    async fn update(
        &self,
        addr: &Address,
        _rec: &Record,
        attrs: &BTreeMap<String, Value>,
    ) -> Result<Live, ProviderError> {
        self.push(addr, attrs).await
    }

    async fn delete(&self, addr: &Address, _rec: &Record) -> Result<(), ProviderError> {
        tracing::info!(image = %addr, "forgotten; left in the registry (its digest may be another environment's too)");
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError> {
        Ok(Vec::new())
    }
}
