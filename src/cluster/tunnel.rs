//! The API of a private cluster, reached the way its nodes are: when the
//! admin kubeconfig this layer wrote names a bastion (extension
//! `provisioner.dev/bastion`), a local port is forwarded through it to the
//! API server, so `deploy`, `up`'s platform layer and the drains of day 2
//! work without a VPN. The API server's certificate names 127.0.0.1, so TLS
//! is verified as usual.

use std::path::Path;
use std::sync::Arc;

use kube::config::Kubeconfig;
use serde_json::Value;

use crate::env::model::Environment;
use crate::provider::ProviderError;
use crate::ssh::{Forward, Ssh, Target};

pub const EXTENSION: &str = "provisioner.dev/bastion";

/// A forwarded port to the API server; closed when dropped.
pub struct ApiTunnel {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    _forward: Forward,
    _ssh: Arc<Ssh>,
}

/// The bastion a kubeconfig's context names, and its API server's host and port.
fn bastion_of(kc: &Kubeconfig, context: Option<&str>) -> Option<(Value, String, u16)> {
    let ctx = context
        .map(str::to_owned)
        .or_else(|| kc.current_context.clone())?;
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx)?
        .context
        .as_ref()?
        .cluster
        .clone();
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)?
        .cluster
        .as_ref()?;
    let via = cluster
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.name == EXTENSION)?
        .extension
        .clone();
    let (host, port) = host_port(cluster.server.as_deref()?)?;
    Some((via, host, port))
}

/// `https://10.0.0.5:6443/` → (`10.0.0.5`, 6443).
fn host_port(server: &str) -> Option<(String, u16)> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?))
        }
        _ => Some((authority.trim_matches(['[', ']']).to_owned(), 443)),
    }
}

/// A tunnel to the API when the kubeconfig asks for one; None when the
/// server is to be reached directly.
pub async fn api_tunnel(
    env: &Environment,
    kubeconfig: &Path,
    context: Option<&str>,
) -> Result<Option<ApiTunnel>, ProviderError> {
    open(super::ssh_for(env), kubeconfig, context).await
}

/// A client of the cluster a kubeconfig names, through its bastion when it
/// names one; the tunnel (if any) must outlive the client.
pub(crate) async fn connect(
    ssh: Arc<Ssh>,
    kubeconfig: &Path,
) -> Result<(crate::k8s::client::Cluster, Option<ApiTunnel>), ProviderError> {
    let tunnel = open(ssh, kubeconfig, None).await?;
    let server = tunnel.as_ref().map(|t| t.server.clone());
    let c = crate::k8s::client::Cluster::connect_to(Some(kubeconfig), None, server.as_deref())
        .await
        .map_err(|e| ProviderError::transient(e.to_string()))?;
    Ok((c, tunnel))
}

async fn open(
    ssh: Arc<Ssh>,
    kubeconfig: &Path,
    context: Option<&str>,
) -> Result<Option<ApiTunnel>, ProviderError> {
    let Ok(kc) = Kubeconfig::read_from(kubeconfig) else {
        // Not ours to judge: the client reports an unreadable kubeconfig.
        return Ok(None);
    };
    let Some((via, host, port)) = bastion_of(&kc, context) else {
        return Ok(None);
    };
    let s = |k: &str| via.get(k).and_then(Value::as_str).map(str::to_owned);
    let bastion = Target {
        node: "bastion".into(),
        address: s("address").ok_or_else(|| {
            ProviderError::fatal(format!(
                "{}: extension {EXTENSION} has no address",
                kubeconfig.display()
            ))
        })?,
        port: via.get("port").and_then(Value::as_u64).unwrap_or(22) as u16,
        user: s("user").unwrap_or_else(|| "debian".into()),
        via: None,
        host_key: super::host_key_of(via.get("host_key")),
    };
    let forward = ssh.forward(&bastion, &host, port).await?;
    tracing::info!(api = %format!("{host}:{port}"), bastion = %bastion.address, local = %forward.local, "reaching the API server through the bastion");
    Ok(Some(ApiTunnel {
        server: format!("https://{}", forward.local),
        _forward: forward,
        _ssh: ssh,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_and_port_of_a_server() {
        assert_eq!(
            super::host_port("https://10.0.0.5:6443"),
            Some(("10.0.0.5".into(), 6443))
        );
        assert_eq!(
            super::host_port("https://api.example.org/"),
            Some(("api.example.org".into(), 443))
        );
    }
}
