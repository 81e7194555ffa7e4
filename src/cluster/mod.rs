//! The cluster layer's provider: Kubernetes bootstrapped over SSH onto the
//! environment's nodes, RKE-style (binaries + systemd units, no kubeadm).
//! One file per kind: `host` (preparation and binaries), `etcd`,
//! `control_plane`, `kubelet`, `kubeconfig`, and the PKI they share
//! (`cluster_pki`). Every step converges (`remote`): a rerun with nothing to
//! do uploads nothing and restarts nothing; a read compares the node with
//! what was applied and reports the difference as drift.

mod artifacts;
mod backup;
mod control_plane;
mod etcd;
pub mod flags;
mod host;
mod kubeconfig;
mod kubelet;
pub mod pki;
mod pki_resource;
mod remote;
mod restore;
mod snapshot;
mod status;
mod tunnel;

pub use tunnel::{ApiTunnel, api_tunnel};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::core::Address;
use crate::env::model::Environment;
use crate::plan::diff::{Action, Change};
use crate::plan::resource::Desired;
use crate::provider::{Class, Live, Provider, ProviderError, Task};
use crate::ssh::{Auth, HostKey, Ssh, Target};
use crate::state::Record;

type Attrs = BTreeMap<String, Value>;

pub struct ClusterProvider {
    ssh: Arc<Ssh>,
    /// The admin kubeconfig this layer writes (drains go through it).
    kubeconfig: Option<std::path::PathBuf>,
    /// Health gates and waits (the environment's `timeouts.create`).
    timeout: Duration,
    renew_before: chrono::Duration,
    /// `certs rotate --ca`: new CAs in this run.
    rotate_ca: bool,
    /// Where etcd snapshots go (`cluster.etcd_snapshots.s3`).
    snapshots: Option<crate::env::model::S3Location>,
    /// Nodes that did not answer in this run, and why: their other steps
    /// are not tried again (a lost machine costs one timeout, not one per step).
    unreachable: std::sync::Mutex<BTreeMap<String, String>>,
    /// Every etcd member seen in this run, so one that is lost can be
    /// removed through another.
    members: std::sync::Mutex<BTreeMap<String, Target>>,
}

impl ClusterProvider {
    pub fn new(env: &Environment, rotate: Option<crate::provider::Rotation>) -> Self {
        Self {
            ssh: ssh_for(env),
            timeout: Duration::from_secs(env.timeouts.create.max(60)),
            kubeconfig: kubeconfig_path(env),
            // Rotation: every certificate counts as due, so every one is issued again.
            renew_before: chrono::Duration::days(match rotate {
                Some(_) => 365 * 200,
                None => env.cluster.certificates.renew_before_days.into(),
            }),
            rotate_ca: rotate.is_some_and(|r| r.ca),
            snapshots: env.cluster.etcd_snapshots.s3.clone(),
            unreachable: Default::default(),
            members: Default::default(),
        }
    }
}

/// The cluster DNS address the kubelets give pods (and the CoreDNS release
/// takes): the 10th of the service range, as kubeadm and RKE do.
pub fn dns_ip(service_cidr: &ipnet::IpNet) -> Option<std::net::IpAddr> {
    service_cidr.hosts().nth(9)
}

/// The cluster layer's kinds (what `certs rotate` converges).
pub const KINDS: [&str; 7] = [
    "cluster_pki",
    "host",
    "etcd",
    "etcd_backup",
    "control_plane",
    "kubelet",
    "kubeconfig",
];

/// SSH as the environment says: its key file, else the usual ones, and the agent.
pub(crate) fn ssh_for(env: &Environment) -> Arc<Ssh> {
    let mut key_files = Vec::new();
    if let Some(k) = &env.cluster.ssh.private_key_file {
        key_files.push(crate::env::secret::expand_home(k));
    } else {
        for k in ["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"] {
            let p = crate::env::secret::expand_home(k);
            if p.exists() {
                key_files.push(p);
            }
        }
    }
    Ssh::new(
        Auth {
            key_files,
            agent: std::env::var_os("SSH_AUTH_SOCK").is_some(),
        },
        Duration::from_secs(env.timeouts.request.max(10)),
    )
}

