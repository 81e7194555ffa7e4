//! Walks a plan: deletes first in reverse dependency order, then creates and
//! updates in dependency order, each phase with bounded parallelism. State is
//! saved before a create or delete starts (intent) and after it finishes, so
//! a crash at any point leaves a record the next run converges from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::ProgressBar;
use serde_json::Value;
use tokio::sync::Mutex;

use super::diff::{Action, Change};
use super::resource::Desired;
use super::retry::RetryPolicy;
use crate::core::{Address, Ref, Select};
use crate::env::model::Timeouts;
use crate::provider::{Class, Live, Provider, ProviderError, Registry};
use crate::state::model::now;
use crate::state::{LockHandle, Record, StateError, StateFile, Status, Store};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{address}: {source}")]
    Resource {
        address: Address,
        #[source]
        source: ProviderError,
    },
    #[error("{address}: {message}")]
    Unresolved { address: Address, message: String },
    #[error("{address}: skipped because {cause} failed")]
    Skipped { address: Address, cause: Address },
    #[error(transparent)]
    State(#[from] StateError),
}

impl ApplyError {
    /// The class of the underlying failure, for the exit code.
    pub fn class(&self) -> Class {
        match self {
            ApplyError::Resource { source, .. } => source.class,
            ApplyError::State(StateError::Locked { .. } | StateError::LockLost { .. }) => {
                Class::Conflict
            }
            _ => Class::Fatal,
        }
    }
}

/// Outcome of one apply: what was done and what failed.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub created: Vec<Address>,
    pub updated: Vec<Address>,
    pub deleted: Vec<Address>,
    pub adopted: Vec<Address>,
    #[serde(skip)]
    pub errors: Vec<ApplyError>,
}

pub struct Executor<'a> {
    pub store: &'a Store,
    pub lock: &'a dyn LockHandle,
    pub providers: &'a Registry,
    pub desired: BTreeMap<Address, Desired>,
    pub parallelism: usize,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub progress: ProgressBar,
    /// Pause before and after each provider call (`PROVISIONER_APPLY_DELAY_MS`):
    /// for demos and for the crash-recovery tests that SIGKILL a run mid-walk.
    pub delay: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Delete,
    Apply,
}

