//! `provisioner etcd snapshot|snapshots`: a snapshot taken now by the same
//! script the timer runs (on the first member that answers), and the list of
//! snapshots in the environment's bucket and on the members.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::backup::{self, DIR};
use super::{ClusterProvider, target};
use crate::core::Address;
use crate::provider::ProviderError;
use crate::ssh::Target;
use crate::state::Record;

/// The nodes of the records of `kind`, to reach.
pub(crate) fn targets(
    records: &BTreeMap<Address, Record>,
    kind: &str,
) -> Result<Vec<Target>, ProviderError> {
    records
        .iter()
        .filter(|(a, _)| a.kind() == kind)
        .map(|(_, r)| target(&r.attrs, None))
        .collect()
}

/// The etcd members recorded in state, as nodes to reach.
pub(crate) fn members(records: &BTreeMap<Address, Record>) -> Result<Vec<Target>, ProviderError> {
    let list = targets(records, "etcd")?;
    if list.is_empty() {
        return Err(ProviderError::fatal(
            "this environment's state has no etcd member: run `provisioner up` first",
        ));
    }
    Ok(list)
}

/// Take a snapshot now; the first member that takes it wins, the others'
/// failures are said when none does.
pub async fn take(
    p: &ClusterProvider,
    records: &BTreeMap<Address, Record>,
) -> Result<Value, ProviderError> {
    let mut tried = Vec::new();
    for t in members(records)? {
        match backup::take(p, &t).await {
            Ok(taken) => return Ok(serde_json::to_value(taken).unwrap_or_default()),
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(ProviderError::transient(format!(
        "no member took a snapshot (a member needs its `etcd_backup` step: run `provisioner up` after upgrading):\n  {}",
        tried.join("\n  ")
    )))
}

/// The snapshots in the bucket (when there is one) and on each member.
pub async fn list(
    p: &ClusterProvider,
    records: &BTreeMap<Address, Record>,
) -> Result<Value, ProviderError> {
    let mut nodes = serde_json::Map::new();
    for t in members(records)? {
        let out = p
            .ssh
            .try_run(
                &t,
                &format!("cd {DIR} 2>/dev/null && stat -c '%n %s %Y' etcd-*.db 2>/dev/null; true"),
                Duration::from_secs(20),
            )
            .await;
        let list: Value = match out {
            Ok(o) => o
                .stdout
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (name, size, at) = (f.next()?, f.next()?, f.next()?);
                    let at = chrono::DateTime::from_timestamp(at.parse().ok()?, 0)?;
                    Some(json!({ "name": name, "size": size.parse::<u64>().ok(), "modified": at.to_rfc3339() }))
                })
                .collect::<Vec<_>>()
                .into(),
            Err(e) => json!({ "error": e.to_string() }),
        };
        nodes.insert(t.node.clone(), list);
    }
    let bucket = match &p.snapshots {
        None => Value::Null,
        Some(loc) => {
            let prefix = backup::key_prefix(loc);
            let client = crate::s3::client(loc, "cluster.etcd_snapshots.s3")
                .await
                .map_err(|e| ProviderError::fatal(e.to_string()))?;
            let mut items = Vec::new();
            let mut pages = client
                .list_objects_v2()
                .bucket(&loc.bucket)
                .prefix(format!("{prefix}etcd-"))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    ProviderError::transient(format!(
                        "listing s3://{}/{prefix}: {}",
                        loc.bucket,
                        crate::s3::describe(&e)
                    ))
                })?;
                for o in page.contents() {
                    let key = o.key().unwrap_or_default();
                    items.push(json!({
                        "name": key.strip_prefix(&prefix).unwrap_or(key),
                        "size": o.size(),
                        "modified": o.last_modified().map(|t| t.to_string()),
                    }));
                }
            }
            json!({ "url": format!("{}/{prefix}", backup::bucket_url(loc)), "snapshots": items })
        }
    };
    Ok(json!({ "bucket": bucket, "nodes": nodes }))
}