/// Where this layer writes the admin kubeconfig of `env`; None when the
/// cluster layer is off. The platform layer deploys through it once it exists.
pub fn kubeconfig_path(env: &Environment) -> Option<std::path::PathBuf> {
    if !env.cluster.enabled {
        return None;
    }
    let p = env
        .cluster
        .kubeconfig
        .path
        .clone()
        .unwrap_or_else(|| format!("~/.kube/provisioner-{}.yaml", env.name));
    Some(crate::env::secret::expand_home(&p))
}

/// The node a resource lives on, from its `node` attribute; `pinned`
/// overrides the host key (a host's own record keeps it as an output).
pub(crate) fn target(attrs: &Attrs, pinned: Option<&Value>) -> Result<Target, ProviderError> {
    let n = attrs
        .get("node")
        .ok_or_else(|| ProviderError::fatal("a cluster resource without a node"))?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let key = host_key_of;
    let address = s(n, "address").ok_or_else(|| {
        ProviderError::fatal(format!(
            "node {}: no address yet (its server has none in state)",
            s(n, "name").unwrap_or_default()
        ))
    })?;
    let via = match n.get("via") {
        Some(b) if b.is_object() => Some(Box::new(Target {
            node: "bastion".into(),
            address: s(b, "address")
                .ok_or_else(|| ProviderError::fatal("the bastion has no address yet"))?,
            port: 22,
            user: s(b, "user").unwrap_or_else(|| "debian".into()),
            via: None,
            host_key: key(b.get("host_key")),
        })),
        _ => None,
    };
    Ok(Target {
        node: s(n, "name").unwrap_or_default(),
        address,
        port: n.get("port").and_then(Value::as_u64).unwrap_or(22) as u16,
        user: s(n, "user").unwrap_or_else(|| "debian".into()),
        via,
        host_key: key(pinned.or(n.get("host_key"))),
    })
}

/// A host key as attributes hold it: an OpenSSH line or `{type, key}`.
pub(crate) fn host_key_of(v: Option<&Value>) -> Option<HostKey> {
    match v? {
        Value::String(line) => HostKey::parse(line),
        other => serde_json::from_value(other.clone()).ok(),
    }
}

pub(crate) fn str_attr<'a>(attrs: &'a Attrs, k: &str) -> Result<&'a str, ProviderError> {
    attrs
        .get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::fatal(format!("attribute `{k}` is missing")))
}

/// A list attribute's strings: the items themselves, or each item's `field`
/// (`control_addresses`; `etcd` → `address`).
pub(crate) fn strings(attrs: &Attrs, key: &str, field: Option<&str>) -> Vec<String> {
    attrs
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| match field {
            Some(f) => v.get(f)?.as_str().map(str::to_owned),
            None => v.as_str().map(str::to_owned),
        })
        .collect()
}

/// How long the leaf certificates a step issues are valid (`cluster.certificates.validity_days`).
pub(crate) fn cert_days(attrs: &Attrs) -> u32 {
    attrs
        .get("cert_days")
        .and_then(Value::as_u64)
        .map_or(365, |d| d.min(u32::MAX.into()) as u32)
}

pub(crate) fn version(attrs: &Attrs) -> Result<semver::Version, ProviderError> {
    let v = str_attr(attrs, "version")?;
    flags::parse(v).ok_or_else(|| {
        ProviderError::fatal(format!(
            "cluster.kubernetes_version `{v}` is not a version like v1.20.2"
        ))
    })
}

