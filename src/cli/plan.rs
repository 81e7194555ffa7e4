//! `provisioner plan <env>`: exit 0 no change, 2 changes, 1 error.

use super::{ApplyOpts, Cli, Output, changes, load_env, open_store, print_json, refresh};
use crate::Error;
use crate::plan::desired::desired;
use crate::plan::diff::Summary;
use crate::plan::render::{FORMAT_VERSION, PlanDoc, human};
use crate::provider::Registry;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: ApplyOpts,
    /// Plan the deletion of everything in state.
    #[arg(long)]
    pub destroy: bool,
    /// Read recorded resources from their APIs first (drift); `--refresh=false` uses state only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub refresh: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let loaded = load_env(cli, &args.opts.env)?;
    let store = open_store(cli, &loaded).await?;
    let state = store.load().await?;
    let registry = Registry::for_env(&loaded.env, cli.cloud.as_deref());
    let observed = if args.refresh && !args.destroy { refresh(&registry, &state).await? } else { Default::default() };
    let desired = desired(&loaded.env);
    let changes = changes(&desired, &state, &observed, &args.opts.target, args.destroy);
    let summary = Summary::of(&changes);
    let doc = PlanDoc {
        format_version: FORMAT_VERSION,
        environment: &loaded.env.name,
        operation: if args.destroy { "destroy" } else { "up" },
        state: store.backend.describe(),
        summary,
        changes: changes.iter().collect(),
        warnings: &loaded.warnings,
    };
    match cli.output {
        Output::Json => print_json(&doc)?,
        Output::Human => print!("{}", human(&doc)),
    }
    Ok(if summary.has_changes() { 2 } else { 0 })
}
