//! The platform layer's provider: kinds `namespace` and `release`. It
//! connects once, on first need (so offline plans stay offline), reports the
//! cluster's capabilities as facts for rendering, refreshes releases against
//! the live cluster by server-side dry-run (or says it compared with state
//! when the cluster cannot be reached), and installs, upgrades and uninstalls
//! releases through `release::Release`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::K8sError;
use super::client::Cluster;
use super::release::{self, Release};
use crate::charts::Capabilities;
use crate::charts::object::{LABEL_ENVIRONMENT, LABEL_MANAGED_BY, MANAGER, ObjectId};
use crate::core::{Address, Secret};
use crate::env::model::Environment;
use crate::env::secret::SecretRef;
use crate::plan::diff::{Action, Change};
use crate::plan::resource::Desired;
use crate::provider::{Facts, Live, Options, Provider, ProviderError};
use crate::state::Record;

pub struct PlatformProvider {
    env: String,
    kubeconfig: Option<PathBuf>,
    /// Where the cluster layer writes its admin kubeconfig, when it bootstraps
    /// this environment's cluster: used once the file exists (perhaps only
    /// later in this very run).
    bootstrapped: Option<PathBuf>,
    context: Option<String>,
    force_conflicts: bool,
    no_wait: bool,
    /// `platform.wait` of the environment.
    env_wait: bool,
    /// Pause between apply steps (`PROVISIONER_APPLY_DELAY_MS`), for the crash tests.
    delay: Option<Duration>,
    parallelism: usize,
    ready_timeout: Duration,
    delete_timeout: Duration,
    cluster: OnceCell<Arc<Cluster>>,
    capabilities: OnceCell<Option<Capabilities>>,
    /// The environment, for a tunnel to a private cluster's API (its SSH settings).
    environment: Environment,
    /// That tunnel, open while the client uses it.
    tunnel: std::sync::Mutex<Option<crate::cluster::ApiTunnel>>,
}

type Attrs = BTreeMap<String, Value>;

fn objects(attrs: &Attrs) -> Map<String, Value> {
    attrs
        .get("objects")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The secret inputs of a release: generated ones arrive resolved (strings);
/// `env:`/`file:` references are read here, in memory only.
fn resolve_secrets(attrs: &Attrs) -> Result<BTreeMap<String, Secret>, ProviderError> {
    let mut out = BTreeMap::new();
    for (name, v) in attrs
        .get("secrets")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let secret = match v {
            Value::String(s) => Secret::new(s.clone()),
            other => read_reference(name, other).unwrap_or_else(|| {
                Err(ProviderError::fatal(format!(
                    "secret input `{name}` is not a reference"
                )))
            })?,
        };
        out.insert(name.clone(), secret);
    }
    Ok(out)
}

/// A secret input that names where its value is (`env:`, `file:`, or a
/// registry credential built from one), read now; None when it is not such a
/// reference (a generated secret still pointing into state).
fn read_reference(name: &str, v: &Value) -> Option<Result<Secret, ProviderError>> {
    if let Some(spec) = v.get("dockerconfigjson") {
        return Some(docker_config(spec, name));
    }
    let r: SecretRef = serde_json::from_value(v.clone()).ok()?;
    Some(r.resolve(name).map_err(|e| ProviderError::fatal(e.to_string())))
}

/// A `.dockerconfigjson` for one registry: its user and the password the
/// reference reads, as kubelets expect it (`auth` = base64 of user:password).
fn docker_config(spec: &Value, name: &str) -> Result<Secret, ProviderError> {
    let bad = || ProviderError::fatal(format!("secret input `{name}`: not a registry credential"));
    let registry = spec.get("registry").and_then(Value::as_str).ok_or_else(bad)?;
    let user = spec.get("username").and_then(Value::as_str).ok_or_else(bad)?;
    let r: SecretRef = serde_json::from_value(spec.get("password").cloned().ok_or_else(bad)?)
        .map_err(|_| bad())?;
    let password = r
        .resolve("registry.password")
        .map_err(|e| ProviderError::fatal(e.to_string()))?;
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{}", password.expose()),
    );
    Ok(Secret::new(
        json!({ "auths": { registry: { "username": user, "password": password.expose(), "auth": auth } } })
            .to_string(),
    ))
}

