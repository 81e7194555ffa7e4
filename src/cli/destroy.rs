//! `provisioner destroy <env>`: delete everything the environment owns, in
//! reverse dependency order, including tagged leftovers state forgot.

use super::{ApplyOpts, Cli, changes, load_env, open_store};
use crate::Error;
use crate::provider::Registry;
use crate::state::model::now;
use crate::state::{Record, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: ApplyOpts,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let loaded = load_env(cli, &args.opts.env)?;
    let mut store = open_store(cli, &loaded).await?;
    let registry = Registry::for_env(&loaded.env, cli.cloud.as_deref());
    let lock = store.lock("destroy", args.opts.lock_timeout).await?;
    let result = async {
        // Destroying needs no secret values: a lost key must not strand resources.
        let mut state = store.load(false).await?;
        // Sweep: owned resources the state lost (e.g. a run killed before saving) are deleted too.
        let targets = &args.opts.target;
        // Swept records get their dependencies from the environment file, so they
        // are deleted in the right order too.
        let desired = crate::plan::desired::desired(&loaded.env);
        for (kinds, provider) in registry.providers() {
            let targeted = |k: &str| super::kind_targeted(targets, k);
            if !kinds.iter().any(|k| targeted(k)) {
                continue;
            }
            let found = provider.discover().await.map_err(|e| Error::Provider(format!("discovering {} resources: {e}", kinds.join("/"))))?;
            for (addr, live) in found {
                if targeted(addr.kind()) && !state.resources.contains_key(&addr) {
                    let kind = addr.kind().to_owned();
                    let deps = desired.iter().find(|d| d.address == addr).map(|d| d.deps.clone()).unwrap_or_default();
                    tracing::info!(address = %addr, id = %live.id, "found an owned resource missing from state; it is deleted too");
                    state.resources.insert(
                        addr,
                        Record {
                            kind,
                            id: Some(live.id),
                            status: Status::Ready,
                            attrs: live.attrs,
                            outputs: live.outputs,
                            deps,
                            sealed: None,
                            secrets: Default::default(),
                            updated_at: now(),
                        },
                    );
                }
            }
        }
        let changes = changes(&[], &state, &Default::default(), &args.opts.target, true);
        super::up::apply(cli, &loaded, &mut store, lock.as_ref(), &registry, state, Vec::new(), changes, "destroy").await
    }
    .await;
    lock.release().await?;
    result
}
