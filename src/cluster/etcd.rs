//! `etcd.<node>`: an etcd member with mutual TLS on peers and clients. The
//! first members start together (`new`); a member added to a running cluster
//! is announced with `member add` by a member that answers, then started as
//! `existing`; a node already a member (listed, not started) just starts.
//! Deleting one removes it from the cluster first, then stops it.

use std::time::Duration;

use serde_json::Value;

use super::pki::{Leaf, Usage};
use super::pki_resource::ETCD_CA;
use super::remote::{self, Cert, File};
use super::{Attrs, ClusterProvider, flags, str_attr, target};
use crate::provider::{Live, ProviderError};
use crate::ssh::Target;
use crate::ssh::quote::q;
use crate::state::Record;

const PKI: &str = "/etc/etcd/pki";
const UNIT: &str = "/etc/systemd/system/etcd.service";
const INITIAL: &str = "/etc/etcd/initial.env";

/// etcdctl as a client of this node's member (its server certificate is also a client's).
pub fn etcdctl(endpoints: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints={endpoints} --cacert={PKI}/ca.crt --cert={PKI}/server.crt --key={PKI}/server.key --command-timeout=5s"
    )
}

fn members(attrs: &Attrs) -> Vec<(String, String)> {
    attrs
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m.get("name")?.as_str()?.to_owned(),
                m.get("address")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn files(t: &Target, attrs: &Attrs) -> Result<Vec<File>, ProviderError> {
    let ip = &t.address;
    let flags = [
        ("--name", t.node.clone()),
        ("--data-dir", "/var/lib/etcd".into()),
        (
            "--listen-client-urls",
            format!("https://{ip}:2379,https://127.0.0.1:2379"),
        ),
        ("--advertise-client-urls", format!("https://{ip}:2379")),
        ("--listen-peer-urls", format!("https://{ip}:2380")),
        (
            "--initial-advertise-peer-urls",
            format!("https://{ip}:2380"),
        ),
        ("--listen-metrics-urls", "http://127.0.0.1:2381".into()),
        ("--cert-file", format!("{PKI}/server.crt")),
        ("--key-file", format!("{PKI}/server.key")),
        ("--client-cert-auth", "true".into()),
        ("--trusted-ca-file", format!("{PKI}/ca.crt")),
        ("--peer-cert-file", format!("{PKI}/peer.crt")),
        ("--peer-key-file", format!("{PKI}/peer.key")),
        ("--peer-client-cert-auth", "true".into()),
        ("--peer-trusted-ca-file", format!("{PKI}/ca.crt")),
        ("--snapshot-count", "10000".into()),
    ];
    let v = super::version(attrs)?;
    let unit = flags::unit(
        "etcd (provisioner)",
        "/usr/local/bin/etcd",
        &flags::render("etcd", &v, &flags),
        &[],
        // The first start's cluster membership; ignored once the data dir exists.
        // Its own user, as the CIS benchmark asks (data directory owned by etcd).
        &format!("Type=notify\nUser=etcd\nEnvironmentFile=-{INITIAL}\nTimeoutStartSec=0\n"),
    );
    Ok(vec![
        File::new(format!("{PKI}/ca.crt"), 0o644, str_attr(attrs, "ca")?),
        File::new(UNIT, 0o644, unit),
    ])
}

fn certs<'a>(t: &Target, attrs: &'a Attrs) -> Result<Vec<Cert<'a>>, ProviderError> {
    let days = super::cert_days(attrs);
    let ip = t.address.parse().map_err(|_| {
        ProviderError::fatal(format!(
            "{}: etcd needs an IP address, not `{}`",
            t.node, t.address
        ))
    })?;
    let leaf = |cn: &str, ips: Vec<std::net::IpAddr>, dns: Vec<String>| Leaf {
        common_name: cn.into(),
        organizations: vec![],
        dns_names: dns,
        ips,
        usage: Usage::Both,
        days,
    };
    let (ca_crt, ca_key) = (str_attr(attrs, "ca")?, str_attr(attrs, "ca_key")?);
    Ok(vec![
        Cert {
            name: "server",
            ca_name: ETCD_CA,
            ca_crt,
            ca_key,
            leaf: leaf(
                &t.node,
                vec![ip, [127, 0, 0, 1].into()],
                vec![t.node.clone(), "localhost".into()],
            ),
        },
        Cert {
            name: "peer",
            ca_name: ETCD_CA,
            ca_crt,
            ca_key,
            leaf: leaf(&t.node, vec![ip], vec![t.node.clone()]),
        },
    ])
}

/// The members a running cluster reports, asked of the first other member
/// that answers: (name, peer URL) each; None when no other member answers.
async fn running(
    p: &ClusterProvider,
    t: &Target,
    others: &[(String, String)],
) -> Result<Option<Vec<(String, String, u64)>>, ProviderError> {
    for (_, addr) in others {
        let out = p
            .ssh
            .try_run(
                t,
                &format!(
                    "{} member list -w json",
                    etcdctl(&format!("https://{addr}:2379"))
                ),
                Duration::from_secs(20),
            )
            .await?;
        if out.status != 0 {
            continue;
        }
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let list = v
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    m.get("peerURLs")
                        .and_then(|u| u.get(0))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    m.get("ID").and_then(Value::as_u64).unwrap_or_default(),
                )
            })
            .collect();
        return Ok(Some(list));
    }
    Ok(None)
}

