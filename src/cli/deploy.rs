//! `provisioner deploy <env>`: converge the platform layer (charts), the
//! secrets it uses and the container images it runs (pushed first) onto the
//! environment's cluster; the cloud is not touched.

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
    super::apply::run(cli, Operation::Deploy, &args.opts, &args.approve, None).await
}
