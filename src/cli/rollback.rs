//! `provisioner rollback ENV RELEASE [--to N]`: re-apply an earlier revision
//! of a release (default: the last good one before the current) as a new
//! revision, after approval. The next `plan` shows the way back to the
//! environment file, as with Helm.

use std::time::Duration;

use super::{ApproveOpts, Cli, Output, Terminal, open_session, parse_duration, print_json};
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment name or path to a .yaml file.
    pub env: String,
    /// The release to roll back.
    pub release: String,
    /// The revision to go back to (`provisioner releases ENV` lists them).
    #[arg(long)]
    pub to: Option<u64>,
    #[command(flatten)]
    pub approve: ApproveOpts,
    /// Wait this long for another run's lock.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let mut session = open_session(cli, &args.env).await?;
    let applied = session
        .rollback(
            &args.release,
            args.to,
            &args.approve.approval(false),
            args.lock_timeout,
            &Terminal::new(cli),
        )
        .await?;
    let revision = session
        .store
        .load()
        .await?
        .resources
        .get(&crate::core::Address::new("release", &args.release))
        .and_then(|r| r.outputs.get("revision").cloned());
    match cli.output {
        Output::Json => print_json(
            &serde_json::json!({ "release": args.release, "revision": revision, "summary": applied.summary }),
        )?,
        Output::Human => println!(
            "rolled back `{}`: now revision {}",
            args.release,
            revision.map_or("?".into(), |r| r.to_string())
        ),
    }
    Ok(0)
}
