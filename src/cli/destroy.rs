//! `provisioner destroy <env>`: delete everything the environment owns, in
//! reverse dependency order, including tagged leftovers state forgot.

use super::{ApplyOpts, Cli, changes, discover_owned, load_env, open_store};
use crate::Error;
use crate::provider::Registry;

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
        let mut state = store.load().await?;
        // Sweep: owned resources the state lost (e.g. a run killed before saving) are deleted too.
        for (addr, rec) in discover_owned(&registry, &loaded.env, &args.opts.target).await? {
            if let std::collections::btree_map::Entry::Vacant(slot) = state.resources.entry(addr) {
                tracing::info!(address = %slot.key(), id = rec.id.as_deref().unwrap_or("-"), "found an owned resource missing from state; it is deleted too");
                slot.insert(rec);
            }
        }
        let changes = changes(&[], &state, &Default::default(), &args.opts.target, true);
        super::up::apply(cli, &loaded, &mut store, lock.as_ref(), &registry, state, Vec::new(), changes, "destroy").await
    }
    .await;
    lock.release().await?;
    result
}
