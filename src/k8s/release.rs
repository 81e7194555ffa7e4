//! Installing a release: CRDs first (waited for until Established), objects
//! whose immutable fields changed deleted and created again, every other
//! object server-side applied in kind order (skipped when a dry-run shows it
//! would not change, so a no-op deploy writes nothing), objects a revision
//! no longer renders pruned — only those labelled as this release's — and
//! then readiness waited for. The revision is recorded in the cluster before
//! the first write and settled after the last.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Map, Value};

use super::K8sError;
use super::client::Cluster;
use super::history::{self, RevStatus, Revision};
use super::normalize;
use super::ready::{self, Status};
use crate::charts::object::{self, LABEL_ENVIRONMENT, LABEL_RELEASE, ObjectId};
use crate::core::Secret;
use crate::core::digest::sha256_json;

/// One release and how to treat it.
pub struct Release<'a> {
    pub cluster: &'a Cluster,
    pub environment: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub force_conflicts: bool,
    pub parallelism: usize,
    pub ready_timeout: Duration,
    /// Pause after each tier of applies (crash tests kill a deploy mid-way).
    pub delay: Option<Duration>,
}

/// An object to apply: identity, body in desired form (tokens) and as applied.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: ObjectId,
    pub token_body: Value,
    pub body: Value,
}

/// Pod-template annotation of a release's workloads: a digest of the secret
/// values the release receives (not the values).
pub const SECRETS_DIGEST: &str = "provisioner.io/secrets-digest";

fn secrets_digest(secrets: &BTreeMap<String, Secret>) -> Option<String> {
    if secrets.is_empty() {
        return None;
    }
    let joined: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    Some(crate::core::digest::sha256_json(&joined).trim_start_matches("sha256:")[..16].to_owned())
}

