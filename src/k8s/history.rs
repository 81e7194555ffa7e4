//! Release history, kept in the cluster next to the release (as Helm keeps
//! it): one Secret per revision, `provisioner.v1.<release>.v<N>`, holding the
//! revision's status, inventory, attributes and the manifest as applied
//! (compressed). A revision is written as `deploying` before its first object
//! is applied — the intent record — so a killed deploy is rolled forward by
//! the next one, and the objects it may have created are pruned if no longer
//! wanted. There is no "operation in progress" lock: the state lock is the
//! only lock.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::K8sError;
use super::client::Cluster;
use crate::charts::object::{LABEL_ENVIRONMENT, LABEL_MANAGED_BY, MANAGER, ObjectId};

pub const LABEL_HISTORY: &str = "provisioner.io/history-of";
const SECRET_TYPE: &str = "provisioner.io/release.v1";
/// Revisions kept per release (Helm's default too).
pub const KEEP: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevStatus {
    /// Written before the first object is applied; still so if the deploy died.
    Deploying,
    Deployed,
    Failed,
    Superseded,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision {
    pub revision: u64,
    pub status: RevStatus,
    pub time: String,
    /// `install`, `upgrade`, `rollback to 3`.
    pub description: String,
    pub chart: String,
    pub chart_version: String,
    pub values_digest: String,
    pub manifest_digest: String,
    /// Object keys, in apply order.
    pub inventory: Vec<String>,
    /// chart, chart_version, values and objects in desired form (tokens, no
    /// secret values): what state records after a rollback to this revision.
    pub attrs: Value,
    /// The objects exactly as applied (secret values included): only ever in
    /// this Secret, for rollbacks.
    pub manifest: Vec<Value>,
}

fn secret_id(namespace: &str, release: &str, revision: u64) -> ObjectId {
    ObjectId {
        group: String::new(),
        kind: "Secret".into(),
        namespace: Some(namespace.to_owned()),
        name: format!("provisioner.v1.{release}.v{revision}"),
    }
}

fn decode(secret: &Value) -> Option<Revision> {
    let b64 = secret.pointer("/data/release")?.as_str()?;
    let packed = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let bytes = zstd::decode_all(packed.as_slice()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every revision of `release`, oldest first.
pub async fn load(
    cluster: &Cluster,
    namespace: &str,
    release: &str,
) -> Result<Vec<Revision>, K8sError> {
    let items = cluster
        .list(
            "v1",
            "Secret",
            Some(namespace),
            Some(&format!("{LABEL_HISTORY}={release}")),
            None,
        )
        .await?;
    let mut out: Vec<Revision> = items.iter().filter_map(decode).collect();
    out.sort_by_key(|r| r.revision);
    Ok(out)
}

pub async fn save(
    cluster: &Cluster,
    namespace: &str,
    release: &str,
    environment: &str,
    rev: &Revision,
) -> Result<(), K8sError> {
    let json = serde_json::to_vec(rev)
        .map_err(|e| K8sError::NotReady(format!("encoding revision {}: {e}", rev.revision)))?;
    let packed = zstd::encode_all(json.as_slice(), 9)
        .map_err(|e| K8sError::NotReady(format!("compressing revision {}: {e}", rev.revision)))?;
    let id = secret_id(namespace, release, rev.revision);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": id.name,
            "namespace": namespace,
            "labels": { LABEL_MANAGED_BY: MANAGER, LABEL_HISTORY: release, LABEL_ENVIRONMENT: environment, "provisioner.io/revision": rev.revision.to_string(), "provisioner.io/status": format!("{:?}", rev.status).to_lowercase() },
        },
        "type": SECRET_TYPE,
        "data": { "release": base64::engine::general_purpose::STANDARD.encode(packed) },
    });
    cluster.apply(&id, &body, false, true).await.map(|_| ())
}

/// Mark `revision` with `status`, older deployed ones superseded, and keep
/// only the last `KEEP`.
pub async fn settle(
    cluster: &Cluster,
    namespace: &str,
    release: &str,
    environment: &str,
    revision: u64,
    status: RevStatus,
) -> Result<(), K8sError> {
    let all = load(cluster, namespace, release).await?;
    for mut r in all.iter().cloned() {
        let new = if r.revision == revision {
            status
        } else if status == RevStatus::Deployed
            && r.revision < revision
            && matches!(r.status, RevStatus::Deployed | RevStatus::Deploying)
        {
            RevStatus::Superseded
        } else {
            continue;
        };
        if r.status != new {
            r.status = new;
            save(cluster, namespace, release, environment, &r).await?;
        }
    }
    if all.len() > KEEP {
        for r in &all[..all.len() - KEEP] {
            cluster
                .delete("v1", &secret_id(namespace, release, r.revision))
                .await?;
        }
    }
    Ok(())
}

/// Remove every revision (the release is deleted).
pub async fn forget(cluster: &Cluster, namespace: &str, release: &str) -> Result<(), K8sError> {
    for r in load(cluster, namespace, release).await? {
        cluster
            .delete("v1", &secret_id(namespace, release, r.revision))
            .await?;
    }
    Ok(())
}