/// The release's outputs that are known (resolved to strings).
fn known_outputs(attrs: &Attrs) -> BTreeMap<String, String> {
    attrs
        .get("outputs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// Only the secrets readable without state (env:, file:), for refresh.
fn readable_secrets(attrs: &Attrs) -> BTreeMap<String, Secret> {
    attrs
        .get("secrets")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, v)| Some((name.clone(), read_reference(name, v)?.ok()?)))
        .collect()
}

/// The release history state keeps (the cluster keeps the manifests): the
/// last revisions with their digests, newest last.
fn history_in_state(
    rec: Option<&Record>,
    revision: u64,
    description: &str,
    attrs: &Attrs,
) -> Value {
    let mut h: Vec<Value> = rec
        .and_then(|r| r.outputs.get("history"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for e in &mut h {
        e["status"] = json!("superseded");
    }
    h.push(json!({
        "revision": revision,
        "status": "deployed",
        "time": crate::state::model::now(),
        "description": description,
        "chart_version": attrs.get("chart_version"),
        "values_digest": crate::core::digest::sha256_json(&attrs.get("values")),
        "manifest_digest": crate::core::digest::sha256_json(&attrs.get("objects")),
    }));
    let keep = h.len().saturating_sub(super::history::KEEP);
    Value::Array(h.split_off(keep))
}

impl PlatformProvider {
    pub fn new(env: &Environment, conn: &Options) -> Self {
        Self {
            env: env.name.clone(),
            kubeconfig: conn.kubeconfig.clone().or_else(|| {
                env.platform
                    .kubeconfig
                    .as_deref()
                    .map(crate::env::secret::expand_home)
            }),
            bootstrapped: crate::cluster::kubeconfig_path(env),
            context: conn
                .context
                .clone()
                .or_else(|| env.platform.context.clone()),
            env_wait: env.platform.wait,
            force_conflicts: conn.force_conflicts,
            no_wait: conn.no_wait,
            delay: std::env::var("PROVISIONER_APPLY_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
            parallelism: env.apply.parallelism,
            ready_timeout: Duration::from_secs(env.timeouts.ready),
            delete_timeout: Duration::from_secs(env.timeouts.delete),
            cluster: OnceCell::new(),
            capabilities: OnceCell::new(),
            environment: env.clone(),
            tunnel: std::sync::Mutex::new(None),
        }
    }

    /// The kubeconfig to use: named by the environment or the command line,
    /// else the one the cluster layer wrote, once it exists.
    fn kubeconfig(&self) -> Option<&Path> {
        self.kubeconfig
            .as_deref()
            .or_else(|| self.bootstrapped.as_deref().filter(|p| p.exists()))
    }

    /// Whether this run's cluster layer will provide the cluster later.
    fn awaiting_bootstrap(&self) -> bool {
        self.kubeconfig().is_none() && self.bootstrapped.is_some()
    }

    async fn cluster(&self) -> Result<&Arc<Cluster>, ProviderError> {
        // Only success is kept: a cluster bootstrapped during this run is
        // reachable later even if it was not at plan time.
        self.cluster
            .get_or_try_init(|| async {
                // Only a cluster the environment or the command line names: never
                // whatever ~/.kube/config happens to point at.
                let Some(kc) = self.kubeconfig() else {
                    return Err(ProviderError::fatal(K8sError::Config { message: "no cluster is configured for this environment (platform.kubeconfig, --kubeconfig or KUBECONFIG)".into() }.to_string()));
                };
                let ctx = self.context.as_deref();
                // A kubeconfig the cluster layer wrote for a private cluster says
                // which bastion leads to it.
                let tunnel = crate::cluster::api_tunnel(&self.environment, kc, ctx).await?;
                let server = tunnel.as_ref().map(|t| t.server.clone());
                if let Ok(mut slot) = self.tunnel.lock() {
                    *slot = tunnel;
                }
                Cluster::connect_to(Some(kc), ctx, server.as_deref())
                    .await
                    .map(Arc::new)
                    .map_err(|e| ProviderError::fatal(e.to_string()))
            })
            .await
    }

    /// The cluster's capabilities, read once; None when it cannot be reached.
    async fn caps(&self) -> Option<&Capabilities> {
        self.capabilities
            .get_or_init(|| async {
                let c = self.cluster().await.ok()?;
                match c.capabilities().await {
                    Ok(caps) => Some(caps),
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster capabilities unavailable; rendering for cluster.kubernetes_version");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    fn release<'a>(
        &'a self,
        cluster: &'a Cluster,
        name: &'a str,
        namespace: &'a str,
    ) -> Release<'a> {
        Release {
            cluster,
            environment: &self.env,
            name,
            namespace,
            force_conflicts: self.force_conflicts,
            parallelism: self.parallelism,
            ready_timeout: self.ready_timeout,
            delay: self.delay,
        }
    }

    fn namespace_id(name: &str) -> ObjectId {
        ObjectId {
            group: String::new(),
            kind: "Namespace".into(),
            namespace: None,
            name: name.to_owned(),
        }
    }

    async fn deploy(
        &self,
        addr: &Address,
        rec: Option<&Record>,
        attrs: &Attrs,
        description: &str,
    ) -> Result<Live, ProviderError> {
        let cluster = self.cluster().await?;
        let namespace = attrs
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let secrets = resolve_secrets(attrs)?;
        let items = release::items(&objects(attrs), &secrets, &known_outputs(attrs))?;
        let previous = rec.map(|r| objects(&r.attrs)).unwrap_or_default();
        // What state (and a rollback) records: the desired form, no secret values.
        let recorded = json!({ "chart": attrs.get("chart"), "chart_version": attrs.get("chart_version"), "values": attrs.get("values"), "objects": attrs.get("objects") });
        let wait = self.env_wait
            && !self.no_wait
            && attrs.get("wait").and_then(Value::as_bool).unwrap_or(true);
        let revision = self
            .release(cluster, addr.name(), namespace)
            .deploy(&items, &previous, recorded, wait, description)
            .await?;
        let mut outputs = BTreeMap::new();
        outputs.insert("revision".to_owned(), json!(revision));
        outputs.insert("namespace".to_owned(), json!(namespace));
        outputs.insert("objects".to_owned(), json!(items.len()));
        outputs.insert(
            "history".to_owned(),
            history_in_state(rec, revision, description, attrs),
        );
        Ok(Live {
            id: format!("{namespace}/{}", addr.name()),
            attrs: attrs.clone(),
            outputs,
            ..Live::default()
        })
    }
}

#[async_trait]
impl Provider for PlatformProvider {
    fn kinds(&self) -> &'static [&'static str] {
        &["namespace", "release"]
    }

    async fn facts(&self) -> Option<Facts> {
        if self.awaiting_bootstrap() {
            return Some(Facts {
                capabilities: None,
                cluster: Some("the cluster the cluster layer bootstraps in this run".into()),
            });
        }
        let cluster = self.cluster().await.ok().map(|c| c.server.clone());
        Some(Facts {
            capabilities: self.caps().await.cloned(),
            cluster,
        })
    }

    /// The cluster must answer before anything changes, and every custom
    /// resource's kind must be served or shipped as a CRD by a release.
    async fn preflight(
        &self,
        changes: &[&Change],
        desired: &[Desired],
    ) -> Result<(), ProviderError> {
        if changes.iter().all(|c| c.action == Action::NoOp) {
            return Ok(());
        }
        // Nothing to ask a cluster that does not exist yet; the releases wait for
        // it in the plan's order (they depend on kubeconfig.admin).
        if self.awaiting_bootstrap() {
            return Ok(());
        }
        let cluster = self.cluster().await?;
        let caps = cluster.capabilities().await?;
        let shipped: Vec<(String, String)> = desired
            .iter()
            .flat_map(|d| objects(&d.attrs).into_values())
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
            .map(|o| {
                (
                    o.pointer("/spec/group")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    o.pointer("/spec/names/kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let mut problems = Vec::new();
        for c in changes
            .iter()
            .filter(|c| c.kind == "release" && c.action != Action::Delete)
        {
            let Some(d) = desired.iter().find(|d| d.address == c.address) else {
                continue;
            };
            for (key, body) in objects(&d.attrs) {
                let av = body
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
                let group = crate::charts::object::group_of(av);
                if !caps.has(&format!("{av}/{kind}"))
                    && !shipped.iter().any(|(g, k)| g == group && k == kind)
                {
                    problems.push(format!("{}: {key}: the cluster serves no {kind} in {av}, and no release ships its CRD", c.address));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::fatal(format!(
                "preflight failed, nothing was changed:\n    {}\n  hint: install the CRD first, or add it to a chart's crds/",
                problems.join("\n    ")
            )))
        }
    }

    async fn read(&self, addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let cluster = match self.cluster().await {
            Ok(c) => c,
            Err(e) => {
                // Offline: the plan compares with what state recorded, and says so.
                return Ok(Some(Live {
                    id: rec.id.clone().unwrap_or_default(),
                    attrs: rec.attrs.clone(),
                    basis: Some(format!(
                        "the manifest recorded in state (cluster unreachable: {})",
                        e.message.lines().next().unwrap_or_default()
                    )),
                    ..Live::default()
                }));
            }
        };
        match addr.kind() {
            "namespace" => {
                let name = rec
                    .attrs
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(addr.name());
                Ok(cluster
                    .get("v1", &Self::namespace_id(name))
                    .await?
                    .map(|_| Live {
                        id: name.to_owned(),
                        attrs: rec.attrs.clone(),
                        ..Live::default()
                    }))
            }
            _ => {
                let namespace = rec
                    .attrs
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let observed = match self
                    .release(cluster, addr.name(), namespace)
                    .observe(
                        &objects(&rec.attrs),
                        &readable_secrets(&rec.attrs),
                        &known_outputs(&rec.attrs),
                    )
                    .await
                {
                    Ok(o) => o,
                    Err(K8sError::Unreachable { message, .. }) => {
                        return Ok(Some(Live {
                            id: rec.id.clone().unwrap_or_default(),
                            attrs: rec.attrs.clone(),
                            basis: Some(format!(
                                "the manifest recorded in state (cluster unreachable: {message})"
                            )),
                            ..Live::default()
                        }));
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut attrs = rec.attrs.clone();
                attrs.insert("objects".into(), Value::Object(observed));
                Ok(Some(Live {
                    id: rec.id.clone().unwrap_or_default(),
                    attrs,
                    basis: Some("the live cluster (server-side dry-run)".into()),
                    ..Live::default()
                }))
            }
        }
    }

    /// Releases adopt by server-side apply; namespaces that exist are taken as they are.
    async fn find(
        &self,
        addr: &Address,
        attrs: &Attrs,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        if addr.kind() == "namespace" {
            let cluster = self.cluster().await?;
            let name = attrs
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(addr.name());
            if cluster
                .get("v1", &Self::namespace_id(name))
                .await?
                .is_some()
            {
                self.create(addr, attrs).await.map(Some)
            } else {
                Ok(None)
            }
        } else {
            Ok(None)
        }
    }

    async fn create(&self, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        match addr.kind() {
            "namespace" => {
                let cluster = self.cluster().await?;
                let name = attrs
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(addr.name());
                let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": { LABEL_MANAGED_BY: MANAGER, LABEL_ENVIRONMENT: self.env } } });
                cluster
                    .apply(&Self::namespace_id(name), &body, false, true)
                    .await?;
                Ok(Live {
                    id: name.to_owned(),
                    attrs: attrs.clone(),
                    ..Live::default()
                })
            }
            _ => self.deploy(addr, None, attrs, "install").await,
        }
    }

    async fn update(
        &self,
        addr: &Address,
        rec: &Record,
        attrs: &Attrs,
    ) -> Result<Live, ProviderError> {
        match addr.kind() {
            "namespace" => self.create(addr, attrs).await,
            _ => self.deploy(addr, Some(rec), attrs, "upgrade").await,
        }
    }

    async fn delete(&self, addr: &Address, rec: &Record) -> Result<(), ProviderError> {
        let cluster = self.cluster().await?;
        match addr.kind() {
            "namespace" => {
                let name = rec
                    .attrs
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(addr.name());
                let id = Self::namespace_id(name);
                cluster.delete("v1", &id).await?;
                let start = tokio::time::Instant::now();
                while cluster.get("v1", &id).await?.is_some() {
                    if start.elapsed() > self.delete_timeout {
                        return Err(ProviderError::transient(format!(
                            "namespace {name} is still terminating after {:?}",
                            self.delete_timeout
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(())
            }
            _ => {
                let namespace = rec
                    .attrs
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                Ok(self
                    .release(cluster, addr.name(), namespace)
                    .uninstall(&objects(&rec.attrs))
                    .await?)
            }
        }
    }

    /// Namespaces labelled as this environment's; releases are found through
    /// their state records (their history lives in those namespaces).
    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError> {
        let Ok(cluster) = self.cluster().await else {
            tracing::warn!(
                "the cluster cannot be reached: no namespaces or releases are swept from it"
            );
            return Ok(Vec::new());
        };
        let list = cluster
            .list(
                "v1",
                "Namespace",
                None,
                Some(&format!(
                    "{LABEL_ENVIRONMENT}={},{LABEL_MANAGED_BY}={MANAGER}",
                    self.env
                )),
                None,
            )
            .await?;
        Ok(list
            .iter()
            .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
            .map(|name| {
                let mut attrs = BTreeMap::new();
                attrs.insert("name".to_owned(), json!(name));
                attrs.insert("environment".to_owned(), json!(self.env));
                (
                    Address::new("namespace", name),
                    Live {
                        id: name.to_owned(),
                        attrs,
                        ..Live::default()
                    },
                )
            })
            .collect())
    }

    fn api_calls(&self) -> u64 {
        self.cluster.get().map_or(0, |c| c.calls())
    }

    /// The release's history from the cluster, newest last (manifests left out).
    async fn revisions(&self, addr: &Address, rec: &Record) -> Result<Vec<Value>, ProviderError> {
        if addr.kind() != "release" {
            return Ok(Vec::new());
        }
        let cluster = self.cluster().await?;
        let namespace = rec
            .attrs
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let revs = super::history::load(cluster, namespace, addr.name()).await?;
        Ok(revs
            .into_iter()
            .map(|r| {
                json!({
                    "revision": r.revision, "status": r.status, "time": r.time, "description": r.description,
                    "chart": r.chart, "chart_version": r.chart_version, "values_digest": r.values_digest,
                    "manifest_digest": r.manifest_digest, "objects": r.inventory.len(), "attrs": r.attrs,
                })
            })
            .collect())
    }

    /// Apply revision `to` (default: the last good one before the current) as
    /// a new revision, exactly as it was applied then.
    async fn revert(
        &self,
        addr: &Address,
        rec: &Record,
        to: Option<u64>,
    ) -> Result<Live, ProviderError> {
        let cluster = self.cluster().await?;
        let namespace = rec
            .attrs
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let revs = super::history::load(cluster, namespace, addr.name()).await?;
        let current = revs
            .iter()
            .rev()
            .find(|r| r.status == super::history::RevStatus::Deployed)
            .map(|r| r.revision);
        let target = match to {
            Some(n) => revs.iter().find(|r| r.revision == n),
            None => revs.iter().rev().find(|r| {
                Some(r.revision) < current
                    && matches!(
                        r.status,
                        super::history::RevStatus::Superseded | super::history::RevStatus::Deployed
                    )
            }),
        }
        .ok_or_else(|| {
            ProviderError::fatal(format!(
                "{addr}: no revision {} in the cluster's history (revisions: {})",
                to.map_or("before the current one".into(), |n| n.to_string()),
                revs.iter()
                    .map(|r| r.revision.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let token_objects = target
            .attrs
            .get("objects")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut items = Vec::new();
        for body in &target.manifest {
            let key = body
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(|name| {
                    let av = body
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
                    let ns = body
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    ObjectId {
                        group: crate::charts::object::group_of(av).to_owned(),
                        kind: kind.to_owned(),
                        namespace: ns,
                        name: name.to_owned(),
                    }
                });
            let Some(id) = key else { continue };
            let token_body = token_objects
                .get(&id.key())
                .cloned()
                .unwrap_or_else(|| body.clone());
            items.push(release::Item {
                id,
                token_body,
                body: body.clone(),
            });
        }
        items.sort_by_key(|i| {
            (
                if i.id.kind == "CustomResourceDefinition" {
                    0
                } else {
                    1 + crate::charts::object::order(&i.id.kind)
                },
                i.id.key(),
            )
        });
        let wait = self.env_wait
            && !self.no_wait
            && rec
                .attrs
                .get("wait")
                .and_then(Value::as_bool)
                .unwrap_or(true);
        let description = format!("rollback to {}", target.revision);
        let revision = self
            .release(cluster, addr.name(), namespace)
            .deploy(
                &items,
                &objects(&rec.attrs),
                target.attrs.clone(),
                wait,
                &description,
            )
            .await?;
        let mut attrs = rec.attrs.clone();
        for k in ["chart", "chart_version", "values", "objects"] {
            if let Some(v) = target.attrs.get(k) {
                attrs.insert(k.to_owned(), v.clone());
            }
        }
        let mut outputs = rec.outputs.clone();
        outputs.insert("revision".to_owned(), json!(revision));
        outputs.insert(
            "history".to_owned(),
            history_in_state(Some(rec), revision, &description, &attrs),
        );
        Ok(Live {
            id: rec.id.clone().unwrap_or_default(),
            attrs,
            outputs,
            ..Live::default()
        })
    }
}
