//! The one place that talks to a Kubernetes API server: connect from a
//! kubeconfig, discover what it serves, and get / server-side apply (real or
//! dry-run) / delete / list objects as JSON. Failures become `K8sError`s that
//! name the object and keep the API's reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use serde_json::Value;

use super::K8sError;
use crate::charts::Capabilities;
use crate::charts::object::{MANAGER, ObjectId, group_of, version_of};

/// A kind the cluster serves: how to address it.
#[derive(Debug, Clone)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
}

pub struct Cluster {
    client: kube::Client,
    /// For messages: the API server's URL.
    pub server: String,
    /// (apiVersion, kind) → how to address it; refreshed per group version when missing.
    served: Mutex<BTreeMap<(String, String), Served>>,
    calls: AtomicU64,
}

/// An object the API returned, as JSON. It was JSON a moment ago: converting
/// back cannot fail, and an empty value would only read as "no fields".
fn json(o: DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or_default()
}

fn api_err(object: &str, e: kube::Error, server: &str) -> K8sError {
    match e {
        kube::Error::Api(s) => K8sError::Api {
            object: object.to_owned(),
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        other => K8sError::Unreachable {
            server: server.to_owned(),
            message: other.to_string(),
        },
    }
}

impl Cluster {
    /// From `kubeconfig` (several files may be joined with `:` as in KUBECONFIG);
    /// without one, the pod's service account inside a cluster, else
    /// ~/.kube/config. `context` picks one of the kubeconfig's contexts.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Self, K8sError> {
        Self::connect_to(kubeconfig, context, None).await
    }

    /// The same, with the API server at `server` instead of the kubeconfig's
    /// (a local port forwarded to it; its certificate must name 127.0.0.1).
    pub async fn connect_to(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        server: Option<&str>,
    ) -> Result<Self, K8sError> {
        let cfg_err = |e: &dyn std::fmt::Display| K8sError::Config {
            message: e.to_string(),
        };
        let kc = match kubeconfig {
            Some(p) => {
                let mut merged: Option<Kubeconfig> = None;
                for part in p.to_string_lossy().split(':').filter(|s| !s.is_empty()) {
                    let k = Kubeconfig::read_from(part).map_err(|e| cfg_err(&e))?;
                    merged = Some(match merged {
                        Some(m) => m.merge(k).map_err(|e| cfg_err(&e))?,
                        None => k,
                    });
                }
                merged.ok_or_else(|| K8sError::Config {
                    message: "the kubeconfig path is empty".into(),
                })?
            }
            // Inside a pod (the webhook, a workflow step): the pod's service account.
            None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                let config = kube::Config::incluster().map_err(|e| cfg_err(&e))?;
                return Self::with_config(config);
            }
            None => Kubeconfig::read().map_err(|e| cfg_err(&e))?,
        };
        let opts = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| cfg_err(&e))?;
        if let Some(s) = server {
            config.cluster_url = s.parse().map_err(|e| cfg_err(&e))?;
        }
        Self::with_config(config)
    }

    fn with_config(config: kube::Config) -> Result<Self, K8sError> {
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| K8sError::Config {
            message: e.to_string(),
        })?;
        Ok(Self {
            client,
            server,
            served: Mutex::new(BTreeMap::new()),
            calls: AtomicU64::new(0),
        })
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The server's version and every API it serves (`v1`, `apps/v1`, `apps/v1/Deployment`).
    pub async fn capabilities(&self) -> Result<Capabilities, K8sError> {
        let unreachable = |e: kube::Error| api_err("discovery", e, &self.server);
        self.count();
        let info = self.client.apiserver_version().await.map_err(unreachable)?;
        let version =
            Capabilities::parse_version(&info.git_version).ok_or_else(|| K8sError::Api {
                object: "version".into(),
                code: 0,
                reason: "BadVersion".into(),
                message: format!("the server reports version `{}`", info.git_version),
            })?;
        let mut gvs = Vec::new();
        self.count();
        for v in self
            .client
            .list_core_api_versions()
            .await
            .map_err(unreachable)?
            .versions
        {
            gvs.push(v);
        }
        self.count();
        for g in self
            .client
            .list_api_groups()
            .await
            .map_err(unreachable)?
            .groups
        {
            gvs.extend(g.versions.into_iter().map(|v| v.group_version));
        }
        let mut api_versions = BTreeSet::new();
        let lists = futures::future::join_all(gvs.iter().map(|gv| self.resources_of(gv))).await;
        for (gv, list) in gvs.iter().zip(lists) {
            api_versions.insert(gv.clone());
            for kind in list?.keys() {
                api_versions.insert(format!("{gv}/{kind}"));
            }
        }
        Ok(Capabilities {
            version,
            api_versions,
            source: "cluster",
        })
    }

    /// The kinds of one group version, remembered for addressing.
    async fn resources_of(&self, gv: &str) -> Result<BTreeMap<String, Served>, K8sError> {
        self.count();
        let list = if gv.contains('/') {
            self.client.list_api_group_resources(gv).await
        } else {
            self.client.list_core_api_resources(gv).await
        };
        let list = match list {
            Ok(l) => l,
            // A group that went away between two calls (a CRD deleted) serves nothing.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(BTreeMap::new()),
            Err(e) => return Err(api_err(&format!("discovery of {gv}"), e, &self.server)),
        };
        let mut out = BTreeMap::new();
        for r in list.resources.into_iter().filter(|r| !r.name.contains('/')) {
            let resource = ApiResource {
                group: group_of(gv).to_owned(),
                version: version_of(gv).to_owned(),
                api_version: gv.to_owned(),
                kind: r.kind.clone(),
                plural: r.name,
            };
            out.insert(
                r.kind,
                Served {
                    resource,
                    namespaced: r.namespaced,
                },
            );
        }
        if let Ok(mut m) = self.served.lock() {
            for (k, s) in &out {
                m.insert((gv.to_owned(), k.clone()), s.clone());
            }
        }
        Ok(out)
    }

    /// How to address `kind` in `api_version`, asking the server when not known yet.
    async fn served(
        &self,
        api_version: &str,
        kind: &str,
        object: &str,
    ) -> Result<Served, K8sError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(s) = self.served.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(s);
        }
        self.resources_of(api_version)
            .await?
            .remove(kind)
            .ok_or_else(|| K8sError::NoKind {
                object: object.to_owned(),
                kind: kind.to_owned(),
                api_version: api_version.to_owned(),
            })
    }

    /// Forget what a group version serves (after a CRD is applied or deleted).
    pub fn forget(&self, api_version: &str) {
        if let Ok(mut m) = self.served.lock() {
            m.retain(|(gv, _), _| gv != api_version);
        }
    }

    async fn api(&self, api_version: &str, id: &ObjectId) -> Result<Api<DynamicObject>, K8sError> {
        let s = self.served(api_version, &id.kind, &id.key()).await?;
        Ok(match (&id.namespace, s.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &s.resource),
            _ => Api::all_with(self.client.clone(), &s.resource),
        })
    }

    /// The live object, or None.
    pub async fn get(&self, api_version: &str, id: &ObjectId) -> Result<Option<Value>, K8sError> {
        let api = self.api(api_version, id).await?;
        self.count();
        match api.get_opt(&id.name).await {
            Ok(o) => Ok(o.map(json)),
            Err(e) => Err(api_err(&id.key(), e, &self.server)),
        }
    }

    /// Server-side apply with field manager `provisioner`; `dry_run` validates
    /// and returns what the object would become without changing anything.
    /// A conflict with another manager is reported with the field and the
    /// manager unless `force` takes the field over.
    pub async fn apply(
        &self,
        id: &ObjectId,
        body: &Value,
        dry_run: bool,
        force: bool,
    ) -> Result<Value, K8sError> {
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api = self.api(api_version, id).await?;
        let mut pp = PatchParams::apply(MANAGER);
        pp.dry_run = dry_run;
        pp.force = force;
        self.count();
        match api.patch(&id.name, &pp, &Patch::Apply(body)).await {
            Ok(o) => Ok(json(o)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // "conflict with \"kubectl\" using apps/v1: .spec.replicas"
                let cause = s.details.as_ref().and_then(|d| d.causes.first());
                let field = cause
                    .map(|c| c.field.clone())
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| "(unknown)".into());
                let message = cause.map_or(s.message.as_str(), |c| c.message.as_str());
                let manager = message
                    .split('"')
                    .nth(1)
                    .unwrap_or("another manager")
                    .to_owned();
                Err(K8sError::Conflict {
                    object: id.key(),
                    field,
                    manager,
                })
            }
            Err(e) => Err(api_err(&id.key(), e, &self.server)),
        }
    }

    /// Create an object (for names the server generates, `metadata.generateName`).
    pub async fn create(&self, body: &Value) -> Result<Value, K8sError> {
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = ObjectId {
            group: group_of(api_version).to_owned(),
            kind: body
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            namespace: body
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: body
                .pointer("/metadata/generateName")
                .or_else(|| body.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        let api = self.api(api_version, &id).await?;
        let obj: DynamicObject = serde_json::from_value(body.clone())
            .map_err(|e| K8sError::NotReady(format!("{id}: {e}")))?;
        self.count();
        api.create(&kube::api::PostParams::default(), &obj)
            .await
            .map(json)
            .map_err(|e| api_err(&id.key(), e, &self.server))
    }

    /// Delete in the background: the object goes at once, its dependents (a
    /// Job's pods) are collected after; something already gone is success.
    pub async fn delete(&self, api_version: &str, id: &ObjectId) -> Result<(), K8sError> {
        let api = self.api(api_version, id).await?;
        self.count();
        match api.delete(&id.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_err(&id.key(), e, &self.server)),
        }
    }

    /// Objects of a kind (in `namespace`, or everywhere), filtered by labels and fields.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Vec<Value>, K8sError> {
        let id = ObjectId {
            group: group_of(api_version).to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: String::new(),
        };
        let api = self.api(api_version, &id).await?;
        let mut lp = ListParams::default();
        if let Some(l) = labels {
            lp = lp.labels(l);
        }
        if let Some(f) = fields {
            lp = lp.fields(f);
        }
        self.count();
        let list = api
            .list(&lp)
            .await
            .map_err(|e| api_err(&format!("{kind} list"), e, &self.server))?;
        Ok(list.items.into_iter().map(json).collect())
    }

    /// Take `node` out of service before its machine goes: cordon it, evict
    /// its pods (not DaemonSet or mirror pods, which belong to the node) and
    /// wait until they are gone or `timeout` passes, then delete the Node.
    /// A node already gone is done.
    pub async fn drain(&self, node: &str, timeout: std::time::Duration) -> Result<(), K8sError> {
        use k8s_openapi::api::core::v1::{Node, Pod};
        let what = format!("node {node}");
        let nodes: Api<Node> = Api::all(self.client.clone());
        self.calls.fetch_add(1, Ordering::Relaxed);
        let cordon = serde_json::json!({ "spec": { "unschedulable": true } });
        match nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&cordon))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            r => r.map(|_| ()).map_err(|e| api_err(&what, e, &self.server))?,
        }
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let evictable = |p: &Pod| {
            let owners = p.metadata.owner_references.as_deref().unwrap_or_default();
            let mirror = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
            !mirror && !owners.iter().any(|o| o.kind == "DaemonSet")
        };
        let start = tokio::time::Instant::now();
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let list = pods
                .list(&on_node)
                .await
                .map_err(|e| api_err(&what, e, &self.server))?;
            let left: Vec<&Pod> = list.items.iter().filter(|p| evictable(p)).collect();
            if left.is_empty() || start.elapsed() > timeout {
                break;
            }
            for p in left {
                let (Some(name), Some(ns)) =
                    (p.metadata.name.as_deref(), p.metadata.namespace.as_deref())
                else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                self.calls.fetch_add(1, Ordering::Relaxed);
                // 429: a disruption budget says not now; the next round tries again.
                match api.evict(name, &Default::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(api_err(&format!("pod {ns}/{name}"), e, &self.server)),
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        match nodes.delete(node, &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            r => r.map(|_| ()).map_err(|e| api_err(&what, e, &self.server)),
        }
    }
}
