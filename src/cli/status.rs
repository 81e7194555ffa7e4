//! `provisioner status ENV`: the cluster's nodes, etcd members and their
//! health, the API servers' readiness and versions, and every certificate in
//! state with its expiry (`--output json` for machines). Read calls only.

use super::{Cli, Output, open_session, print_json};
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment name or path to a .yaml file.
    pub env: String,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let session = open_session(cli, &args.env).await?;
    let doc = session.status().await?;
    if cli.output == Output::Json {
        return print_json(&doc).map(|()| 0);
    }
    let list = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let nodes = list("nodes");
    if !nodes.is_empty() {
        println!("Nodes");
        for n in &nodes {
            let ready = if n["ready"] == true {
                "Ready"
            } else {
                "NotReady"
            };
            println!(
                "  {:<24} {:<9} kubelet {:<10} {}",
                s(&n["name"]),
                ready,
                s(&n["kubelet"]),
                s(&n["runtime"])
            );
        }
    }
    if let Some(etcd) = doc.get("etcd") {
        println!("etcd");
        for m in etcd["members"].as_array().into_iter().flatten() {
            let h = if m["healthy"] == true {
                "healthy"
            } else {
                "UNHEALTHY"
            };
            println!("  {:<24} {:<9} {}", s(&m["name"]), h, s(&m["peer"]));
        }
        if !etcd["error"].is_null() {
            println!("  error: {}", s(&etcd["error"]));
        }
    }
    let cp = list("control_plane");
    if !cp.is_empty() {
        println!("Control plane");
        for c in &cp {
            println!(
                "  {:<24} readyz {:<6} {}",
                s(&c["node"]),
                s(&c["readyz"]),
                s(&c["version"])
            );
        }
    }
    let certs = list("certificates");
    if !certs.is_empty() {
        println!("Certificates");
        for c in &certs {
            println!(
                "  {:<36} {:<28} expires {}  ({} days)",
                s(&c["resource"]),
                s(&c["certificate"]),
                s(&c["not_after"]),
                s(&c["days_left"])
            );
        }
    }
    Ok(0)
}