/// Output tokens replaced by their values, anywhere in `v`; tokens whose
/// value is unknown stay (the caller decides what that means).
pub fn fill_outputs(v: &mut Value, outputs: &BTreeMap<String, String>) {
    match v {
        Value::String(s) if s.contains("((output:") => {
            for name in object::output_tokens_in(&s.clone()) {
                if let Some(val) = outputs.get(name) {
                    *s = s.replace(&object::output_token(name), val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fill_outputs(x, outputs)),
        Value::Object(m) => m.values_mut().for_each(|x| fill_outputs(x, outputs)),
        _ => {}
    }
}

/// The object as sent: outputs filled in everywhere, and a Secret's
/// `stringData` with the values in, as `data` (the form the API stores, so a
/// re-apply compares equal).
pub fn materialize(
    id: &ObjectId,
    body: &Value,
    secrets: &BTreeMap<String, Secret>,
    outputs: &BTreeMap<String, String>,
) -> Result<Value, K8sError> {
    let mut out = body.clone();
    fill_outputs(&mut out, outputs);
    if id.kind != "Secret" || !id.group.is_empty() {
        return Ok(out);
    }
    let Some(m) = out.as_object_mut() else {
        return Ok(out);
    };
    let Some(Value::Object(string_data)) = m.remove("stringData") else {
        return Ok(out);
    };
    let mut data = m
        .remove("data")
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default();
    for (k, v) in string_data {
        let template = v.as_str().unwrap_or_default();
        let mut s = template.to_owned();
        for name in object::tokens_in(template) {
            let value = secrets.get(name).ok_or_else(|| {
                K8sError::NotReady(format!("{id}: secret `{name}` was not resolved"))
            })?;
            s = s.replace(&object::secret_token(name), value.expose());
        }
        data.insert(
            k,
            Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
        );
    }
    m.insert("data".into(), Value::Object(data));
    Ok(out)
}

/// The items of a release's `objects` attribute, in apply order (CRDs first).
pub fn items(
    objects: &Map<String, Value>,
    secrets: &BTreeMap<String, Secret>,
    outputs: &BTreeMap<String, String>,
) -> Result<Vec<Item>, K8sError> {
    let digest = secrets_digest(secrets);
    let mut out = Vec::new();
    for (key, body) in objects {
        let id = ObjectId::parse(key)
            .ok_or_else(|| K8sError::NotReady(format!("`{key}` is not an object key")))?;
        let mut real = materialize(&id, body, secrets, outputs)?;
        if let Some(d) = &digest
            && id.group == "apps"
            && let Some(meta) = real
                .pointer_mut("/spec/template/metadata")
                .and_then(Value::as_object_mut)
        {
            // A pod reads a Secret when it starts: a changed value rolls the
            // workload, as charts' checksum/secret annotations do elsewhere.
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(SECRETS_DIGEST.into(), Value::String(d.clone()));
            }
        }
        out.push(Item {
            body: real,
            token_body: body.clone(),
            id,
        });
    }
    out.sort_by_key(|i| {
        (
            if i.id.kind == "CustomResourceDefinition" {
                0
            } else {
                1 + object::order(&i.id.kind)
            },
            i.id.key(),
        )
    });
    Ok(out)
}

fn api_version(body: &Value) -> &str {
    body.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Release<'_> {
    /// Apply `item` unless a dry-run shows the live object would not change.
    /// Returns whether it wrote.
    async fn apply_if_changed(&self, item: &Item) -> Result<bool, K8sError> {
        let av = api_version(&item.body);
        if let Some(live) = self.cluster.get(av, &item.id).await? {
            match self
                .cluster
                .apply(&item.id, &item.body, true, self.force_conflicts)
                .await
            {
                Ok(dry) if normalize::strip(&dry) == normalize::strip(&live) => return Ok(false),
                Ok(_) => {}
                // The server says a field we change cannot change in place (a Job's
                // template, a Deployment's selector): delete, wait, create.
                Err(K8sError::Api {
                    code: 422, message, ..
                }) if message.contains("immutable") => {
                    tracing::info!(object = %item.id, "replacing: an immutable field changed");
                    self.cluster.delete(av, &item.id).await?;
                    self.poll(
                        &format!("{} to be deleted", item.id),
                        self.ready_timeout,
                        || async {
                            Ok(self
                                .cluster
                                .get(av, &item.id)
                                .await?
                                .is_none()
                                .then_some(()))
                        },
                    )
                    .await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.cluster
            .apply(&item.id, &item.body, false, self.force_conflicts)
            .await?;
        Ok(true)
    }

    /// Poll `probe` until it answers Some, or fail after `timeout`.
    async fn poll<T, F, Fut>(&self, what: &str, timeout: Duration, probe: F) -> Result<T, K8sError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, K8sError>>,
    {
        crate::core::wait::until(timeout, Duration::from_secs(1), probe)
            .await?
            .ok_or_else(|| K8sError::NotReady(format!("{what}: not done after {timeout:?}")))
    }

    /// Install or upgrade to `wanted`; `previous` are the object keys and
    /// desired-form bodies state recorded for the release. Returns the revision.
    pub async fn deploy(
        &self,
        wanted: &[Item],
        previous: &Map<String, Value>,
        attrs: Value,
        wait: bool,
        description: &str,
    ) -> Result<u64, K8sError> {
        let revisions = history::load(self.cluster, self.namespace, self.name).await?;
        let revision = revisions.last().map_or(1, |r| r.revision + 1);
        // Everything an earlier, possibly interrupted, revision may have created.
        let mut candidates: BTreeSet<String> = previous.keys().cloned().collect();
        let last_good = revisions
            .iter()
            .rposition(|r| r.status == RevStatus::Deployed);
        for r in revisions.iter().skip(last_good.unwrap_or(0)) {
            candidates.extend(r.inventory.iter().cloned());
        }
        let manifest: Vec<Value> = wanted.iter().map(|i| i.body.clone()).collect();
        let rev = Revision {
            revision,
            status: RevStatus::Deploying,
            time: crate::state::model::now(),
            description: description.to_owned(),
            chart: attrs
                .get("chart")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            chart_version: attrs
                .get("chart_version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            values_digest: sha256_json(&attrs.get("values")),
            manifest_digest: sha256_json(&attrs.get("objects")),
            inventory: wanted.iter().map(|i| i.id.key()).collect(),
            attrs,
            manifest,
        };
        history::save(
            self.cluster,
            self.namespace,
            self.name,
            self.environment,
            &rev,
        )
        .await?;
        match self.converge(wanted, previous, &candidates, wait).await {
            Ok(()) => {
                history::settle(
                    self.cluster,
                    self.namespace,
                    self.name,
                    self.environment,
                    revision,
                    RevStatus::Deployed,
                )
                .await?;
                Ok(revision)
            }
            Err(e) => {
                // Best effort: the revision says it failed; the error is what matters.
                let _ = history::settle(
                    self.cluster,
                    self.namespace,
                    self.name,
                    self.environment,
                    revision,
                    RevStatus::Failed,
                )
                .await;
                Err(e)
            }
        }
    }

    async fn converge(
        &self,
        wanted: &[Item],
        previous: &Map<String, Value>,
        candidates: &BTreeSet<String>,
        wait: bool,
    ) -> Result<(), K8sError> {
        // CRDs first; their kinds exist once Established.
        let (crds, rest): (Vec<&Item>, Vec<&Item>) = wanted
            .iter()
            .partition(|i| i.id.kind == "CustomResourceDefinition");
        for c in &crds {
            self.apply_if_changed(c).await?;
        }
        for c in &crds {
            self.poll(
                &format!("{} to be established", c.id),
                self.ready_timeout,
                || async {
                    let live = self.cluster.get(api_version(&c.body), &c.id).await?;
                    Ok(live
                        .filter(|l| ready::status("CustomResourceDefinition", l) == Status::Ready))
                },
            )
            .await?;
            let group = c
                .body
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            for v in c
                .body
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.cluster.forget(&format!(
                    "{group}/{}",
                    v.get("name").and_then(Value::as_str).unwrap_or_default()
                ));
            }
        }
        // Apply in kind order; within one kind, in parallel.
        let mut by_tier: BTreeMap<usize, Vec<&Item>> = BTreeMap::new();
        for item in rest {
            by_tier
                .entry(object::order(&item.id.kind))
                .or_default()
                .push(item);
        }
        for tier in by_tier.values() {
            // Collected first: a stream over a borrowing closure is not Send across the trait's futures.
            let applies: Vec<_> = tier.iter().map(|i| self.apply_if_changed(i)).collect();
            let results: Vec<Result<bool, K8sError>> = futures::stream::iter(applies)
                .buffer_unordered(self.parallelism.max(1))
                .collect()
                .await;
            for r in results {
                r?;
            }
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
        }
        // Prune what this release made and no longer renders; never anything else.
        let keep: BTreeSet<String> = wanted.iter().map(|i| i.id.key()).collect();
        let mut gone: Vec<(ObjectId, String)> = Vec::new();
        for key in candidates.difference(&keep) {
            let Some(id) = ObjectId::parse(key) else {
                continue;
            };
            let av = previous
                .get(key)
                .map(|b| api_version(b).to_owned())
                .unwrap_or_else(|| default_api_version(&id));
            gone.push((id, av));
        }
        gone.sort_by_key(|(id, _)| std::cmp::Reverse((object::order(&id.kind), id.key())));
        for (id, av) in gone {
            self.prune(&id, &av).await?;
        }
        if wait {
            self.wait_ready(wanted).await?;
        }
        Ok(())
    }

    /// Delete `id` if it is labelled as this release's in this environment.
    pub async fn prune(&self, id: &ObjectId, api_version: &str) -> Result<(), K8sError> {
        let live = match self.cluster.get(api_version, id).await {
            Ok(l) => l,
            // Its CRD went first: nothing of that kind is left.
            Err(K8sError::NoKind { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(live) = live else { return Ok(()) };
        let label = |k: &str| {
            live.pointer(&format!("/metadata/labels/{}", k.replace('/', "~1")))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if label(LABEL_RELEASE).as_deref() != Some(self.name)
            || label(LABEL_ENVIRONMENT).as_deref() != Some(self.environment)
        {
            tracing::warn!(object = %id, "not pruned: it is not labelled as this release's");
            return Ok(());
        }
        tracing::info!(object = %id, "pruning: no longer rendered");
        self.cluster.delete(api_version, id).await
    }

    /// Delete every object of the release (namespaced first), then its history.
    pub async fn uninstall(&self, recorded: &Map<String, Value>) -> Result<(), K8sError> {
        let mut ids: Vec<(ObjectId, String)> = recorded
            .iter()
            .filter_map(|(k, b)| Some((ObjectId::parse(k)?, api_version(b).to_owned())))
            .collect();
        // Reverse apply order, CRDs last (deleting one deletes every object of its kind).
        ids.sort_by_key(|(id, _)| {
            (
                id.kind == "CustomResourceDefinition",
                std::cmp::Reverse(object::order(&id.kind)),
                id.key(),
            )
        });
        for (id, av) in ids {
            self.prune(&id, &av).await?;
        }
        history::forget(self.cluster, self.namespace, self.name).await
    }

    /// Wait until every object is ready; fail at once when one cannot get
    /// there (a failed Job, an image that can never be pulled), else at the
    /// timeout, with why per object.
    async fn wait_ready(&self, items: &[Item]) -> Result<(), K8sError> {
        let start = tokio::time::Instant::now();
        let mut pending: Vec<&Item> = items.iter().collect();
        loop {
            let mut still = Vec::new();
            let mut problems = Vec::new();
            let mut hopeless = false;
            for item in pending {
                let live = self.cluster.get(api_version(&item.body), &item.id).await?;
                let st = live
                    .as_ref()
                    .map_or(Status::Waiting("not found".into()), |l| {
                        ready::status(&item.id.kind, l)
                    });
                match st {
                    Status::Ready => continue,
                    Status::Failed(why) => {
                        hopeless = true;
                        problems.push(format!("{}: {why}", item.id));
                    }
                    Status::Waiting(why) => problems.push(format!("{}: {why}", item.id)),
                }
                if let Some(l) = &live {
                    let (fatal, lines) = self.pod_report(&item.id, l).await?;
                    hopeless |= fatal;
                    problems.extend(lines.into_iter().map(|x| format!("    {x}")));
                }
                still.push(item);
            }
            if still.is_empty() {
                return Ok(());
            }
            if hopeless || start.elapsed() > self.ready_timeout {
                let head = if hopeless {
                    "will not become ready".to_owned()
                } else {
                    format!("not ready after {:?}", self.ready_timeout)
                };
                return Err(K8sError::NotReady(format!(
                    "release {} {head}:\n  {}",
                    self.name,
                    problems.join("\n  ")
                )));
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(750)).await;
        }
    }

    /// What the pods of a workload say: container reasons, then warnings
    /// (failing probes) from their events.
    async fn pod_report(
        &self,
        id: &ObjectId,
        live: &Value,
    ) -> Result<(bool, Vec<String>), K8sError> {
        if !matches!(
            id.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job"
        ) {
            return Ok((false, Vec::new()));
        }
        let Some(labels) = live
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
        else {
            return Ok((false, Vec::new()));
        };
        let mut selector: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        // Only the pods of the current revision: an old ReplicaSet's broken pods
        // say nothing about the new one.
        if let Some(hash) = self.current_revision_label(id, live, &selector).await? {
            selector.push(hash);
        }
        let pods = self
            .cluster
            .list(
                "v1",
                "Pod",
                id.namespace.as_deref(),
                Some(&selector.join(",")),
                None,
            )
            .await?;
        let mut fatal = false;
        let mut out = Vec::new();
        for p in &pods {
            let (f, lines) = ready::pod_problems(p);
            fatal |= f;
            out.extend(lines);
            let name = p
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let events = self
                .cluster
                .list(
                    "v1",
                    "Event",
                    id.namespace.as_deref(),
                    None,
                    Some(&format!("involvedObject.name={name}")),
                )
                .await?;
            out.extend(ready::event_lines(&events));
        }
        Ok((fatal, out))
    }

    /// The label that picks a workload's current pods: a Deployment's newest
    /// ReplicaSet's `pod-template-hash`, a StatefulSet's update revision.
    async fn current_revision_label(
        &self,
        id: &ObjectId,
        live: &Value,
        selector: &[String],
    ) -> Result<Option<String>, K8sError> {
        match id.kind.as_str() {
            "StatefulSet" => Ok(live
                .pointer("/status/updateRevision")
                .and_then(Value::as_str)
                .map(|r| format!("controller-revision-hash={r}"))),
            "Deployment" => {
                let revision = live
                    .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                    .and_then(Value::as_str);
                let sets = self
                    .cluster
                    .list(
                        "apps/v1",
                        "ReplicaSet",
                        id.namespace.as_deref(),
                        Some(&selector.join(",")),
                        None,
                    )
                    .await?;
                Ok(sets
                    .iter()
                    .find(|rs| {
                        rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                            .and_then(Value::as_str)
                            == revision
                    })
                    .and_then(|rs| {
                        rs.pointer("/metadata/labels/pod-template-hash")
                            .and_then(Value::as_str)
                    })
                    .map(|h| format!("pod-template-hash={h}")))
            }
            _ => Ok(None),
        }
    }

    /// How the recorded objects stand in the cluster: each recorded body with
    /// the live values of the fields we set where they drifted; absent ones
    /// left out. Secrets compare keys and, for values we can read here
    /// (`resolved`), the values.
    pub async fn observe(
        &self,
        recorded: &Map<String, Value>,
        resolved: &BTreeMap<String, Secret>,
        outputs: &BTreeMap<String, String>,
    ) -> Result<Map<String, Value>, K8sError> {
        let checks: Vec<_> = recorded
            .iter()
            .map(|(key, body)| async move {
                let Some(id) = ObjectId::parse(key) else {
                    return Ok((key.clone(), None));
                };
                let mut filled = body.clone();
                fill_outputs(&mut filled, outputs);
                let live = match self.cluster.get(api_version(body), &id).await {
                    Ok(l) => l,
                    Err(K8sError::NoKind { .. }) => None,
                    Err(e) => return Err(e),
                };
                let Some(live) = live else {
                    return Ok((key.clone(), None));
                };
                if id.kind == "Secret" && id.group.is_empty() {
                    return Ok((key.clone(), Some(observe_secret(body, &live, resolved))));
                }
                // An output not known yet (its resource is new): nothing to compare against.
                if filled.to_string().contains("((output:") {
                    return Ok((key.clone(), Some(body.clone())));
                }
                let dry = match self.cluster.apply(&id, &filled, true, false).await {
                    Ok(d) => d,
                    // Another manager owns a field we set: force shows what ours would be.
                    Err(K8sError::Conflict { .. }) => {
                        self.cluster.apply(&id, &filled, true, true).await?
                    }
                    Err(e) => return Err(e),
                };
                // Compared in the filled form, reported in the recorded (token) form.
                let seen = normalize::observed(&filled, &dry, &live);
                Ok((
                    key.clone(),
                    Some(if seen == filled { body.clone() } else { seen }),
                ))
            })
            .collect();
        let results: Vec<Result<(String, Option<Value>), K8sError>> = futures::stream::iter(checks)
            .buffer_unordered(self.parallelism.max(1))
            .collect()
            .await;
        let mut out = Map::new();
        for r in results {
            if let (k, Some(v)) = r? {
                out.insert(k, v);
            }
        }
        // Keep the recorded order so the plan reads in apply order.
        Ok(recorded
            .keys()
            .filter_map(|k| out.remove(k).map(|v| (k.clone(), v)))
            .collect())
    }
}

/// A recorded Secret as the cluster has it: labels, type and keys from the
/// live object; a value we can resolve here that differs is marked changed
/// (as a token, so the plan says "(sensitive)" on both sides).
fn observe_secret(recorded: &Value, live: &Value, resolved: &BTreeMap<String, Secret>) -> Value {
    let mut out = recorded.clone();
    if let Some(m) = out.as_object_mut()
        && m.contains_key("type")
        && let Some(v) = live.get("type")
    {
        m.insert("type".into(), v.clone());
    }
    for (path, _) in normalize::leaves(recorded)
        .into_iter()
        .filter(|(p, _)| matches!(p.first(), Some(normalize::Seg::Key(k)) if k == "metadata"))
    {
        normalize::set(&mut out, &path, normalize::get(live, &path).cloned());
    }
    let live_data = live
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut sd = Map::new();
    let recorded_sd = recorded
        .get("stringData")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let recorded_data = recorded
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Keys the chart wrote under `data` (public, e.g. a CA bundle) stay as recorded.
    for (k, v) in live_data
        .iter()
        .filter(|(k, _)| !recorded_data.contains_key(*k))
    {
        let decoded = v
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let value = match recorded_sd.get(k) {
            Some(Value::String(template)) => {
                // The value we would write, where every token it uses is readable here.
                let names = object::tokens_in(template);
                let mut expect = template.clone();
                let mut known = true;
                for n in names {
                    match resolved.get(n) {
                        Some(s) => expect = expect.replace(&object::secret_token(n), s.expose()),
                        None => known = false,
                    }
                }
                if known && decoded.as_deref() != Some(expect.as_str()) {
                    Value::String("((secret:changed outside provisioner))".into())
                } else {
                    Value::String(template.clone())
                }
            }
            _ => Value::String("((secret:unknown key))".into()),
        };
        sd.insert(k.clone(), value);
    }
    if let Some(m) = out.as_object_mut() {
        m.insert("stringData".into(), Value::Object(sd));
    }
    out
}

/// The apiVersion to address an object only known by key (pruning a kind an
/// earlier revision rendered): the stable version of well-known groups.
fn default_api_version(id: &ObjectId) -> String {
    match id.group.as_str() {
        "" => "v1".into(),
        "apps"
        | "batch"
        | "rbac.authorization.k8s.io"
        | "networking.k8s.io"
        | "apiextensions.k8s.io"
        | "admissionregistration.k8s.io"
        | "policy"
        | "autoscaling" => format!("{}/v1", id.group),
        g => format!("{g}/v1alpha1"),
    }
}
