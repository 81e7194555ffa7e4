//! The pipeline every command that plans or changes an environment runs:
//! load → lock → refresh → diff → approve → preflight → apply → report.
//! The command line only parses, shows and answers (through `Ui`); what
//! happens, and in which order, is decided here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::approval::{self, Approval, Confirm};
use super::desired::{Inputs, desired};
use super::diff::{self, Change, Observed, Summary};
use super::executor::{Executor, Report};
use super::render::{FORMAT_VERSION, PlanDoc};
use super::resource::{Desired, Layer};
use super::retry::RetryPolicy;
use super::saved::SavedPlan;
use crate::Error;
use crate::charts::Catalog;
use crate::core::Address;
use crate::env::load::Loaded;
use crate::provider::{Facts, Live, Options, Registry};
use crate::state::{LockHandle, Record, StateFile, Status, Store};

/// What a run does to the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Converge every layer to the environment file.
    Up,
    /// Delete everything the environment owns.
    Destroy,
    /// Converge the platform layer (and the local secrets it uses) only.
    Deploy,
    /// Replace etcd's data with a snapshot (`etcd restore`).
    Restore,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Up => "up",
            Operation::Destroy => "destroy",
            Operation::Deploy => "deploy",
            Operation::Restore => "etcd restore",
        }
    }
}

/// What to plan.
#[derive(Debug, Clone)]
pub struct Request {
    pub operation: Operation,
    /// `--target`: addresses, bases or kinds, plus what they need.
    pub targets: Vec<String>,
    /// Read recorded resources from their APIs first (drift, out-of-band deletes).
    pub refresh: bool,
}

/// A plan: the changes, and what they were computed from.
#[derive(Debug)]
pub struct Plan {
    pub operation: Operation,
    pub targets: Vec<String>,
    /// The state the plan was made against, with any swept records added.
    pub state: StateFile,
    /// Owned resources state had lost, found by `destroy`'s sweep.
    pub swept: BTreeMap<Address, Record>,
    pub desired: Vec<Desired>,
    pub changes: Vec<Change>,
    /// What the plan leaves out, and why (no cluster for the platform layer).
    pub notes: Vec<String>,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.changes)
    }
}

/// What an apply did.
#[derive(Debug)]
pub struct Applied {
    /// What was applied (a saved plan says which).
    pub operation: Operation,
    pub summary: Summary,
    pub report: Report,
    pub api_calls: u64,
}

/// How the command line takes part in a run.
pub trait Ui: Confirm {
    /// Show the plan before anything is asked or changed.
    fn show_plan(&self, doc: &PlanDoc);
    /// A progress bar for the apply (hidden when nobody watches).
    fn progress(&self) -> ProgressBar;
}

/// An environment, its state, the providers of its layers and the charts
/// its stacks use.
pub struct Session {
    pub loaded: Loaded,
    pub store: Store,
    pub registry: Registry,
    /// Charts and stacks, loaded when the environment selects a stack.
    pub catalog: Option<Catalog>,
    /// `--set RELEASE.key=value` overrides, in order.
    pub sets: Vec<(String, serde_json::Value)>,
}

/// Where the changes to apply come from.
pub enum Source<'a> {
    /// Plan now, against the state read under the lock.
    Fresh(&'a Request),
    /// A plan written by `plan --out`, verified against the state and inputs.
    Saved {
        plan: Box<SavedPlan>,
        path: &'a Path,
    },
}

impl Session {
    /// Nothing authenticates here: providers connect on first use.
    pub async fn open(
        loaded: Loaded,
        state_dir: Option<&Path>,
        conn: &Options,
    ) -> Result<Self, Error> {
        let backend = crate::state::backend_for(&loaded.env, state_dir).await?;
        let store = Store::new(backend, &loaded.env)?;
        let registry = Registry::for_env(&loaded.env, conn);
        let catalog = if loaded.env.stacks.is_empty() {
            None
        } else {
            Some(Catalog::discover()?)
        };
        Ok(Self {
            loaded,
            store,
            registry,
            catalog,
            sets: Vec::new(),
        })
    }