impl Executor<'_> {
    pub async fn run(&self, state: StateFile, changes: &[Change]) -> (StateFile, Report) {
        let state = Mutex::new(state);
        let report = Mutex::new(Report::default());
        let work: Vec<&Change> = changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .collect();
        let deletes: Vec<&Change> = work
            .iter()
            .copied()
            .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
            .collect();
        let applies: Vec<&Change> = work
            .iter()
            .copied()
            .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Replace))
            .collect();

        self.progress
            .set_length((deletes.len() + applies.len()) as u64);
        // A resource is deleted only after everything that depends on it.
        let delete_set: BTreeSet<&Address> = deletes.iter().map(|c| &c.address).collect();
        let snapshot = state.lock().await.clone();
        let dependents = |a: &Address| -> Vec<Address> {
            snapshot
                .resources
                .iter()
                .filter(|(k, r)| r.deps.contains(a) && delete_set.contains(k))
                .map(|(k, _)| k.clone())
                .collect()
        };
        let delete_waits: Vec<Vec<Address>> =
            deletes.iter().map(|c| dependents(&c.address)).collect();
        let failed = self
            .walk(
                Op::Delete,
                &deletes,
                &delete_waits,
                &state,
                &report,
                &BTreeSet::new(),
            )
            .await;

        let apply_set: BTreeSet<&Address> = applies.iter().map(|c| &c.address).collect();
        let apply_waits: Vec<Vec<Address>> = applies
            .iter()
            .map(|c| {
                c.depends_on
                    .iter()
                    .filter(|d| apply_set.contains(d))
                    .cloned()
                    .collect()
            })
            .collect();
        self.walk(Op::Apply, &applies, &apply_waits, &state, &report, &failed)
            .await;

        self.progress.finish_and_clear();
        (state.into_inner(), report.into_inner())
    }

    /// Run `ops` respecting `waits` (addresses each op waits for), at most
    /// `parallelism` at a time. Returns the addresses that failed or were skipped.
    async fn walk(
        &self,
        op: Op,
        ops: &[&Change],
        waits: &[Vec<Address>],
        state: &Mutex<StateFile>,
        report: &Mutex<Report>,
        failed_before: &BTreeSet<Address>,
    ) -> BTreeSet<Address> {
        let mut done: BTreeSet<Address> = BTreeSet::new();
        let mut failed: BTreeSet<Address> = failed_before.clone();
        let mut started = vec![false; ops.len()];
        let mut running = FuturesUnordered::new();
        loop {
            for (i, c) in ops.iter().enumerate() {
                if started[i] || running.len() >= self.parallelism.max(1) {
                    continue;
                }
                if let Some(cause) = waits[i].iter().find(|w| failed.contains(*w)).cloned() {
                    started[i] = true;
                    failed.insert(c.address.clone());
                    report.lock().await.errors.push(ApplyError::Skipped {
                        address: c.address.clone(),
                        cause,
                    });
                    continue;
                }
                if waits[i].iter().all(|w| done.contains(w)) {
                    started[i] = true;
                    let c: &Change = c;
                    running.push(async move {
                        (c.address.clone(), self.one(op, c, state, report).await)
                    });
                }
            }
            let Some((addr, result)) = running.next().await else {
                break;
            };
            self.progress.inc(1);
            match result {
                Ok(()) => {
                    done.insert(addr);
                }
                Err(e) => {
                    tracing::error!(address = %addr, error = %e, "failed");
                    failed.insert(addr);
                    report.lock().await.errors.push(e);
                }
            }
        }
        failed
    }

    async fn one(
        &self,
        op: Op,
        c: &Change,
        state: &Mutex<StateFile>,
        report: &Mutex<Report>,
    ) -> Result<(), ApplyError> {
        let addr = &c.address;
        let fail = |source: ProviderError| ApplyError::Resource {
            address: addr.clone(),
            source,
        };
        let provider = self.providers.get(&c.kind).ok_or_else(|| {
            fail(ProviderError::fatal(format!(
                "no provider for kind `{}` (its layer is not implemented yet)",
                c.kind
            )))
        })?;
        self.progress.set_message(format!("{addr}"));
        match op {
            Op::Delete => {
                let rec = state.lock().await.resources.get(addr).cloned();
                let Some(mut rec) = rec else { return Ok(()) };
                if rec.id.is_none() {
                    // A create that was interrupted: it may or may not have made the
                    // resource. Look it up by ownership; if nothing is there, forget it.
                    let attrs = resolve_attrs(&rec.attrs, &*state.lock().await);
                    let found = match attrs {
                        Ok(a) => self
                            .retry
                            .run(
                                addr.as_str(),
                                Duration::from_secs(self.timeouts.delete),
                                || provider.find(addr, &a, true),
                            )
                            .await
                            .map_err(fail)?,
                        Err(_) => None,
                    };
                    match found {
                        Some(live) => {
                            rec.id = Some(live.id);
                            rec.outputs = live.outputs;
                        }
                        None => {
                            self.forget(state, addr).await?;
                            report.lock().await.deleted.push(addr.clone());
                            return Ok(());
                        }
                    }
                }
                rec.status = Status::Deleting;
                self.record(state, addr, rec.clone()).await?;
                // The provider reads outputs it refers to (a node's address) filled in.
                let mut rec = rec;
                {
                    let st = state.lock().await;
                    for v in rec.attrs.values_mut() {
                        super::session::fill_output_refs(v, &st);
                    }
                }
                self.pause().await;
                tracing::info!(address = %addr, "deleting");
                let deadline = Duration::from_secs(self.timeouts.delete);
                self.retry
                    .run(addr.as_str(), deadline, || provider.delete(addr, &rec))
                    .await
                    .map_err(fail)?;
                self.pause().await;
                self.forget(state, addr).await?;
                report.lock().await.deleted.push(addr.clone());
                Ok(())
            }
            Op::Apply => {
                let Some(d) = self.desired.get(addr) else {
                    return Err(fail(ProviderError::fatal("not in the desired model")));
                };
                let resolved =
                    self.resolve(d, state)
                        .await
                        .map_err(|message| ApplyError::Unresolved {
                            address: addr.clone(),
                            message,
                        })?;
                let existing = state.lock().await.resources.get(addr).cloned();
                match (c.action, existing) {
                    (Action::Update, Some(rec)) if rec.status == Status::Ready => {
                        tracing::info!(address = %addr, "updating");
                        let deadline = Duration::from_secs(self.timeouts.create);
                        let live = self
                            .retry
                            .run(addr.as_str(), deadline, || {
                                provider.update(addr, &rec, &resolved)
                            })
                            .await
                            .map_err(fail)?;
                        self.record(state, addr, ready(d, live)).await?;
                        report.lock().await.updated.push(addr.clone());
                    }
                    (_, existing) => {
                        let interrupted = existing.is_some_and(|r| r.status == Status::Creating);
                        // Intent first: a crash from here on leaves `creating`, and the next run adopts.
                        self.record(state, addr, intent(d)).await?;
                        self.pause().await;
                        let live = self
                            .create_or_adopt(
                                provider.as_ref(),
                                addr,
                                &resolved,
                                interrupted,
                                report,
                            )
                            .await
                            .map_err(fail)?;
                        self.pause().await;
                        self.record(state, addr, ready(d, live)).await?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn create_or_adopt(
        &self,
        provider: &dyn Provider,
        addr: &Address,
        attrs: &BTreeMap<String, Value>,
        interrupted: bool,
        report: &Mutex<Report>,
    ) -> Result<Live, ProviderError> {
        let deadline = Duration::from_secs(self.timeouts.create);
        if let Some(found) = self
            .retry
            .run(addr.as_str(), deadline, || {
                provider.find(addr, attrs, interrupted)
            })
            .await?
        {
            tracing::info!(address = %addr, id = %found.id, "adopted an existing resource owned by this environment");
            report.lock().await.adopted.push(addr.clone());
            return Ok(found);
        }
        tracing::info!(address = %addr, "creating");
        let live = self
            .retry
            .run(addr.as_str(), deadline, || provider.create(addr, attrs))
            .await?;
        report.lock().await.created.push(addr.clone());
        Ok(live)
    }

    /// The optional pause on both sides of a provider call, where a crash is most interesting.
    async fn pause(&self) {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
    }

    /// Desired attributes with references replaced by what they select.
    async fn resolve(
        &self,
        d: &Desired,
        state: &Mutex<StateFile>,
    ) -> Result<BTreeMap<String, Value>, String> {
        resolve_attrs(&d.attrs, &*state.lock().await)
    }

    async fn record(
        &self,
        state: &Mutex<StateFile>,
        addr: &Address,
        rec: Record,
    ) -> Result<(), StateError> {
        let mut st = state.lock().await;
        st.resources.insert(addr.clone(), rec);
        self.store.save(&mut st, self.lock).await
    }

    async fn forget(&self, state: &Mutex<StateFile>, addr: &Address) -> Result<(), StateError> {
        let mut st = state.lock().await;
        st.resources.remove(addr);
        self.store.save(&mut st, self.lock).await
    }
}

fn resolve_attrs(
    attrs: &BTreeMap<String, Value>,
    st: &StateFile,
) -> Result<BTreeMap<String, Value>, String> {
    attrs
        .iter()
        .map(|(k, v)| Ok((k.clone(), resolve_value(v, st)?)))
        .collect()
}

/// A reference becomes the id, an output, or (in memory only, for the
/// provider call) a sealed secret of a resource that is ready in state.
fn resolve_value(v: &Value, st: &StateFile) -> Result<Value, String> {
    if let Some(r) = Ref::parse(v) {
        let a = &r.address;
        let rec = match st.resources.get(a) {
            Some(rec) if rec.status == Status::Ready => rec,
            _ => return Err(format!("{a} is not created yet")),
        };
        return match &r.select {
            Select::Id => rec
                .id
                .clone()
                .map(Value::String)
                .ok_or_else(|| format!("{a} has no id in state")),
            Select::Output(o) => rec
                .outputs
                .get(o)
                .cloned()
                .ok_or_else(|| format!("{a} has no output `{o}` in state")),
            Select::Secret(s) => match rec.secrets.get(s) {
                Some(v) => Ok(Value::String(v.expose().to_owned())),
                None if rec.sealed.is_some() => {
                    Err(format!("{a} is sealed and the state key was not loaded"))
                }
                None => Err(format!(
                    "{a} holds no secret `{s}`; `provisioner state rm` it so `up` makes it again"
                )),
            },
        };
    }
    Ok(match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve_value(i, st))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), resolve_value(i, st)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn intent(d: &Desired) -> Record {
    Record {
        kind: d.spec.kind.to_owned(),
        id: None,
        status: Status::Creating,
        attrs: d.attrs.clone(),
        outputs: BTreeMap::new(),
        deps: d.deps.clone(),
        sealed: None,
        secrets: BTreeMap::new(),
        updated_at: now(),
    }
}

fn ready(d: &Desired, live: Live) -> Record {
    Record {
        kind: d.spec.kind.to_owned(),
        id: Some(live.id),
        status: Status::Ready,
        // Recorded in desired form (references, not ids) so the next diff compares like with like.
        attrs: d.attrs.clone(),
        outputs: live.outputs,
        deps: d.deps.clone(),
        sealed: None,
        secrets: live.secrets,
        updated_at: now(),
    }
}
