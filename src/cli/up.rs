//! `provisioner up <env>`: plan, then apply with state saved after every step.

use std::time::Duration;

use serde::Serialize;

use super::{ApplyOpts, Cli, Output, changes, load_env, open_store, print_json, refresh};
use crate::Error;
use crate::env::load::Loaded;
use crate::plan::desired::desired;
use crate::plan::diff::{Action, Change, Summary};
use crate::plan::executor::{Executor, Report};
use crate::plan::render::{FORMAT_VERSION, PlanDoc, human};
use crate::plan::retry::RetryPolicy;
use crate::provider::Registry;
use crate::state::{StateFile, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: ApplyOpts,
}

#[derive(Serialize)]
struct Outcome<'a> {
    format_version: &'static str,
    environment: &'a str,
    operation: &'a str,
    summary: Summary,
    report: &'a Report,
    errors: Vec<String>,
    /// OpenStack API calls this run made (0 when the cloud was not touched).
    api_calls: u64,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let loaded = load_env(cli, &args.opts.env)?;
    let mut store = open_store(cli, &loaded).await?;
    let registry = Registry::for_env(&loaded.env, cli.cloud.as_deref());
    let lock = store.lock("up", args.opts.lock_timeout).await?;
    let result = async {
        let state = store.load().await?;
        store.check_key(&state)?;
        let observed = refresh(&registry, &state).await?;
        let desired = desired(&loaded.env);
        let changes = changes(&desired, &state, &observed, &args.opts.target, false);
        apply(cli, &loaded, &mut store, lock.as_ref(), &registry, state, desired, changes, "up").await
    }
    .await;
    lock.release().await?;
    result
}

/// Shared by `up` and `destroy`: preflight, show the plan, walk it, report.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    cli: &Cli,
    loaded: &Loaded,
    store: &mut Store,
    lock: &dyn crate::state::LockHandle,
    registry: &Registry,
    state: StateFile,
    desired: Vec<crate::plan::resource::Desired>,
    changes: Vec<Change>,
    operation: &str,
) -> Result<i32, Error> {
    let summary = Summary::of(&changes);
    if cli.output == Output::Human {
        let doc = PlanDoc {
            format_version: FORMAT_VERSION,
            environment: &loaded.env.name,
            operation,
            state: store.backend.describe(),
            summary,
            changes: changes.iter().collect(),
            warnings: &[],
        };
        eprint!("{}", human(&doc));
    }
    let cloud_creates = changes.iter().any(|c| crate::openstack::KINDS.contains(&c.kind.as_str()) && matches!(c.action, Action::Create | Action::Replace));
    if cloud_creates {
        // Quotas, image, flavors, external network: all before the first create.
        let cx = registry.openstack.cx().await.map_err(|e| Error::Preflight(e.message))?;
        let needs = crate::openstack::preflight::check(cx, &changes, &desired).await.map_err(|e| Error::Preflight(e.message))?;
        tracing::info!(?needs, "preflight passed");
    }
    if changes.iter().any(|c| c.kind == "secret" && matches!(c.action, Action::Create | Action::Replace | Action::Update)) {
        store.ensure_key(&state)?;
    }
    let delay = std::env::var("PROVISIONER_APPLY_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    let exec = Executor {
        store,
        lock,
        providers: registry,
        desired: desired.into_iter().map(|d| (d.address.clone(), d)).collect(),
        parallelism: loaded.env.apply.parallelism,
        retry: RetryPolicy::default(),
        timeouts: loaded.env.timeouts.clone(),
        progress: crate::ui::bar(cli.output == Output::Human),
        delay,
    };
    let (_state, report) = exec.run(state, &changes).await;
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    match cli.output {
        Output::Json => print_json(&Outcome { format_version: FORMAT_VERSION, environment: &loaded.env.name, operation, summary, report: &report, errors: errors.clone(), api_calls: registry.openstack.api_calls() })?,
        Output::Human => println!(
            "{operation} `{}`: {} created, {} adopted, {} updated, {} deleted.",
            loaded.env.name,
            report.created.len(),
            report.adopted.len(),
            report.updated.len(),
            report.deleted.len()
        ),
    }
    if errors.is_empty() { Ok(0) } else { Err(Error::Apply(errors)) }
}