    /// The desired model; `facts` from the providers when they could be read,
    /// `state` for the revision each release would become.
    pub fn desired(&self, facts: &Facts, state: &StateFile) -> Result<Vec<Desired>, Error> {
        let revisions = state
            .resources
            .iter()
            .filter(|(a, _)| a.kind() == "release")
            .filter_map(|(a, r)| Some((a.name().to_owned(), r.outputs.get("revision")?.as_u64()?)))
            .collect();
        // Pod ranges already given to nodes stay theirs (the cluster layer's IPAM lives in state).
        let pod_cidrs = state
            .resources
            .iter()
            .filter(|(a, _)| a.kind() == "kubelet")
            .filter_map(|(a, r)| {
                Some((
                    a.name().to_owned(),
                    r.attrs.get("pod_cidr")?.as_str()?.to_owned(),
                ))
            })
            .collect();
        let inputs = Inputs {
            catalog: self.catalog.as_ref(),
            capabilities: facts.capabilities.as_ref(),
            sets: &self.sets,
            revisions,
            pod_cidrs,
            // Built (or read from the cache) here: only planning needs the digests.
            images: crate::image::for_env(&self.loaded.env)?,
            node_image: self
                .loaded
                .env
                .image
                .build
                .as_deref()
                .map(crate::image::node::Loaded::load)
                .transpose()?,
        };
        Ok(desired(&self.loaded.env, &inputs)?)
    }

