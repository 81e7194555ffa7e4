//! `provisioner etcd restore ENV --snapshot S`: every etcd member's data
//! replaced by one snapshot, the way etcd's disaster-recovery guide says —
//! on the environment's current members (fresh nodes after `up`, or the old
//! ones). Every node answers before anything stops; the snapshot reaches
//! every member (sha256 checked) before anything stops; the data it replaces
//! is moved aside, never deleted; components restart in dependency order
//! behind the same health gates as the bootstrap, and Node objects of
//! machines the environment no longer has are removed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::try_join_all;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::backup::{self, DIR};
use super::snapshot::{members, targets};
use super::{ClusterProvider, remote};
use crate::core::Address;
use crate::provider::ProviderError;
use crate::ssh::Target;
use crate::ssh::quote::q;
use crate::state::Record;

const CONTROL: &str = "kube-apiserver kube-controller-manager kube-scheduler";
const ADMIN: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// A local copy of the snapshot, removed when dropped.
struct Local {
    path: PathBuf,
    owned: bool,
    sha256: String,
    from: String,
}

impl Drop for Local {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_err(what: &str, e: std::io::Error) -> ProviderError {
    ProviderError::fatal(format!("{what}: {e}")).caused_by(e)
}

/// The snapshot as a file here: the file itself when `snapshot` names one,
/// else the object of that name (or key) in the environment's bucket.
async fn fetch(p: &ClusterProvider, snapshot: &str) -> Result<Local, ProviderError> {
    let path = Path::new(snapshot);
    if path.is_file() {
        let mut f = std::fs::File::open(path).map_err(|e| io_err(snapshot, e))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| io_err(snapshot, e))?;
        return Ok(Local {
            path: path.to_owned(),
            owned: false,
            sha256: crate::core::digest::hex(h.finalize()),
            from: path.display().to_string(),
        });
    }
    let Some(loc) = &p.snapshots else {
        return Err(ProviderError::fatal(format!(
            "`{snapshot}` is not a file here, and the environment names no snapshot bucket (cluster.etcd_snapshots.s3); copy the snapshot here (`scp node:{DIR}/NAME .`) and pass its path"
        )));
    };
    let prefix = backup::key_prefix(loc);
    let key = if snapshot.starts_with(&prefix) {
        snapshot.to_owned()
    } else {
        format!("{prefix}{snapshot}")
    };
    let from = format!("{}/{key}", backup::bucket_url(loc));
    let client = crate::s3::client(loc, "cluster.etcd_snapshots.s3")
        .await
        .map_err(|e| ProviderError::fatal(e.to_string()))?;
    let obj = client
        .get_object()
        .bucket(&loc.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| {
            ProviderError::fatal(format!(
                "{from}: {}; `provisioner etcd snapshots ENV` lists the snapshots",
                crate::s3::describe(&e)
            ))
        })?;
    let mut local = Local {
        path: std::env::temp_dir().join(format!("provisioner-restore-{}.db", std::process::id())),
        owned: true,
        sha256: String::new(),
        from,
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&local.path)
        .map_err(|e| io_err(&local.path.display().to_string(), e))?;
    let mut h = Sha256::new();
    let mut body = obj.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ProviderError::transient(format!("{}: download broke off: {e}", local.from))
        })?;
        h.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| io_err(&local.path.display().to_string(), e))?;
    }
    out.sync_all()
        .map_err(|e| io_err(&local.path.display().to_string(), e))?;
    local.sha256 = crate::core::digest::hex(h.finalize());
    Ok(local)
}

/// Run `cmd` on every node at once.
async fn on_all(p: &ClusterProvider, nodes: &[Target], cmd: &str) -> Result<(), ProviderError> {
    try_join_all(nodes.iter().map(|t| async move {
        p.ssh
            .run(t, cmd)
            .await
            .map(|_| ())
            .map_err(ProviderError::from)
    }))
    .await
    .map(|_| ())
}

