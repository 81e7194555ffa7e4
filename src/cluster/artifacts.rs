//! Where node binaries come from: a local directory (uploaded over SSH) or a
//! URL template the nodes download from (`{version}`, `{name}`). Either holds
//! a SHA256SUMS; nothing is installed whose digest it does not list. An
//! airgapped site points either at its own mirror: the same mechanism.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::provider::ProviderError;

#[derive(Debug, Clone)]
pub enum Source {
    Dir(PathBuf),
    Url(String),
}

impl Source {
    pub fn from_attr(v: &Value) -> Result<Self, ProviderError> {
        if let Some(d) = v.get("dir").and_then(Value::as_str) {
            return Ok(Source::Dir(crate::env::secret::expand_home(d)));
        }
        if let Some(u) = v.get("url").and_then(Value::as_str) {
            return Ok(Source::Url(u.to_owned()));
        }
        Err(ProviderError::fatal(
            "cluster.artifacts is not set: name a directory (`dir: PATH`) or a URL template (`url: https://mirror/{version}/{name}`) holding the node binaries and a SHA256SUMS",
        ))
    }

    pub fn url(&self, version: &str, name: &str) -> String {
        match self {
            Source::Dir(d) => d.join(name).display().to_string(),
            Source::Url(u) => u.replace("{version}", version).replace("{name}", name),
        }
    }

    /// name → sha256, from the source's SHA256SUMS.
    pub async fn sums(&self, version: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        let at = self.url(version, "SHA256SUMS");
        let text = match self {
            Source::Dir(_) => std::fs::read_to_string(&at).map_err(|e| {
                ProviderError::fatal(format!(
                    "reading {at}: {e}; the artifact directory must hold a SHA256SUMS"
                ))
                .caused_by(e)
            })?,
            Source::Url(_) => {
                let r = reqwest::get(&at)
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| {
                        ProviderError::transient(format!("fetching {at}: {e}")).caused_by(e)
                    })?;
                r.text().await.map_err(|e| {
                    ProviderError::transient(format!("fetching {at}: {e}")).caused_by(e)
                })?
            }
        };
        Ok(text
            .lines()
            .filter_map(|l| {
                let (sha, name) = l.split_once(char::is_whitespace)?;
                let name = name.trim().trim_start_matches('*').trim_start_matches("./");
                Some((name.to_owned(), sha.to_owned()))
            })
            .collect())
    }
}

/// Where an artifact is installed on a node.
pub fn install_path(name: &str) -> String {
    if let Some(p) = name.strip_prefix("cni/") {
        format!("/opt/cni/bin/{p}")
    } else if let Some(p) = name.strip_prefix("images/") {
        format!("/var/lib/provisioner/images/{p}")
    } else {
        format!("/usr/local/bin/{name}")
    }
}

/// The artifacts a node of `roles` needs.
pub fn needed(roles: &[String], preload: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "kubelet",
        "kube-proxy",
        "cni/bridge",
        "cni/host-local",
        "cni/loopback",
        "cni/portmap",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if roles.iter().any(|r| r == "etcd") {
        v.extend(["etcd", "etcdctl"].map(String::from));
    }
    if roles.iter().any(|r| r == "controlplane") {
        v.extend(
            [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubectl",
            ]
            .map(String::from),
        );
    }
    v.extend(preload.iter().cloned());
    v
}
