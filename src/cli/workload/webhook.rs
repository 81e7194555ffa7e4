//! `provisioner workload webhook`: serve the pipeline's webhook (see
//! workload::webhook) with the pod's service account, or a kubeconfig.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::Error;
use crate::cli::Cli;
use crate::core::Secret;
use crate::k8s::client::Cluster;
use crate::workload::webhook::{Hook, serve};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:12000")]
    pub listen: SocketAddr,
    /// The path callers POST to.
    #[arg(long, default_value = "/geozarr")]
    pub endpoint: String,
    /// The bearer token callers must send (never printed).
    #[arg(long, env = "WEBHOOK_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Namespace of the WorkflowTemplate and of the Workflows it creates.
    #[arg(long)]
    pub namespace: String,
    /// The WorkflowTemplate to run.
    #[arg(long, default_value = "geozarr-pipeline")]
    pub template: String,
    /// Accepted collections (repeatable; none: any).
    #[arg(long = "collection")]
    pub collections: Vec<String>,
    /// Accepted source URLs (a regular expression).
    #[arg(long, default_value = "^(https?|s3)://[^ ]+$")]
    pub source_pattern: String,
    /// Largest accepted body, in bytes.
    #[arg(long, default_value_t = 65536)]
    pub max_body: usize,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    if args.token.len() < 16 {
        return Err(Error::Usage("the webhook token is shorter than 16 characters; use a generated one (secrets: {generate: …})".into()));
    }
    let source_pattern = regex::Regex::new(&args.source_pattern)
        .map_err(|e| Error::Usage(format!("--source-pattern: {e}")))?;
    let hook = Hook {
        endpoint: args.endpoint.clone(),
        token: Secret::new(args.token.clone()),
        namespace: args.namespace.clone(),
        template: args.template.clone(),
        collections: args.collections.clone(),
        source_pattern,
        max_body: args.max_body,
    };
    let cluster = Cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref())
        .await
        .map_err(|e| Error::Provider {
            context: "webhook".into(),
            source: e.into(),
        })?;
    serve(Arc::new(hook), args.listen, Arc::new(cluster)).await?;
    Ok(0)
}
