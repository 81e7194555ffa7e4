//! `provisioner certs rotate ENV [--ca]`: issue every certificate of the
//! cluster again now, whatever its expiry — the leaves by default, the CAs
//! too with `--ca` — as an `up` of the cluster layer: the plan shows each
//! node step that renews, approval is asked, and components restart only
//! where a certificate changed.

use super::{ApplyOpts, ApproveOpts, Cli, open_session_rotating};
use crate::Error;
use crate::plan::session::Operation;
use crate::provider::Rotation;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Issue the cluster's certificates again now (the admin kubeconfig too).
    Rotate {
        #[command(flatten)]
        opts: ApplyOpts,
        #[command(flatten)]
        approve: ApproveOpts,
        /// New CAs as well (every component restarts; service-account tokens stay valid).
        #[arg(long)]
        ca: bool,
    },
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<i32, Error> {
    let Cmd::Rotate { opts, approve, ca } = cmd;
    if !opts.target.is_empty() {
        return Err(Error::Usage(
            "--target: a rotation renews the whole cluster layer".into(),
        ));
    }
    let opts = ApplyOpts {
        env: opts.env.clone(),
        target: crate::cluster::KINDS
            .iter()
            .map(|k| (*k).to_owned())
            .collect(),
        lock_timeout: opts.lock_timeout,
        // Rotation is decided on the nodes: they are read first.
        refresh: true,
        set: opts.set.clone(),
    };
    let session = open_session_rotating(cli, &opts.env, Some(Rotation { ca: *ca })).await?;
    super::apply::run_in(cli, session, Operation::Up, &opts, approve, None).await
}
