//! `provisioner image build|push ENV`: the images layer on its own, as an
//! `up` limited to it — the plan shows the image (and its digest), approval
//! is asked, state records what was built or pushed. `build` bakes the node
//! image on a builder server in the cloud; `push` assembles the container
//! images and pushes the blobs the registry does not have.

use super::{ApplyOpts, ApproveOpts, Cli, open_session_with};
use crate::Error;
use crate::plan::session::Operation;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Build the node image (`image.build`) the way Packer does: builder server, provision, snapshot.
    Build {
        #[command(flatten)]
        opts: ApplyOpts,
        #[command(flatten)]
        approve: ApproveOpts,
    },
    /// Assemble the container images (`workload.image.build`) and push them to `registry:`.
    Push {
        #[command(flatten)]
        opts: ApplyOpts,
        #[command(flatten)]
        approve: ApproveOpts,
    },
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<i32, Error> {
    let (opts, approve, kind) = match cmd {
        Cmd::Build { opts, approve } => (opts, approve, "image"),
        Cmd::Push { opts, approve } => (opts, approve, "container_image"),
    };
    if !opts.target.is_empty() {
        return Err(Error::Usage(format!("--target: `image` commands act on every `{kind}`")));
    }
    let opts = ApplyOpts {
        env: opts.env.clone(),
        target: vec![kind.to_owned()],
        lock_timeout: opts.lock_timeout,
        refresh: opts.refresh,
        set: opts.set.clone(),
    };
    let session = open_session_with(cli, &opts).await?;
    super::apply::run_in(cli, session, Operation::Up, &opts, approve, None).await
}