    /// Every input file (environment files, then charts and stacks) with its digest.
    pub fn inputs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .loaded
            .files
            .iter()
            .zip(&self.loaded.digests)
            .map(|(f, d)| (f.display().to_string(), d.clone()))
            .collect();
        out.extend(self.catalog.iter().flat_map(|c| c.files.iter().cloned()));
        out
    }

    pub fn env_name(&self) -> &str {
        &self.loaded.env.name
    }

    /// Read every ready record whose kind has a provider (read calls only), at
    /// most `apply.parallelism` at a time.
    pub async fn refresh(
        &self,
        state: &StateFile,
    ) -> Result<(BTreeMap<Address, Observed>, BTreeMap<Address, String>), Error> {
        // Interrupted records (creating/deleting) are not read: the diff already
        // plans them, and a create that never returned has no id to read.
        let reads = state
            .resources
            .iter()
            .filter(|(_, r)| r.status == Status::Ready)
            .filter_map(|(addr, rec)| {
                let p = self.registry.get(&rec.kind)?;
                // A provider reads with the outputs its record refers to filled in (a
                // release compares objects that carry a certificate's CA bundle).
                let mut filled = rec.clone();
                for v in filled.attrs.values_mut() {
                    fill_output_refs(v, state);
                }
                Some(async move {
                    let mut live =
                        p.read(addr, &filled)
                            .await
                            .map_err(|source| Error::Provider {
                                context: format!("refreshing {addr}"),
                                source,
                            })?;
                    // Report the filled fields as recorded (references), so they diff as such.
                    if let Some(l) = live.as_mut() {
                        for (k, v) in rec
                            .attrs
                            .iter()
                            .filter(|(k, v)| filled.attrs.get(*k) != Some(*v))
                        {
                            l.attrs.insert(k.clone(), v.clone());
                        }
                    }
                    Ok::<_, Error>((addr.clone(), live))
                })
            });
        let results: Vec<Result<(Address, Option<Live>), Error>> = futures::stream::iter(reads)
            .buffer_unordered(self.loaded.env.apply.parallelism.max(1))
            .collect()
            .await;
        let mut observed = BTreeMap::new();
        let mut bases = BTreeMap::new();
        for r in results {
            let (addr, live) = r?;
            if let Some(b) = live.as_ref().and_then(|l| l.basis.clone()) {
                bases.insert(addr.clone(), b);
            }
            observed.insert(
                addr,
                live.map_or(Observed::Gone, |l| Observed::Live(l.attrs)),
            );
        }
        Ok((observed, bases))
    }

    /// Every resource the environment owns (by ownership tags or names), under
    /// `targets`, as state records: dependencies and attributes come from the
    /// environment file where it still names the address, so `destroy` deletes
    /// in order and a rebuilt state diffs cleanly.
    pub async fn discover_owned(
        &self,
        targets: &[String],
    ) -> Result<Vec<(Address, Record)>, Error> {
        // The platform layer discovers nothing by tags; the other layers' model suffices.
        let desired = desired(&self.loaded.env, &Inputs::default())?;
        let mut out = Vec::new();
        for provider in self
            .registry
            .providers()
            .filter(|p| p.kinds().iter().any(|k| kind_targeted(targets, k)))
        {
            let found = provider
                .discover()
                .await
                .map_err(|source| Error::Provider {
                    context: format!("discovering {} resources", provider.kinds().join("/")),
                    source,
                })?;
            for (addr, live) in found
                .into_iter()
                .filter(|(a, _)| kind_targeted(targets, a.kind()))
            {
                let d = desired.iter().find(|d| d.address == addr);
                let rec = Record {
                    kind: addr.kind().to_owned(),
                    id: Some(live.id),
                    status: Status::Ready,
                    attrs: d.map_or(live.attrs, |d| d.attrs.clone()),
                    outputs: live.outputs,
                    deps: d.map(|d| d.deps.clone()).unwrap_or_default(),
                    sealed: None,
                    secrets: Default::default(),
                    updated_at: crate::state::model::now(),
                };
                out.push((addr, rec));
            }
        }
        Ok(out)
    }

    /// The plan for `req` against `state`. `destroy` first sweeps owned
    /// resources the state lost, so they are deleted too.
    pub async fn plan(&self, mut state: StateFile, req: &Request) -> Result<Plan, Error> {
        let mut swept = BTreeMap::new();
        let mut notes = Vec::new();
        let (desired, changes) = match req.operation {
            Operation::Restore => {
                return Err(Error::Usage(
                    "`etcd restore` is not planned from the environment file; run `provisioner etcd restore`".into(),
                ));
            }
            Operation::Destroy => {
                if req.refresh {
                    for (addr, rec) in self.discover_owned(&req.targets).await? {
                        if let std::collections::btree_map::Entry::Vacant(slot) =
                            state.resources.entry(addr.clone())
                        {
                            tracing::info!(address = %addr, id = rec.id.as_deref().unwrap_or("-"), "found an owned resource missing from state; it is deleted too");
                            swept.insert(addr, rec.clone());
                            slot.insert(rec);
                        }
                    }
                }
                (
                    Vec::new(),
                    diff::restrict(diff::destroy(&state), &req.targets),
                )
            }
            Operation::Up | Operation::Deploy => {
                let (observed, bases) = if req.refresh {
                    self.refresh(&state).await?
                } else {
                    Default::default()
                };
                let facts = if self.catalog.is_some() {
                    self.registry.facts().await
                } else {
                    Facts::default()
                };
                let desired = self.desired(&facts, &state)?;
                let mut changes =
                    diff::restrict(diff::diff(&desired, &state, &observed), &req.targets);
                for c in &mut changes {
                    c.basis = bases.get(&c.address).cloned();
                }
                if req.operation == Operation::Deploy {
                    // The images the charts run are pushed first: a digest must exist to be pulled.
                    changes.retain(|c| matches!(c.layer, Layer::Local | Layer::Images | Layer::Platform));
                }
                if facts.cluster.is_none() && changes.iter().any(|c| c.layer == Layer::Platform) {
                    if req.operation == Operation::Deploy {
                        return Err(Error::Usage(format!(
                            "`{}` has no cluster to deploy to: set platform.kubeconfig in the environment file, or pass --kubeconfig (or KUBECONFIG)",
                            self.env_name()
                        )));
                    }
                    let n = changes
                        .iter()
                        .filter(|c| c.layer == Layer::Platform)
                        .count();
                    changes.retain(|c| c.layer != Layer::Platform);
                    notes.push(format!("the platform layer ({n} releases and namespaces) is left out: no cluster is configured (platform.kubeconfig, --kubeconfig or KUBECONFIG); `provisioner deploy` installs it once there is one"));
                }
                (desired, changes)
            }
        };
        Ok(Plan {
            operation: req.operation,
            targets: req.targets.clone(),
            state,
            swept,
            desired,
            changes,
            notes,
        })
    }

    /// The plan as a document, for people (`render::human`) and machines.
    pub fn doc<'a>(&'a self, plan: &'a Plan) -> PlanDoc<'a> {
        PlanDoc {
            format_version: FORMAT_VERSION,
            environment: self.env_name(),
            operation: plan.operation.as_str(),
            state: self.store.backend.describe(),
            summary: plan.summary(),
            changes: plan.changes.iter().collect(),
            warnings: &self.loaded.warnings,
            notes: &plan.notes,
        }
    }

    /// Preflight, then walk the plan with state saved after every step.
    pub async fn apply(
        &mut self,
        lock: &dyn LockHandle,
        plan: Plan,
        progress: ProgressBar,
    ) -> Result<Applied, Error> {
        let (summary, operation) = (plan.summary(), plan.operation);
        self.registry
            .preflight(&plan.changes, &plan.desired)
            .await
            .map_err(Error::Preflight)?;
        let mut state = plan.state;
        if plan.changes.iter().any(|c| {
            c.kind == "secret" && c.action != diff::Action::Delete && c.action != diff::Action::NoOp
        }) {
            self.store.ensure_key(&state)?;
        }
        // References may select sealed secrets: open them in memory for the run.
        if let Some(k) = &self.store.key
            && state.has_sealed()
        {
            state.unseal(k)?;
        }
        let delay = std::env::var("PROVISIONER_APPLY_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        let exec = Executor {
            store: &self.store,
            lock,
            providers: &self.registry,
            desired: plan
                .desired
                .into_iter()
                .map(|d| (d.address.clone(), d))
                .collect(),
            parallelism: self.loaded.env.apply.parallelism,
            retry: RetryPolicy::default(),
            timeouts: self.loaded.env.timeouts.clone(),
            progress,
            delay,
        };
        let (_state, report) = exec.run(state, &plan.changes).await;
        Ok(Applied {
            operation,
            summary,
            report,
            api_calls: self.registry.api_calls(),
        })
    }

    /// `up`, `destroy`, `deploy`: take the lock, plan (or verify a saved plan),
    /// show it, get approval, apply, release the lock — whatever happens.
    pub async fn converge(
        &mut self,
        source: Source<'_>,
        approval: &Approval,
        lock_timeout: Duration,
        ui: &dyn Ui,
    ) -> Result<Applied, Error> {
        let operation = match &source {
            Source::Fresh(r) => r.operation,
            Source::Saved { plan, .. } => plan.operation,
        };
        let lock = self.store.lock(operation.as_str(), lock_timeout).await?;
        let result = async {
            let state = self.store.load().await?;
            self.store.check_key(&state)?;
            let plan = match source {
                Source::Fresh(req) => self.plan(state, req).await?,
                Source::Saved { plan, path } => {
                    (*plan).into_plan(path, &self.loaded.env.name, self.inputs(), state)?
                }
            };
            ui.show_plan(&self.doc(&plan));
            approval::decide(plan.operation, self.env_name(), &plan.changes, approval, ui)?;
            self.apply(lock.as_ref(), plan, ui.progress()).await
        }
        .await;
        lock.release().await?;
        result
    }
}

