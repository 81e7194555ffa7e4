//! `provisioner destroy <env>`: delete everything the environment owns, in
//! reverse dependency order, including owned leftovers state forgot.

use super::{ApplyOpts, ApproveOpts, Cli};
use crate::Error;
use crate::plan::session::Operation;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: ApplyOpts,
    #[command(flatten)]
    pub approve: ApproveOpts,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    super::apply::run(cli, Operation::Destroy, &args.opts, &args.approve, None).await
}
