//! `provisioner plan <env>`: exit 0 no change, 2 changes, 1 error.
//! `--out FILE` saves the plan for `up ENV --plan FILE`.

use std::path::PathBuf;

use super::{ApplyOpts, Cli, Output, open_session_with, print_json};
use crate::Error;
use crate::plan::render::human;
use crate::plan::saved::SavedPlan;
use crate::plan::session::{Operation, Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: ApplyOpts,
    /// Plan the deletion of everything the environment owns.
    #[arg(long)]
    pub destroy: bool,
    /// Plan only the platform layer, as `deploy` applies it.
    #[arg(long, conflicts_with = "destroy")]
    pub deploy: bool,
    /// Save the plan to FILE for `provisioner up ENV --plan FILE` (no secret values in it).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let session = open_session_with(cli, &args.opts).await?;
    let state = session.store.load().await?;
    let operation = match (args.destroy, args.deploy) {
        (true, _) => Operation::Destroy,
        (_, true) => Operation::Deploy,
        _ => Operation::Up,
    };
    let plan = session
        .plan(
            state,
            &Request {
                operation,
                targets: args.opts.target.clone(),
                refresh: args.opts.refresh,
            },
        )
        .await?;
    if let Some(path) = &args.out {
        SavedPlan::new(&plan, session.env_name(), session.inputs()).write(path)?;
    }
    let doc = session.doc(&plan);
    match cli.output {
        Output::Json => print_json(&doc)?,
        Output::Human => {
            print!("{}", human(&doc));
            if let Some(p) = &args.out {
                println!(
                    "Saved the plan to {}; apply exactly it with `provisioner up {} --plan {}`.",
                    p.display(),
                    args.opts.env,
                    p.display()
                );
            }
        }
    }
    Ok(if doc.summary.has_changes() { 2 } else { 0 })
}
