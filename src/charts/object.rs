//! Kubernetes objects as charts render them: identity (`Deployment.apps/stac/
//! stac-api`), the order they are applied in, the labels that make them a
//! release's inventory, and the placeholder tokens secrets travel as.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Label every object of a release carries: who manages it…
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// …which release it belongs to (the inventory; prune deletes only these)…
pub const LABEL_RELEASE: &str = "provisioner.io/release";
/// …and which environment.
pub const LABEL_ENVIRONMENT: &str = "provisioner.io/environment";
pub const MANAGER: &str = "provisioner";

/// What a chart sees for `Secrets.<name>`: a token, replaced by the value only
/// in memory at apply time, and only inside a Secret's `stringData`.
pub fn secret_token(name: &str) -> String {
    format!("((secret:{name}))")
}

/// What a chart sees for `Outputs.<name>`: a public value known only once
/// another resource exists (a generated CA bundle); allowed anywhere, filled in
/// at apply time.
pub fn output_token(name: &str) -> String {
    format!("((output:{name}))")
}

/// The secret names tokens in `s` refer to.
pub fn tokens_in(s: &str) -> Vec<&str> {
    tokens_of(s, "((secret:")
}

/// The output names tokens in `s` refer to.
pub fn output_tokens_in(s: &str) -> Vec<&str> {
    tokens_of(s, "((output:")
}

fn tokens_of<'a>(s: &'a str, open: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        match after.find("))") {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + 2..];
            }
            None => break,
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectId {
    /// API group; empty for the core group.
    pub group: String,
    pub kind: String,
    /// None for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// `Kind[.group]/[namespace/]name`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.split('/');
        let kg = parts.next()?;
        let (kind, group) = kg.split_once('.').map_or((kg, ""), |(k, g)| (k, g));
        let rest: Vec<&str> = parts.collect();
        let (namespace, name) = match rest.as_slice() {
            [name] => (None, *name),
            [ns, name] => (Some((*ns).to_owned()), *name),
            _ => return None,
        };
        Some(Self {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "/{ns}")?;
        }
        write!(f, "/{}", self.name)
    }
}

/// One rendered object and the template it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: ObjectId,
    pub body: Value,
    pub template: String,
}

impl Object {
    pub fn api_version(&self) -> &str {
        self.body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Kinds that live outside namespaces (custom resources say so in their CRD).
pub fn cluster_scoped_builtin(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "CustomResourceDefinition"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "PriorityClass"
            | "StorageClass"
            | "PersistentVolume"
            | "IngressClass"
            | "APIService"
    )
}

/// Apply order (Helm's install order; unknown kinds, i.e. custom resources, last).
pub fn order(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// Fields the API server refuses to change in place, per kind (key prefix):
/// a change there is a delete + create of the object.
const IMMUTABLE: &[(&str, &[&str])] = &[
    ("Deployment.apps/", &["spec.selector"]),
    ("DaemonSet.apps/", &["spec.selector"]),
    (
        "StatefulSet.apps/",
        &[
            "spec.selector",
            "spec.serviceName",
            "spec.volumeClaimTemplates",
            "spec.podManagementPolicy",
        ],
    ),
    ("Job.batch/", &["spec.template", "spec.selector"]),
    ("Service/", &["spec.clusterIP"]),
    (
        "PersistentVolumeClaim/",
        &[
            "spec.accessModes",
            "spec.storageClassName",
            "spec.selector",
            "spec.volumeMode",
            "spec.volumeName",
        ],
    ),
    ("RoleBinding.rbac.authorization.k8s.io/", &["roleRef"]),
    (
        "ClusterRoleBinding.rbac.authorization.k8s.io/",
        &["roleRef"],
    ),
    (
        "CustomResourceDefinition.apiextensions.k8s.io/",
        &["spec.scope", "spec.group", "spec.names.plural"],
    ),
];

/// Whether changing `path` of the object `key` needs delete + create.
pub fn replaces(key: &str, path: &str) -> bool {
    IMMUTABLE
        .iter()
        .filter(|(k, _)| key.starts_with(k))
        .flat_map(|(_, paths)| paths.iter())
        .any(|p| {
            path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
        })
}

/// Whether deleting the object `key` loses data: a PVC's volume, every
/// custom resource of a CRD, everything in a namespace.
pub fn holds_data(key: &str) -> bool {
    [
        "PersistentVolumeClaim/",
        "CustomResourceDefinition.apiextensions.k8s.io/",
        "Namespace/",
    ]
    .iter()
    .any(|k| key.starts_with(k))
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The version of an `apiVersion` (`apps/v1` → `v1`).
pub fn version_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or(api_version, |(_, v)| v)
}

/// Set a label, creating `metadata.labels` as needed.
pub fn set_label(body: &mut Value, key: &str, value: &str) {
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for key in [
            "Deployment.apps/stac/stac-api",
            "ConfigMap/argo/workflow-controller-configmap",
            "CustomResourceDefinition.apiextensions.k8s.io/workflows.argoproj.io",
            "Namespace/argo",
        ] {
            assert_eq!(ObjectId::parse(key).unwrap().key(), key);
        }
        let id = ObjectId::parse("Namespace/argo").unwrap();
        assert_eq!(
            (id.kind.as_str(), id.namespace, id.name.as_str()),
            ("Namespace", None, "argo")
        );
    }

    #[test]
    fn tokens_are_found() {
        assert_eq!(
            tokens_in("postgres://u:((secret:db))@h/((secret:x))"),
            vec!["db", "x"]
        );
        assert!(tokens_in("plain").is_empty());
        assert!(
            order("Namespace") < order("CustomResourceDefinition")
                && order("CustomResourceDefinition") < order("Deployment")
        );
        assert!(order("Workflow") > order("ValidatingWebhookConfiguration"));
    }
}