pub async fn restore(
    p: &ClusterProvider,
    records: &BTreeMap<Address, Record>,
    snapshot: &str,
) -> Result<Value, ProviderError> {
    let etcd = members(records)?;
    let control = targets(records, "control_plane")?;
    let kubelets = targets(records, "kubelet")?;

    // Nothing stops until every node answers and holds the snapshot.
    let mut unreachable = Vec::new();
    for t in etcd.iter().chain(&control).chain(&kubelets) {
        if let Err(e) = p.ssh.host_key(t).await {
            unreachable.push(e.to_string());
        }
    }
    if !unreachable.is_empty() {
        return Err(ProviderError::transient(format!(
            "nothing was changed: {} node(s) cannot be reached:\n  {}",
            unreachable.len(),
            unreachable.join("\n  ")
        )));
    }
    let local = fetch(p, snapshot).await?;
    let staged = format!("{DIR}/restore-{}.db", &local.sha256[..12]);
    try_join_all(etcd.iter().map(|t| {
        let (path, sha, staged) = (local.path.clone(), local.sha256.clone(), staged.clone());
        async move {
            p.ssh.run(t, &format!("mkdir -p -m 0700 {DIR}")).await?;
            p.ssh.put_file(t, &staged, 0o600, path, &sha).await?;
            Ok::<_, ProviderError>(())
        }
    }))
    .await?;
    tracing::info!(from = %local.from, sha256 = %local.sha256, "snapshot staged on every member");

    // Stop what writes to etcd, then etcd.
    on_all(p, &control, &format!("systemctl stop {CONTROL}")).await?;
    on_all(p, &etcd, "systemctl stop etcd").await?;

    // A new cluster from the snapshot: same members, a new cluster token (so
    // a member that missed the restore cannot rejoin the old cluster's peers).
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let initial: Vec<String> = etcd
        .iter()
        .map(|t| format!("{}=https://{}:2380", t.node, t.address))
        .collect();
    try_join_all(etcd.iter().map(|t| {
        let script = format!(
            "set -e; rm -rf /var/lib/etcd/restore.tmp; \
             ETCDCTL_API=3 etcdctl snapshot restore {staged} --name {name} --initial-cluster {cluster} \
               --initial-cluster-token {token} --initial-advertise-peer-urls {peer} --data-dir /var/lib/etcd/restore.tmp >/dev/null; \
             if [ -d /var/lib/etcd/member ]; then mv /var/lib/etcd/member /var/lib/etcd/member.before-restore-{stamp}; fi; \
             mv /var/lib/etcd/restore.tmp/member /var/lib/etcd/member; rmdir /var/lib/etcd/restore.tmp; \
             chmod 0700 /var/lib/etcd/member; chown -R etcd:etcd /var/lib/etcd/member; rm -f {staged}",
            staged = q(&staged),
            name = q(&t.node),
            cluster = q(&initial.join(",")),
            token = q(&format!("provisioner-restore-{stamp}")),
            peer = q(&format!("https://{}:2380", t.address)),
        );
        async move { p.ssh.run(t, &script).await.map(|_| ()).map_err(ProviderError::from) }
    }))
    .await?;

    // The members wait for each other: start them together, then gate each.
    on_all(p, &etcd, "systemctl start --no-block etcd").await?;
    for t in &etcd {
        super::etcd::healthy(p, t).await?;
    }
    on_all(p, &control, &format!("systemctl start {CONTROL}")).await?;
    for t in &control {
        super::control_plane::ready(p, t).await?;
    }
    // Kubelets and proxies watched the cluster that was replaced: they start
    // over (a kubelet registers its Node again if the snapshot lacks it).
    on_all(p, &kubelets, "systemctl restart kubelet kube-proxy").await?;

    let mut stale = Vec::new();
    if let Some(cp) = control.first() {
        let ours: Vec<&str> = kubelets.iter().map(|t| t.node.as_str()).collect();
        let out = p
            .ssh
            .run(
                cp,
                &format!("{ADMIN} get nodes -o jsonpath='{{.items[*].metadata.name}}'"),
            )
            .await?;
        stale = out
            .stdout
            .split_whitespace()
            .filter(|n| !ours.contains(n))
            .map(str::to_owned)
            .collect();
        if !stale.is_empty() {
            let names: Vec<String> = stale.iter().map(|n| q(n)).collect();
            p.ssh
                .run(cp, &format!("{ADMIN} delete node {}", names.join(" ")))
                .await?;
        }
        remote::gate(
            &p.ssh,
            cp,
            "every node Ready",
            &format!(
                "{ADMIN} wait --for=condition=Ready --timeout=10s node {}",
                ours.iter().map(|n| q(n)).collect::<Vec<_>>().join(" ")
            ),
            p.timeout.max(Duration::from_secs(120)),
            "see `journalctl -u kubelet` on the node that is not Ready",
        )
        .await?;
    }
    Ok(json!({
        "snapshot": local.from,
        "sha256": local.sha256,
        "members": etcd.iter().map(|t| &t.node).collect::<Vec<_>>(),
        "previous_data": format!("/var/lib/etcd/member.before-restore-{stamp}"),
        "removed_nodes": stale,
    }))
}
