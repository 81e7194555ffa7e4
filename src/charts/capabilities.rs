//! What the target cluster serves: its Kubernetes version and API versions,
//! so one chart renders for v1.20 (the lab) and for current clusters (Helm's
//! `.Capabilities`). Read from the cluster's discovery when it is reachable;
//! otherwise derived from the environment's `cluster.kubernetes_version`
//! with a table of when each API version was served.

use std::collections::BTreeSet;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub version: semver::Version,
    /// `group/version` (`batch/v1`, `v1`) and `group/version/Kind` (`batch/v1/CronJob`).
    pub api_versions: BTreeSet<String>,
    /// Where the facts came from: `cluster` (discovery) or `table` (the version alone).
    pub source: &'static str,
}

/// (group/version, kinds, first minor served, last minor served) for the APIs
/// charts choose between. Built-in resources only; CRDs add their own.
const SERVED: &[(&str, &[&str], u64, u64)] = &[
    (
        "v1",
        &[
            "ConfigMap",
            "Secret",
            "Service",
            "ServiceAccount",
            "Namespace",
            "PersistentVolumeClaim",
            "Pod",
        ],
        0,
        u64::MAX,
    ),
    (
        "apps/v1",
        &["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"],
        9,
        u64::MAX,
    ),
    ("batch/v1", &["Job"], 0, u64::MAX),
    ("batch/v1/CronJob", &[], 21, u64::MAX),
    ("batch/v1beta1", &["CronJob"], 8, 24),
    ("policy/v1", &["PodDisruptionBudget"], 21, u64::MAX),
    ("policy/v1beta1", &["PodDisruptionBudget"], 5, 24),
    ("autoscaling/v1", &["HorizontalPodAutoscaler"], 0, u64::MAX),
    ("autoscaling/v2", &["HorizontalPodAutoscaler"], 23, u64::MAX),
    ("autoscaling/v2beta2", &["HorizontalPodAutoscaler"], 12, 25),
    (
        "networking.k8s.io/v1",
        &["Ingress", "NetworkPolicy", "IngressClass"],
        19,
        u64::MAX,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        &["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
        8,
        u64::MAX,
    ),
    (
        "apiextensions.k8s.io/v1",
        &["CustomResourceDefinition"],
        16,
        u64::MAX,
    ),
    (
        "admissionregistration.k8s.io/v1",
        &[
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ],
        16,
        u64::MAX,
    ),
    ("coordination.k8s.io/v1", &["Lease"], 14, u64::MAX),
    ("scheduling.k8s.io/v1", &["PriorityClass"], 14, u64::MAX),
    ("storage.k8s.io/v1", &["StorageClass"], 6, u64::MAX),
];

impl Capabilities {
    /// From a version alone (`v1.20.15`), for offline plans and renders.
    pub fn for_version(version: &semver::Version) -> Self {
        let minor = version.minor;
        let mut api = BTreeSet::new();
        for (gv, kinds, first, last) in SERVED {
            if (*first..=*last).contains(&minor) {
                api.insert((*gv).to_owned());
                for k in *kinds {
                    api.insert(format!("{gv}/{k}"));
                }
            }
        }
        // `batch/v1/CronJob` is its own row: batch/v1 (Job) predates it.
        Self {
            version: version.clone(),
            api_versions: api,
            source: "table",
        }
    }

    /// Parse `v1.20.15` / `1.20.2` (a leading `v` and build metadata allowed).
    pub fn parse_version(s: &str) -> Option<semver::Version> {
        let t = s.trim().trim_start_matches('v');
        // Cluster versions carry build tags like `1.28.3+k3s1` or `-gke.100`.
        let core: String = t
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        Some(semver::Version::new(
            parts.next()??,
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
        ))
    }

    /// What templates see as `Capabilities`.
    pub fn context(&self) -> CapabilitiesContext<'_> {
        CapabilitiesContext {
            kube_version: KubeVersion {
                version: format!("v{}", self.version),
                major: self.version.major,
                minor: self.version.minor,
            },
            api_versions: &self.api_versions,
        }
    }

    pub fn has(&self, api: &str) -> bool {
        self.api_versions.contains(api)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesContext<'a> {
    pub kube_version: KubeVersion,
    #[serde(rename = "APIVersions")]
    pub api_versions: &'a BTreeSet<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KubeVersion {
    pub version: String,
    pub major: u64,
    pub minor: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_the_apis_each_release_served() {
        let old = Capabilities::for_version(&Capabilities::parse_version("v1.20.15").unwrap());
        assert!(old.has("batch/v1beta1/CronJob") && !old.has("batch/v1/CronJob"));
        assert!(old.has("policy/v1beta1/PodDisruptionBudget") && !old.has("policy/v1"));
        assert!(old.has("autoscaling/v2beta2") && !old.has("autoscaling/v2"));
        let new = Capabilities::for_version(&Capabilities::parse_version("1.31.2+k3s1").unwrap());
        assert!(new.has("batch/v1/CronJob") && !new.has("batch/v1beta1"));
        assert!(
            new.has("policy/v1/PodDisruptionBudget")
                && new.has("autoscaling/v2/HorizontalPodAutoscaler")
        );
        assert_eq!(new.version, semver::Version::new(1, 31, 2));
    }
}