/// The record as it is, plus `drift` when the node differs from it.
pub(crate) fn observed(rec: &Record, id: &str, drift: Vec<String>) -> Live {
    let mut attrs = rec.attrs.clone();
    if !drift.is_empty() {
        attrs.insert("drift".into(), Value::String(drift.join("; ")));
    }
    Live {
        id: id.to_owned(),
        attrs,
        outputs: rec.outputs.clone(),
        secrets: BTreeMap::new(),
        basis: Some("the node, over SSH".into()),
    }
}

/// Files on the node that differ from what they should be.
pub(crate) async fn check_files(
    p: &ClusterProvider,
    t: &Target,
    files: Vec<remote::File>,
) -> Result<Vec<String>, ProviderError> {
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let have = remote::digests(&p.ssh, t, &paths).await?;
    Ok(files
        .iter()
        .filter(|f| have.get(&f.path) != Some(&crate::core::digest::sha256_hex(&f.content)))
        .map(|f| {
            format!(
                "{} {}",
                f.path,
                if have.contains_key(&f.path) {
                    "differs"
                } else {
                    "is missing"
                }
            )
        })
        .collect())
}

/// Units that are not running.
pub(crate) async fn check_units(
    p: &ClusterProvider,
    t: &Target,
    units: &[&str],
) -> Result<Vec<String>, ProviderError> {
    // One round trip: `is-active` prints one state per unit, in order.
    let r = p
        .ssh
        .try_run(
            t,
            &format!("systemctl is-active {}", units.join(" ")),
            Duration::from_secs(20),
        )
        .await?;
    Ok(units
        .iter()
        .zip(r.stdout.lines().chain(std::iter::repeat("unknown")))
        .filter(|(_, state)| state.trim() != "active")
        .map(|(u, state)| format!("{u} is {}", state.trim()))
        .collect())
}

/// A node step as the node has it: its files and units checked against what
/// they should be, its certificates against the renewal window.
pub(crate) async fn read_step(
    p: &ClusterProvider,
    rec: &Record,
    files: impl FnOnce(&Target) -> Result<Vec<remote::File>, ProviderError>,
    units: &[&str],
) -> Result<Option<Live>, ProviderError> {
    let t = target(&rec.attrs, None)?;
    let mut drift = check_files(p, &t, files(&t)?).await?;
    drift.extend(check_units(p, &t, units).await?);
    drift.extend(due(rec, p.renew_before));
    Ok(Some(observed(rec, &t.node, drift)))
}

/// A node step as applied: its certificates' expiry as an output.
pub(crate) fn applied(t: &Target, attrs: &Attrs, expiry: BTreeMap<String, String>) -> Live {
    let mut live = Live {
        id: t.node.clone(),
        attrs: attrs.clone(),
        ..Default::default()
    };
    live.outputs.insert(
        "certificates".into(),
        serde_json::to_value(expiry).unwrap_or_default(),
    );
    live
}

/// Certificates (output `certificates`: name → expiry) within the renewal window.
pub(crate) fn due(rec: &Record, renew_before: chrono::Duration) -> Vec<String> {
    rec.outputs
        .get("certificates")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, at)| {
            let at = chrono::DateTime::parse_from_rfc3339(at.as_str()?).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now() < renew_before)
                .then(|| format!("certificate {name} expires {at}: renewal due"))
        })
        .collect()
}

/// etcd members leave one per run, and never more than quorum allows: the
/// plan is refused before anything changes (removing the whole cluster is
/// `destroy`, which leaves no member behind).
fn quorum(changes: &[&Change], desired: &[Desired]) -> Result<(), ProviderError> {
    let leaving: Vec<String> = changes
        .iter()
        .filter(|c| c.kind == "etcd" && matches!(c.action, Action::Delete | Action::Replace))
        .map(|c| c.address.to_string())
        .collect();
    let staying = desired.iter().filter(|d| d.spec.kind == "etcd").count();
    if leaving.len() > 1 && staying > 0 {
        return Err(ProviderError::fatal(format!(
            "the plan removes {} etcd members at once ({}): a member that is removed while another is away can cost the cluster its quorum. Remove one node per `up` (the members left must stay a majority), or destroy the whole cluster",
            leaving.len(),
            leaving.join(", ")
        )));
    }
    Ok(())
}

