//! `provisioner up <env>`: plan, then apply with state saved after every step.

use super::{ApplyOpts, Cli};
use crate::Error;
use crate::plan::session::Operation;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: ApplyOpts,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    super::apply::run(cli, Operation::Up, &args.opts).await
}