impl Session {
    /// `status ENV`: what each provider reports about the live system, and
    /// every certificate recorded in state with its expiry.
    pub async fn status(&self) -> Result<serde_json::Value, Error> {
        let state = self.store.load().await?;
        let mut doc = serde_json::Map::new();
        for p in self.registry.providers() {
            if let Some(serde_json::Value::Object(m)) = p.status(&filled(&state)).await {
                doc.extend(m);
            }
        }
        let now = chrono::Utc::now();
        let mut certs = Vec::new();
        for (addr, rec) in &state.resources {
            let mut found: Vec<(String, String)> = rec
                .outputs
                .get("certificates")
                .and_then(serde_json::Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(n, t)| Some((n.clone(), t.as_str()?.to_owned())))
                .collect();
            for (k, v) in &rec.outputs {
                if let (Some(n), Some(t)) = (k.strip_suffix("_not_after"), v.as_str()) {
                    found.push((n.to_owned(), t.to_owned()));
                }
            }
            if let Some(t) = rec
                .outputs
                .get("not_after")
                .and_then(serde_json::Value::as_str)
            {
                found.push((addr.name().to_owned(), t.to_owned()));
            }
            for (name, at) in found {
                let days = chrono::DateTime::parse_from_rfc3339(&at)
                    .map(|t| (t.with_timezone(&chrono::Utc) - now).num_days())
                    .ok();
                certs.push(serde_json::json!({
                    "resource": addr.as_str(), "certificate": name, "not_after": at, "days_left": days,
                }));
            }
        }
        doc.insert("certificates".into(), certs.into());
        Ok(serde_json::Value::Object(doc))
    }

    /// Every recorded release and, when the cluster answers, its history.
    pub async fn releases(
        &self,
    ) -> Result<
        Vec<(
            Address,
            Record,
            Result<Vec<serde_json::Value>, crate::provider::ProviderError>,
        )>,
        Error,
    > {
        let state = self.store.load().await?;
        let mut out = Vec::new();
        for (addr, rec) in state
            .resources
            .into_iter()
            .filter(|(a, _)| a.kind() == "release")
        {
            let history = match self.registry.get("release") {
                Some(p) => p.revisions(&addr, &rec).await,
                None => Ok(Vec::new()),
            };
            out.push((addr, rec, history));
        }
        Ok(out)
    }

