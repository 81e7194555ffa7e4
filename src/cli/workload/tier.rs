//! `provisioner workload tier --item-url … --storage-class …`

use super::S3Args;
use crate::Error;
use crate::cli::{Cli, Output, print_json};
use crate::workload::stac::Client;
use crate::workload::tier::{self, Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registered STAC item ({stac}/collections/{c}/items/{id}).
    #[arg(long)]
    pub item_url: String,
    /// Target class, e.g. STANDARD, STANDARD_IA, EXPRESS_ONEZONE.
    #[arg(long)]
    pub storage_class: String,
    /// Only objects matching one of these (fnmatch, relative to the Zarr root; repeatable).
    #[arg(long = "include")]
    pub include: Vec<String>,
    /// Skip objects matching one of these (applied after --include; repeatable).
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
    /// Count what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, env = "STAC_API_TOKEN", hide_env_values = true)]
    pub stac_token: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
}

pub async fn run(cli: &Cli, a: &Args) -> Result<i32, Error> {
    let stac = Client::new(&a.item_url, a.stac_token.clone())?;
    let req = Request {
        item_url: &a.item_url,
        storage_class: &a.storage_class,
        include: &a.include,
        exclude: &a.exclude,
        dry_run: a.dry_run,
    };
    let rep = tier::run(&stac, &a.s3.opts(None), &req).await?;
    match cli.output {
        Output::Json => print_json(&rep)?,
        Output::Human => {
            let verb = if rep.dry_run {
                "would change"
            } else {
                "changed"
            };
            println!(
                "{} objects listed, {} selected, {verb} {} to {}, {} already there",
                rep.listed, rep.selected, rep.changed, rep.storage_class, rep.already
            );
            for f in &rep.failed {
                eprintln!("failed: {f}");
            }
        }
    }
    Ok(if rep.failed.is_empty() { 0 } else { 1 })
}
