//! `host.<node>`: the machine itself. First contact pins its SSH host key
//! (or checks the one the environment gives); then the node is prepared
//! (kernel modules present, sysctls, swap off, directories) and every binary
//! its roles need is installed from the artifacts, checked by sha256, and
//! uploaded only when the node's copy differs.

use serde_json::{Value, json};

use super::artifacts::{self, Source};
use super::remote::{self, File};
use super::{Attrs, ClusterProvider, observed, str_attr, target};
use crate::provider::{Live, ProviderError};
use crate::ssh::quote::q;
use crate::state::Record;

const SYSCTL: &str = "/etc/sysctl.d/90-provisioner.conf";
const SYSCTL_TEXT: &str = "# Written by provisioner.\nnet.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n";

/// Idempotent preparation. Kernel modules cannot be loaded from inside a
/// container (the lab's machines), so a module already present (or built in)
/// is enough.
const PREPARE: &str = r#"set -e
have() { case $1 in overlay) grep -qw overlay /proc/filesystems ;; br_netfilter) [ -d /sys/module/br_netfilter ] || [ -d /proc/sys/net/bridge ] ;; esac; }
for m in overlay br_netfilter; do
  have $m || modprobe $m 2>/dev/null || { echo "kernel module $m is neither loaded nor loadable" >&2; exit 3; }