#[async_trait]
impl Provider for ClusterProvider {
    fn kinds(&self) -> &'static [&'static str] {
        &KINDS
    }

    /// Every node that will change answers SSH (and, when its key is given,
    /// presents it) before anything changes anywhere.
    async fn preflight(
        &self,
        changes: &[&Change],
        desired: &[Desired],
    ) -> Result<(), ProviderError> {
        quorum(changes, desired)?;
        let mut failures = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for c in changes.iter().filter(|c| c.action != Action::Delete) {
            let Some(d) = desired.iter().find(|d| d.address == c.address) else {
                continue;
            };
            // Servers made by this same run have no address yet.
            let Some(address) = d.attrs.get("node").and_then(|n| n.get("address")) else {
                continue;
            };
            if !address.is_string() {
                continue;
            }
            let mut attrs = d.attrs.clone();
            // The host key is checked by the host's own step; here only whether it answers.
            if let Some(n) = attrs.get_mut("node").and_then(Value::as_object_mut)
                && crate::core::Ref::parse(n.get("host_key").unwrap_or(&Value::Null)).is_some()
            {
                n.insert("host_key".into(), Value::Null);
            }
            let t = target(&attrs, None)?;
            if !seen.insert(t.address.clone()) {
                continue;
            }
            if let Err(e) = self.ssh.host_key(&t).await {
                failures.push(e.to_string());
            }
            if c.kind == "host" {
                artifacts::Source::from_attr(d.attrs.get("artifacts").unwrap_or(&Value::Null))?;
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::transient(format!(
                "nothing was changed: {} node(s) cannot be reached:\n  {}",
                failures.len(),
                failures.join("\n  ")
            )))
        }
    }

    /// A node that does not answer is not an error here: its steps show the
    /// drift `unreachable`, so a node being removed (a lost machine) can be
    /// planned, and one being kept is refused by `preflight` before any change.
    async fn read(&self, addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let node = rec
            .attrs
            .get("node")
            .and_then(|n| n.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(n) = &node
            && let Some(why) = self.known_unreachable(n)
        {
            return Ok(Some(observed(rec, n, vec![why])));
        }
        match self.read_kind(addr, rec).await {
            Err(e) if matches!(e.class, Class::Transient { .. }) && node.is_some() => {
                let n = node.unwrap_or_default();
                let why = format!("unreachable: {}", e.message);
                if let Ok(mut u) = self.unreachable.lock() {
                    u.insert(n.clone(), why.clone());
                }
                Ok(Some(observed(rec, &n, vec![why])))
            }
            other => other,
        }
    }

    async fn find(&self, _: &Address, _: &Attrs, _: bool) -> Result<Option<Live>, ProviderError> {
        // Converging is idempotent: an interrupted create is simply done again.
        Ok(None)
    }

    async fn create(&self, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        self.apply(addr, None, attrs).await
    }

    async fn update(
        &self,
        addr: &Address,
        rec: &Record,
        attrs: &Attrs,
    ) -> Result<Live, ProviderError> {
        self.apply(addr, Some(rec), attrs).await
    }

    /// A node step goes with what it put on the node; a lost machine (it
    /// does not answer) has nothing left to stop, so only what the cluster
    /// keeps about it is removed (its Node object, its etcd membership).
    async fn delete(&self, addr: &Address, rec: &Record) -> Result<(), ProviderError> {
        let lost = match addr.kind() {
            "etcd" | "etcd_backup" | "kubelet" | "control_plane" => {
                let t = target(&rec.attrs, None)?;
                let lost = match self.known_unreachable(&t.node) {
                    Some(_) => true,
                    None => self.ssh.host_key(&t).await.is_err(),
                };
                if lost {
                    if let Ok(mut u) = self.unreachable.lock() {
                        u.entry(t.node.clone())
                            .or_insert_with(|| "unreachable".into());
                    }
                    tracing::warn!(address = %addr, node = %t.label(), "the machine does not answer: nothing is stopped on it");
                }
                lost
            }
            _ => false,
        };
        match addr.kind() {
            "etcd" => etcd::delete(self, rec, lost).await,
            "kubelet" => kubelet::delete(self, rec, lost).await,
            "etcd_backup" | "control_plane" if lost => Ok(()),
            "etcd_backup" => backup::delete(self, rec).await,
            "control_plane" => control_plane::delete(self, rec).await,
            "kubeconfig" => kubeconfig::delete(rec),
            // The machine goes with its server; a static node keeps what it has.
            _ => Ok(()),
        }
    }

    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError> {
        Ok(Vec::new())
    }

    async fn status(&self, records: &BTreeMap<Address, Record>) -> Option<Value> {
        status::status(self, records).await
    }

    async fn task(
        &self,
        task: &Task,
        records: &BTreeMap<Address, Record>,
    ) -> Option<Result<Value, ProviderError>> {
        Some(match task {
            Task::EtcdSnapshot => snapshot::take(self, records).await,
            Task::EtcdSnapshots => snapshot::list(self, records).await,
            Task::EtcdRestore { snapshot } => restore::restore(self, records, snapshot).await,
        })
    }
}

