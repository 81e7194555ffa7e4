//! What `provisioner status` shows of a cluster, read over SSH from its
//! control-plane and etcd nodes (so it works for clusters reachable only
//! through a bastion): nodes with readiness and versions, etcd members and
//! their health, each API server's `/readyz` and version.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{ClusterProvider, target};
use crate::core::Address;
use crate::state::Record;

const T: Duration = Duration::from_secs(20);

pub async fn status(p: &ClusterProvider, records: &BTreeMap<Address, Record>) -> Option<Value> {
    let of = |kind: &'static str| records.iter().filter(move |(a, _)| a.kind() == kind);
    of("host").next()?;
    let mut control = Vec::new();
    for (addr, rec) in of("control_plane") {
        let Ok(t) = target(&rec.attrs, None) else {
            continue;
        };
        let out = p
            .ssh
            .try_run(&t, "curl -s --max-time 5 --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/readyz; echo; /usr/local/bin/kube-apiserver --version", T)
            .await;
        let (readyz, version) = match &out {
            Ok(o) => {
                let mut l = o.stdout.lines();
                (
                    l.next().unwrap_or("").trim().to_owned(),
                    l.next().unwrap_or("").trim().to_owned(),
                )
            }
            Err(e) => (format!("unreachable: {e}"), String::new()),
        };
        control.push(json!({ "node": addr.name(), "readyz": readyz, "version": version }));
    }
    let mut etcd = json!({ "members": [], "error": null });
    if let Some((_, rec)) = of("etcd").next()
        && let Ok(t) = target(&rec.attrs, None)
    {
        let cmd = format!(
            "{} member list -w json && {} endpoint health --cluster -w json",
            super::etcd::etcdctl("https://127.0.0.1:2379"),
            super::etcd::etcdctl("https://127.0.0.1:2379")
        );
        match p.ssh.try_run(&t, &cmd, T).await {
            Ok(o) => {
                let mut docs = o
                    .stdout
                    .lines()
                    .filter(|l| l.trim_start().starts_with(['{', '[']));
                let members: Value = docs
                    .next()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or(Value::Null);
                let health: Value = docs
                    .next()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or(Value::Null);
                let healthy = |url: &str| {
                    health
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|h| h["endpoint"] == url && h["health"] == true)
                };
                let list: Vec<Value> = members["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| {
                            let client = m["clientURLs"][0].as_str().unwrap_or_default();
                            json!({ "name": m["name"], "peer": m["peerURLs"][0], "client": client, "healthy": healthy(client) })
                        })
                        .collect();
                etcd["members"] = list.into();
                if o.status != 0 {
                    etcd["error"] = o.stderr.lines().last().unwrap_or_default().into();
                }
            }
            Err(e) => etcd["error"] = e.to_string().into(),
        }
    }
    let mut nodes = Value::Array(Vec::new());
    if let Some((_, rec)) = of("control_plane").next()
        && let Ok(t) = target(&rec.attrs, None)
        && let Ok(o) = p
            .ssh
            .try_run(
                &t,
                "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json",
                T,
            )
            .await
    {
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or(Value::Null);
        nodes = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                let ready = n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Ready")
                    .map_or("Unknown", |c| c["status"].as_str().unwrap_or("Unknown"));
                json!({ "name": n["metadata"]["name"], "ready": ready == "True",
                                "kubelet": n["status"]["nodeInfo"]["kubeletVersion"],
                                "runtime": n["status"]["nodeInfo"]["containerRuntimeVersion"] })
            })
            .collect();
    }
    Some(json!({ "nodes": nodes, "etcd": etcd, "control_plane": control }))
}