done
sysctl -q -w net.ipv4.ip_forward=1
for k in net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do sysctl -q -w $k=1 2>/dev/null || true; done
swapoff -a 2>/dev/null || true
if grep -qE '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab 2>/dev/null; then sed -i -E '/^[^#].*[[:space:]]swap[[:space:]]/s/^/#/' /etc/fstab; fi
mkdir -p /etc/kubernetes/pki /etc/etcd/pki /var/lib/kubelet /etc/cni/net.d /opt/cni/bin /var/lib/provisioner/images /etc/containerd /usr/local/bin
mkdir -p -m 0700 /var/lib/etcd
missing=; for c in iptables conntrack; do command -v $c >/dev/null 2>&1 || missing="$missing $c"; done
if [ -n "$missing" ]; then
  { command -v apt-get >/dev/null && timeout 600 sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q$missing" >/dev/null 2>&1; } ||
    { echo "the node lacks$missing (kube-proxy needs them) and could not install them with apt-get: add them to the node image" >&2; exit 3; }
fi
"#;

/// name → (install path, sha256) of what the node should have.
async fn wanted(attrs: &Attrs) -> Result<(Source, Vec<(String, String, String)>), ProviderError> {
    let source = Source::from_attr(attrs.get("artifacts").unwrap_or(&Value::Null))?;
    let version = str_attr(attrs, "version")?;
    let sums = source.sums(version).await?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in artifacts::needed(
        &super::strings(attrs, "roles", None),
        &super::strings(attrs, "preload_images", None),
    ) {
        match sums.get(&name) {
            Some(sha) => out.push((name.clone(), artifacts::install_path(&name), sha.clone())),
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        return Err(ProviderError::fatal(format!(
            "the artifacts at {} list no {} in SHA256SUMS; add them to the mirror",
            source.url(version, ""),
            missing.join(", ")
        )));
    }
    Ok((source, out))
}

pub async fn apply(
    p: &ClusterProvider,
    rec: Option<&Record>,
    attrs: &Attrs,
) -> Result<Live, ProviderError> {
    let t = target(attrs, rec.and_then(|r| r.outputs.get("host_key")))?;
    let key = p.ssh.host_key(&t).await?;
    let t = crate::ssh::Target {
        host_key: Some(key.clone()),
        ..t
    };
    p.ssh.run(&t, PREPARE).await?;
    remote::sync(&p.ssh, &t, vec![File::new(SYSCTL, 0o644, SYSCTL_TEXT)]).await?;

    let (source, want) = wanted(attrs).await?;
    let paths: Vec<&str> = want.iter().map(|(_, path, _)| path.as_str()).collect();
    let have = remote::digests(&p.ssh, &t, &paths).await?;
    let version = str_attr(attrs, "version")?;
    let mut installed = Vec::new();
    for (name, path, sha) in &want {
        if have.get(path) == Some(sha) {
            continue;
        }
        let mode = if name.starts_with("images/") {
            0o644
        } else {
            0o755
        };
        match &source {
            Source::Dir(_) => {
                p.ssh
                    .put_file(&t, path, mode, source.url(version, name).into(), sha)
                    .await?;
            }
            Source::Url(_) => {
                let fill = format!(
                    "curl -fsSL --retry 3 -o \"$t\" {}",
                    q(&source.url(version, name))
                );
                let script = format!(
                    "set -e; {}",
                    crate::ssh::install_step(&fill, path, sha, mode)
                );
                let out = p.ssh.try_run(&t, &script, p.ssh.timeout()).await?;
                match out.status {
                    0 => {}
                    97 => {
                        return Err(ProviderError::fatal(format!(
                            "{}: {} downloaded from {} has sha256 {}, not the {sha} its SHA256SUMS lists",
                            t.label(),
                            name,
                            source.url(version, name),
                            out.stderr.split_whitespace().last().unwrap_or("?")
                        )));
                    }
                    status => {
                        return Err(ProviderError::fatal(format!(
                            "{}: downloading {} exited {status}: {}",
                            t.label(),
                            source.url(version, name),
                            out.stderr.trim()
                        )));
                    }
                }
            }
        }
        installed.push(name.clone());
    }
    if !installed.is_empty() {
        tracing::info!(host = %t.node, "installed {}", installed.join(", "));
    }
    // Remember what was installed and the files' stat, so a refresh can tell
    // "unchanged" without hashing half a gigabyte on every node.
    p.ssh
        .run(
            &t,
            &format!(
                "{} > {STAT}; echo {} > {SUMS}",
                stat_cmd(&paths),
                q(&sums_digest(&want))
            ),
        )
        .await?;
    let hostname = p.ssh.run(&t, "hostname").await?.stdout.trim().to_owned();
    let mut live = Live {
        id: t.node.clone(),
        attrs: attrs.clone(),
        ..Default::default()
    };
    live.outputs.insert("host_key".into(), json!(key));
    live.outputs
        .insert("fingerprint".into(), key.fingerprint().into());
    live.outputs.insert("hostname".into(), hostname.into());
    live.outputs
        .insert("address".into(), t.address.clone().into());
    Ok(live)
}

const STAT: &str = "/var/lib/provisioner/artifacts.stat";
const SUMS: &str = "/var/lib/provisioner/artifacts.sums";

fn stat_cmd(paths: &[&str]) -> String {
    let list: Vec<String> = paths.iter().map(|p| q(p)).collect();
    format!("stat -c '%n %s %Y %i' {}", list.join(" "))
}

fn sums_digest(want: &[(String, String, String)]) -> String {
    let text: String = want
        .iter()
        .map(|(n, _, sha)| format!("{sha} {n}\n"))
        .collect();
    crate::core::digest::sha256_hex(text.as_bytes())
}

pub async fn read(p: &ClusterProvider, rec: &Record) -> Result<Option<Live>, ProviderError> {
    let t = target(&rec.attrs, rec.outputs.get("host_key"))?;
    // A changed host key fails the refresh, and so the plan: nothing is sent to it.
    p.ssh.host_key(&t).await?;
    let (_, want) = wanted(&rec.attrs).await?;
    let mut paths: Vec<&str> = want.iter().map(|(_, path, _)| path.as_str()).collect();
    // Fast path: the same artifacts were installed and no file was touched since.
    let quick = format!(
        "[ \"$(cat {SUMS} 2>/dev/null)\" = {} ] && {} | cmp -s - {STAT} && [ -e {SYSCTL} ] && [ \"$(sha256sum {SYSCTL} | cut -d' ' -f1)\" = {} ]",
        q(&sums_digest(&want)),
        stat_cmd(&paths),
        q(&crate::core::digest::sha256_hex(SYSCTL_TEXT.as_bytes())),
    );
    if p.ssh
        .try_run(&t, &quick, std::time::Duration::from_secs(30))
        .await?
        .status
        == 0
    {
        return Ok(Some(observed(rec, &t.node, Vec::new())));
    }
    paths.push(SYSCTL);
    let have = remote::digests(&p.ssh, &t, &paths).await?;
    let mut drift: Vec<String> = want
        .iter()
        .filter(|(_, path, sha)| have.get(path) != Some(sha))
        .map(|(name, path, _)| format!("{path} is not the artifacts' {name}"))
        .collect();
    if have.get(SYSCTL).map(String::as_str)
        != Some(&crate::core::digest::sha256_hex(SYSCTL_TEXT.as_bytes()))
    {
        drift.push(format!("{SYSCTL} differs"));
    }
    Ok(Some(observed(rec, &t.node, drift)))
}