impl ClusterProvider {
    async fn read_kind(&self, addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError> {
        match addr.kind() {
            "cluster_pki" => Ok(Some(observed(
                rec,
                rec.id.as_deref().unwrap_or("pki"),
                if self.rotate_ca {
                    vec!["new CAs requested (`certs rotate --ca`)".into()]
                } else {
                    vec![]
                },
            ))),
            "host" => host::read(self, rec).await,
            "etcd" => etcd::read(self, rec).await,
            "etcd_backup" => backup::read(self, rec).await,
            "control_plane" => control_plane::read(self, rec).await,
            "kubelet" => kubelet::read(self, rec).await,
            "kubeconfig" => kubeconfig::read(rec, self.renew_before),
            k => Err(ProviderError::fatal(format!(
                "the cluster layer has no kind `{k}`"
            ))),
        }
    }

    fn remember_member(&self, t: Target) {
        if let Ok(mut m) = self.members.lock() {
            m.insert(t.node.clone(), t);
        }
    }

    /// The etcd members seen in this run other than `node`.
    fn other_members(&self, node: &str) -> Vec<Target> {
        self.members
            .lock()
            .map(|m| m.values().filter(|t| t.node != node).cloned().collect())
            .unwrap_or_default()
    }

    /// Why `node` did not answer earlier in this run, if it did not.
    fn known_unreachable(&self, node: &str) -> Option<String> {
        self.unreachable.lock().ok()?.get(node).cloned()
    }

    async fn apply(
        &self,
        addr: &Address,
        rec: Option<&Record>,
        attrs: &Attrs,
    ) -> Result<Live, ProviderError> {
        let r = match addr.kind() {
            "cluster_pki" => pki_resource::apply(rec, attrs, self.rotate_ca),
            "host" => host::apply(self, rec, attrs).await,
            "etcd" => etcd::apply(self, attrs).await,
            "etcd_backup" => backup::apply(self, attrs).await,
            "control_plane" => control_plane::apply(self, attrs).await,
            "kubelet" => kubelet::apply(self, attrs).await,
            "kubeconfig" => kubeconfig::apply(attrs),
            k => Err(ProviderError::fatal(format!(
                "the cluster layer has no kind `{k}`"
            ))),
        };
        r.map_err(|e| e.context(addr))
    }
}
