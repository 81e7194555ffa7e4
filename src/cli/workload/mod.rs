//! `provisioner workload …`: the conversion workload's steps, each usable on
//! its own (the Argo workflow runs them as separate steps) and from a shell.

mod convert;
mod floor;
mod register;
mod submit;
mod synth;
mod tier;
mod webhook;

use super::Cli;
use crate::Error;
use crate::workload::io::{Location, S3Opts};
use crate::workload::stac::Client;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Convert an EOPF Sentinel-2 product to S2-optimised GeoZarr (Zarr v3).
    Convert(convert::Args),
    /// Register a converted product in a STAC API (create, or replace on rerun).
    Register(register::Args),
    /// Change the storage class of a registered item's objects.
    Tier(tier::Args),
    /// Write a synthetic EOPF Sentinel-2 product (tests and benchmarks).
    Synth(synth::Args),
    /// Measure the codec floor of a conversion (benchmarks).
    Floor(floor::Args),
    /// Submit a conversion to the environment's cluster (a Workflow from its WorkflowTemplate).
    Submit(submit::Args),
    /// Serve the pipeline's webhook: token-checked POSTs become Workflows.
    Webhook(webhook::Args),
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<i32, Error> {
    match cmd {
        Cmd::Convert(a) => convert::run(cli, a).await,
        Cmd::Synth(a) => synth::run(cli, a).await,
        Cmd::Register(a) => register::run(cli, a).await,
        Cmd::Tier(a) => tier::run(cli, a).await,
        Cmd::Floor(a) => floor::run(cli, a).await,
        Cmd::Submit(a) => submit::run(cli, a).await,
        Cmd::Webhook(a) => webhook::run(cli, a).await,
    }
}

/// S3 settings shared by the workload commands; credentials come from the
/// usual AWS variables or profile, never from arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// S3 endpoint for non-AWS servers (path-style addressing).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
    /// S3 requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub s3_concurrency: usize,
}

impl S3Args {
    pub fn opts(&self, storage_class: Option<String>) -> S3Opts {
        S3Opts {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            storage_class,
            concurrency: self.s3_concurrency,
        }
    }
}

/// Which product, where its conversion goes: shared by `convert` and `register`,
/// which must agree on the store path.
#[derive(Debug, Clone, clap::Args)]
pub struct ProductArgs {
    /// STAC item URL, Zarr URL (https://, s3://) or local path of the EOPF product.
    #[arg(long)]
    pub source: String,
    /// Output root: s3://bucket/prefix or a folder. The store goes to
    /// <dest>/<collection>/<item id>.zarr (the layout TiTiler and STAC links rely on).
    /// (`--output` is the global human|json switch, hence `--dest`.)
    #[arg(long)]
    pub dest: String,
    /// Target STAC collection id (also the output sub-folder).
    #[arg(long)]
    pub collection: String,
}

impl ProductArgs {
    /// `<dest>/<collection>/<item id>.zarr`.
    pub fn store(&self, item_id: &str) -> Result<Location, Error> {
        Ok(Location::parse(&self.dest)?.join(&format!("{}/{item_id}.zarr", self.collection)))
    }
}

/// A STAC API with the transactions extension, and its credentials.
#[derive(Debug, Clone, clap::Args)]
pub struct StacArgs {
    /// STAC API base URL.
    #[arg(long, env = "STAC_API_URL")]
    pub stac_api_url: String,
    /// Bearer token for the STAC API (never printed).
    #[arg(long, env = "STAC_API_TOKEN", hide_env_values = true)]
    pub stac_token: Option<String>,
}

impl StacArgs {
    pub fn client(&self) -> Result<Client, Error> {
        Ok(Client::new(&self.stac_api_url, self.stac_token.clone())?)
    }
}

/// Run blocking workload code (rayon, blocking S3 bridges) off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::workload::WorkloadError> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Usage(format!("worker thread failed: {e}")))?
        .map_err(Error::from)
}
