//! `provisioner up <env>`: plan, approve, apply with state saved after every
//! step; or apply a saved plan exactly (`--plan FILE`).

use std::path::PathBuf;

use super::{ApplyOpts, ApproveOpts, Cli};
use crate::Error;
use crate::plan::session::Operation;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: ApplyOpts,
    #[command(flatten)]
    pub approve: ApproveOpts,
    /// Apply this saved plan (`plan ENV --out FILE`) and nothing else; refused when stale.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    super::apply::run(
        cli,
        Operation::Up,
        &args.opts,
        &args.approve,
        args.plan.as_deref(),
    )
    .await
}