    /// `rollback ENV RELEASE [--to N]`: show what going back changes, get
    /// approval, re-apply that revision as a new one, record it in state.
    pub async fn rollback(
        &mut self,
        release: &str,
        to: Option<u64>,
        approval: &Approval,
        lock_timeout: Duration,
        ui: &dyn Ui,
    ) -> Result<Applied, Error> {
        let addr = Address::new("release", release);
        let lock = self.store.lock("rollback", lock_timeout).await?;
        let result = async {
            let state = self.store.load().await?;
            let rec = state.resources.get(&addr).cloned().ok_or_else(|| Error::Usage(format!("no release `{release}` in the state of `{}`; `provisioner releases {}` lists them", self.env_name(), self.env_name())))?;
            let provider = self.registry.get("release").ok_or_else(|| Error::Usage("no provider for releases".into()))?.clone();
            let history = provider.revisions(&addr, &rec).await.map_err(|source| Error::Provider { context: format!("history of {addr}"), source })?;
            let current = rec.outputs.get("revision").and_then(serde_json::Value::as_u64);
            let target = match to {
                Some(n) => history.iter().find(|h| h["revision"].as_u64() == Some(n)),
                None => history.iter().rev().find(|h| h["revision"].as_u64() < current && matches!(h["status"].as_str(), Some("superseded" | "deployed"))),
            }
            .ok_or_else(|| Error::Usage(format!("{addr}: no revision {} to go back to; `provisioner releases {}` shows the history", to.map_or("before the current one".into(), |n| n.to_string()), self.env_name())))?;
            let n = target["revision"].as_u64().unwrap_or_default();
            // The change, as a plan: the recorded release against the target revision.
            let mut attrs = rec.attrs.clone();
            for k in ["chart", "chart_version", "values", "objects"] {
                if let Some(v) = target["attrs"].get(k) {
                    attrs.insert(k.to_owned(), v.clone());
                }
            }
            let d = Desired::new(addr.clone(), serde_json::Value::Object(attrs.into_iter().collect()));
            let mut only = StateFile::new(self.env_name());
            only.resources.insert(addr.clone(), rec.clone());
            let mut changes = diff::diff(std::slice::from_ref(&d), &only, &BTreeMap::new());
            for c in &mut changes {
                c.reason = Some(format!("rollback to revision {n}"));
                if c.action == diff::Action::NoOp {
                    c.action = diff::Action::Update;
                }
            }
            let plan = Plan { operation: Operation::Deploy, targets: vec![addr.to_string()], state, swept: BTreeMap::new(), desired: vec![d], changes, notes: Vec::new() };
            ui.show_plan(&self.doc(&plan));
            approval::decide(Operation::Deploy, self.env_name(), &plan.changes, approval, ui)?;
            let summary = plan.summary();
            let mut state = plan.state;
            let live = provider.revert(&addr, &rec, Some(n)).await.map_err(|source| Error::Provider { context: format!("rolling back {addr}"), source })?;
            state.resources.insert(addr.clone(), Record { attrs: live.attrs, outputs: live.outputs, updated_at: crate::state::model::now(), ..rec });
            self.store.save(&mut state, lock.as_ref()).await?;
            let report = Report { updated: vec![addr.clone()], ..Report::default() };
            Ok(Applied { operation: Operation::Deploy, summary, report, api_calls: self.registry.api_calls() })
        }
        .await;
        lock.release().await?;
        result
    }
}

/// Records as providers read them: references to outputs filled in (a node's
/// address from its server, its pinned host key from its host step).
pub(crate) fn filled(state: &StateFile) -> BTreeMap<Address, Record> {
    state
        .resources
        .iter()
        .map(|(a, r)| {
            let mut r = r.clone();
            for v in r.attrs.values_mut() {
                fill_output_refs(v, state);
            }
            (a.clone(), r)
        })
        .collect()
}

/// Replace `{"ref": a, "output": o}` with the output state recorded for `a`,
/// where it has one (ids and secrets are left as references).
pub(crate) fn fill_output_refs(v: &mut serde_json::Value, state: &StateFile) {
    if let Some(r) = crate::core::Ref::parse(v) {
        if let crate::core::Select::Output(o) = &r.select
            && let Some(val) = state
                .resources
                .get(&r.address)
                .and_then(|rec| rec.outputs.get(o))
        {
            *v = val.clone();
        }
        return;
    }
    match v {
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| fill_output_refs(x, state)),
        serde_json::Value::Object(m) => m.values_mut().for_each(|x| fill_output_refs(x, state)),
        _ => {}
    }
}

/// Whether `--target` values (empty = everything) reach resources of `kind`.
pub fn kind_targeted(targets: &[String], kind: &str) -> bool {
    targets.is_empty()
        || targets
            .iter()
            .any(|t| t == kind || t.starts_with(&format!("{kind}.")))
}
