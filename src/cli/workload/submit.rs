//! `provisioner workload submit ENV --source URL [--collection C] [--wait]`:
//! a Workflow from the environment's `geozarr-pipeline` WorkflowTemplate, as
//! the webhook would submit it; prints the Workflow's name.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Error;
use crate::cli::{Cli, Output, load_env, print_json};
use crate::k8s::client::Cluster;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment name or path to a .yaml file.
    pub env: String,
    /// STAC item URL (or Zarr URL) of the product to convert.
    #[arg(long)]
    pub source: String,
    /// Target collection (default: the environment's first `workload.collections`).
    #[arg(long)]
    pub collection: Option<String>,
    /// The WorkflowTemplate to run.
    #[arg(long, default_value = "geozarr-pipeline")]
    pub template: String,
    /// Follow the Workflow until it succeeds or fails (exit 1 when it fails).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "2h", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let loaded = load_env(cli, &args.env)?;
    let env = &loaded.env;
    let workload = env.workload.as_ref().ok_or_else(|| {
        Error::Usage(format!(
            "`{}` has no `workload:` section, so there is no pipeline to submit to",
            env.name
        ))
    })?;
    let collection = args
        .collection
        .clone()
        .or_else(|| workload.collections.first().cloned())
        .ok_or_else(|| {
            Error::Usage(
                "--collection is needed: the environment lists no workload.collections".into(),
            )
        })?;
    let provider = |e: crate::k8s::K8sError| Error::Provider {
        context: "workload submit".into(),
        source: e.into(),
    };
    let kubeconfig = cli.kubeconfig.clone().or_else(|| {
        env.platform
            .kubeconfig
            .as_deref()
            .map(crate::env::secret::expand_home)
    });
    let context = cli.context.clone().or_else(|| env.platform.context.clone());
    let cluster = Cluster::connect(kubeconfig.as_deref(), context.as_deref())
        .await
        .map_err(provider)?;
    let body = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": format!("{}-", args.template),
            "namespace": workload.namespace,
            "labels": { "provisioner.io/environment": env.name, "workflows.argoproj.io/workflow-template": args.template },
        },
        "spec": {
            "workflowTemplateRef": { "name": args.template },
            "arguments": { "parameters": [ { "name": "source_url", "value": args.source }, { "name": "collection", "value": collection } ] },
        },
    });
    let created = cluster.create(&body).await.map_err(provider)?;
    let name = created
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    tracing::info!(workflow = %name, namespace = %workload.namespace, "submitted");
    let mut phase = None;
    if args.wait {
        let id = crate::charts::ObjectId {
            group: "argoproj.io".into(),
            kind: "Workflow".into(),
            namespace: Some(workload.namespace.clone()),
            name: name.clone(),
        };
        let start = tokio::time::Instant::now();
        loop {
            let wf = cluster
                .get("argoproj.io/v1alpha1", &id)
                .await
                .map_err(provider)?;
            let p = wf
                .as_ref()
                .and_then(|w| w.pointer("/status/phase"))
                .and_then(Value::as_str)
                .unwrap_or("Pending")
                .to_owned();
            if matches!(p.as_str(), "Succeeded" | "Failed" | "Error") {
                phase = Some(p);
                break;
            }
            if start.elapsed() > args.timeout {
                return Err(Error::Usage(format!(
                    "workflow {name} is still {p} after {:?}; it keeps running",
                    args.timeout
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    match cli.output {
        Output::Json => print_json(
            &json!({ "workflow": name, "namespace": workload.namespace, "phase": phase }),
        )?,
        Output::Human => println!(
            "{name}{}",
            phase
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default()
        ),
    }
    Ok(if matches!(phase.as_deref(), Some("Failed" | "Error")) {
        1
    } else {
        0
    })
}