/// The `etcd` system user owns the data and the member's keys (the files
/// are replaced as root; ownership is set again, which rewrites nothing).
const OWNER: &str = "getent passwd etcd >/dev/null || useradd --system --home-dir /var/lib/etcd --no-create-home --shell /usr/sbin/nologin etcd; \
                     mkdir -p -m 0700 /var/lib/etcd; chown -R etcd:etcd /var/lib/etcd /etc/etcd/pki";

pub async fn apply(p: &ClusterProvider, attrs: &Attrs) -> Result<Live, ProviderError> {
    let t = target(attrs, None)?;
    p.remember_member(t.clone());
    let mut changed = remote::sync(&p.ssh, &t, files(&t, attrs)?).await?;
    let (issued, expiry) =
        remote::certs(&p.ssh, &t, PKI, certs(&t, attrs)?, p.renew_before).await?;
    changed.extend(issued);
    let me = format!("https://{}:2380", t.address);
    let others: Vec<(String, String)> = members(attrs)
        .into_iter()
        .filter(|(n, _)| *n != t.node)
        .collect();
    let fresh = p
        .ssh
        .try_run(&t, "test -d /var/lib/etcd/member", Duration::from_secs(10))
        .await?
        .status
        != 0;
    let mut joining = false;
    if fresh {
        let (state, cluster) = match running(p, &t, &others).await? {
            None => {
                let all: Vec<String> = members(attrs)
                    .iter()
                    .map(|(n, a)| format!("{n}=https://{a}:2380"))
                    .collect();
                ("new", all.join(","))
            }
            Some(list) => {
                joining = true;
                let mut list: Vec<(String, String)> =
                    list.into_iter().map(|(n, u, _)| (n, u)).collect();
                if !list.iter().any(|(_, u)| *u == me) {
                    // Announce this member to the cluster, through one that answers.
                    let (_, via) = &others[0];
                    p.ssh
                        .run(
                            &t,
                            &format!(
                                "{} member add {} --peer-urls={}",
                                etcdctl(&format!("https://{via}:2379")),
                                q(&t.node),
                                q(&me)
                            ),
                        )
                        .await?;
                    list.push((t.node.clone(), me.clone()));
                }
                // Members not started yet have no name; only this one may be among them.
                let all: Vec<String> = list
                    .iter()
                    .filter_map(|(n, u)| match (*u == me, n.is_empty()) {
                        (true, _) => Some(format!("{}={u}", t.node)),
                        (false, false) => Some(format!("{n}={u}")),
                        (false, true) => None,
                    })
                    .collect();
                ("existing", all.join(","))
            }
        };
        let env = format!(
            "ETCD_INITIAL_CLUSTER={cluster}\nETCD_INITIAL_CLUSTER_STATE={state}\nETCD_INITIAL_CLUSTER_TOKEN=provisioner\n"
        );
        changed.extend(remote::sync(&p.ssh, &t, vec![File::new(INITIAL, 0o644, env)]).await?);
    }
    p.ssh.run(&t, OWNER).await?;
    let unit_changed = !changed.is_empty();
    remote::units(
        &p.ssh,
        &t,
        &[("etcd", unit_changed)],
        changed.iter().any(|c| c == UNIT),
        !joining,
    )
    .await?;
    if joining {
        healthy(p, &t).await?;
    }
    let mut live = super::applied(&t, attrs, expiry);
    live.outputs.insert("peer_url".into(), me.into());
    Ok(live)
}

/// The health gate: this member answers `endpoint health` (which needs quorum).
pub async fn healthy(p: &ClusterProvider, t: &Target) -> Result<(), ProviderError> {
    remote::gate(
        &p.ssh,
        t,
        "etcd member health",
        &format!(
            "{} endpoint health",
            etcdctl(&format!("https://{}:2379", t.address))
        ),
        p.timeout,
        "see `journalctl -u etcd` on the node",
    )
    .await
}

pub async fn read(p: &ClusterProvider, rec: &Record) -> Result<Option<Live>, ProviderError> {
    if let Ok(t) = target(&rec.attrs, None) {
        p.remember_member(t);
    }
    super::read_step(p, rec, |t| files(t, &rec.attrs), &["etcd"]).await
}

/// Leave the cluster, then stop. etcdctl runs on this node, or, when its
/// machine is lost, on another member that answers; a lost node has nothing
/// left to stop.
pub async fn delete(p: &ClusterProvider, rec: &Record, lost: bool) -> Result<(), ProviderError> {
    let t = target(&rec.attrs, None)?;
    let others: Vec<(String, String)> = members(&rec.attrs)
        .into_iter()
        .filter(|(n, _)| *n != t.node)
        .collect();
    let me = format!("https://{}:2380", t.address);
    let runners = if lost {
        p.other_members(&t.node)
    } else {
        vec![t.clone()]
    };
    let mut removed = false;
    for r in &runners {
        let Ok(Some(list)) = running(p, r, &others).await else {
            continue;
        };
        if let Some((_, _, id)) = list.iter().find(|(_, u, _)| *u == me) {
            let via = others.first().map(|(_, a)| a.clone()).unwrap_or_default();
            p.ssh
                .run(
                    r,
                    &format!(
                        "{} member remove {id:x}",
                        etcdctl(&format!("https://{via}:2379"))
                    ),
                )
                .await?;
        }
        removed = true;
        break;
    }
    if lost {
        if !removed && !others.is_empty() {
            tracing::warn!(node = %t.node, "its machine does not answer and no other member does: no member was removed");
        }
        return Ok(());
    }
    p.ssh
        .run(&t, "systemctl disable --now -q etcd 2>/dev/null || true; rm -rf /var/lib/etcd/member /etc/etcd/initial.env")
        .await?;
    Ok(())
}
