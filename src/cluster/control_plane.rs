//! `control_plane.<node>`: kube-apiserver, kube-controller-manager and
//! kube-scheduler as systemd units, behind two health gates: etcd answers
//! (with quorum) before they start, and the API server's `/readyz` says ok
//! before the node counts as done. Components reach the API on 127.0.0.1;
//! their kubeconfigs point at certificate files, so they never change.

use std::net::IpAddr;

use serde_json::Value;

use super::kubeconfig::{self, Cred};
use super::pki::{Leaf, Usage};
use super::pki_resource::{CA, ETCD_CA, FRONT_PROXY_CA};
use super::remote::{self, Cert, File};
use super::{Attrs, ClusterProvider, flags, str_attr, target};
use crate::provider::{Live, ProviderError};
use crate::ssh::Target;
use crate::state::Record;

const K: &str = "/etc/kubernetes";
const PKI: &str = "/etc/kubernetes/pki";
const UNITS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The first address of the Service range: the `kubernetes` Service.
pub fn service_ip(attrs: &Attrs) -> Result<IpAddr, ProviderError> {
    let cidr: ipnet::IpNet = str_attr(attrs, "service_cidr")?
        .parse()
        .map_err(|e| ProviderError::fatal(format!("cluster.service_cidr: {e}")))?;
    cidr.hosts()
        .next()
        .ok_or_else(|| ProviderError::fatal("cluster.service_cidr has no addresses"))
}

fn public_files(t: &Target, attrs: &Attrs) -> Result<Vec<File>, ProviderError> {
    let v = super::version(attrs)?;
    let ip = &t.address;
    let etcd: Vec<String> = super::strings(attrs, "etcd", Some("address"))
        .iter()
        .map(|a| format!("https://{a}:2379"))
        .collect();
    let p = |f: &str| format!("{PKI}/{f}");
    let api = [
        ("--advertise-address", ip.clone()),
        ("--allow-privileged", "true".into()),
        ("--authorization-mode", "Node,RBAC".into()),
        ("--bind-address", "0.0.0.0".into()),
        ("--secure-port", "6443".into()),
        ("--insecure-port", "0".into()),
        ("--client-ca-file", p("ca.crt")),
        ("--enable-admission-plugins", "NodeRestriction".into()),
        ("--etcd-cafile", p("etcd-ca.crt")),
        ("--etcd-certfile", p("apiserver-etcd-client.crt")),
        ("--etcd-keyfile", p("apiserver-etcd-client.key")),
        ("--etcd-servers", etcd.join(",")),
        (
            "--kubelet-client-certificate",
            p("apiserver-kubelet-client.crt"),
        ),
        ("--kubelet-client-key", p("apiserver-kubelet-client.key")),
        (
            "--kubelet-preferred-address-types",
            "InternalIP,Hostname".into(),
        ),
        ("--proxy-client-cert-file", p("front-proxy-client.crt")),
        ("--proxy-client-key-file", p("front-proxy-client.key")),
        ("--requestheader-allowed-names", "front-proxy-client".into()),
        ("--requestheader-client-ca-file", p("front-proxy-ca.crt")),
        (
            "--requestheader-extra-headers-prefix",
            "X-Remote-Extra-".into(),
        ),
        ("--requestheader-group-headers", "X-Remote-Group".into()),
        ("--requestheader-username-headers", "X-Remote-User".into()),
        (
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local".into(),
        ),
        ("--service-account-key-file", p("sa.pub")),
        ("--service-account-signing-key-file", p("sa.key")),
        (
            "--service-cluster-ip-range",
            str_attr(attrs, "service_cidr")?.to_owned(),
        ),
        ("--tls-cert-file", p("apiserver.crt")),
        ("--tls-private-key-file", p("apiserver.key")),
    ];
    let cm_conf = format!("{K}/controller-manager.conf");
    let cm = [
        ("--kubeconfig", cm_conf.clone()),
        ("--authentication-kubeconfig", cm_conf.clone()),
        ("--authorization-kubeconfig", cm_conf.clone()),
        ("--bind-address", "127.0.0.1".into()),
        ("--port", "0".into()),
        ("--client-ca-file", p("ca.crt")),
        ("--cluster-name", "kubernetes".into()),
        ("--cluster-signing-cert-file", p("ca.crt")),
        ("--cluster-signing-key-file", p("ca.key")),
        ("--root-ca-file", p("ca.crt")),
        ("--requestheader-client-ca-file", p("front-proxy-ca.crt")),
        ("--service-account-private-key-file", p("sa.key")),
        ("--use-service-account-credentials", "true".into()),
        ("--controllers", "*,bootstrapsigner,tokencleaner".into()),
        ("--leader-elect", "true".into()),
        ("--allocate-node-cidrs", "false".into()),
        (
            "--service-cluster-ip-range",
            str_attr(attrs, "service_cidr")?.to_owned(),
        ),
    ];
    let sch_conf = format!("{K}/scheduler.conf");
    let sch = [
        ("--kubeconfig", sch_conf.clone()),
        ("--authentication-kubeconfig", sch_conf.clone()),
        ("--authorization-kubeconfig", sch_conf.clone()),
        ("--bind-address", "127.0.0.1".into()),
        ("--port", "0".into()),
        ("--leader-elect", "true".into()),
    ];
    let unit = |c: &str, f: &[(&str, String)]| {
        File::new(
            format!("/etc/systemd/system/{c}.service"),
            0o644,
            flags::unit(
                &format!("{c} (provisioner)"),
                &format!("/usr/local/bin/{c}"),
                &flags::render(c, &v, f),
                &[],
                "",
            ),
        )
    };
    let local = "https://127.0.0.1:6443";
    let ca = Cred::Path(p("ca.crt"));
    let conf = |user: &str| {
        kubeconfig::render(
            "kubernetes",
            local,
            &ca,
            user,
            &Cred::Path(p(&format!("{user}.crt"))),
            &Cred::Path(p(&format!("{user}.key"))),
        )
    };
    Ok(vec![
        File::new(p("ca.crt"), 0o644, str_attr(attrs, "ca")?),
        File::new(p("etcd-ca.crt"), 0o644, str_attr(attrs, "etcd_ca")?),
        File::new(
            p("front-proxy-ca.crt"),
            0o644,
            str_attr(attrs, "front_proxy_ca")?,
        ),
        File::new(p("sa.pub"), 0o644, str_attr(attrs, "sa_pub")?),
        File::new(cm_conf.clone(), 0o600, conf("controller-manager")),
        File::new(sch_conf.clone(), 0o600, conf("scheduler")),
        File::new(format!("{K}/admin.conf"), 0o600, conf("admin")),
        unit("kube-apiserver", &api),
        unit("kube-controller-manager", &cm),
        unit("kube-scheduler", &sch),
    ])
}

fn certs<'a>(t: &Target, attrs: &'a Attrs) -> Result<Vec<Cert<'a>>, ProviderError> {
    let days = super::cert_days(attrs);
    let mut ips: Vec<IpAddr> = vec![service_ip(attrs)?, [127, 0, 0, 1].into()];
    let mut dns: Vec<String> = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ]
    .map(String::from)
    .to_vec();
    dns.push(t.node.clone());
    let mut names = super::strings(attrs, "control_addresses", None);
    names.extend(
        attrs
            .get("api_endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned),
    );
    names.push(t.address.clone());
    for n in names {
        match n.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.contains(&n) => dns.push(n),
            Err(_) => {}
        }
    }
    let leaf = |cn: &str, o: &[&str], usage: Usage| Leaf {
        common_name: cn.into(),
        organizations: o.iter().map(|s| s.to_string()).collect(),
        dns_names: vec![],
        ips: vec![],
        usage,
        days,
    };
    let (ca, ca_key) = (str_attr(attrs, "ca")?, str_attr(attrs, "ca_key")?);
    let (eca, eca_key) = (str_attr(attrs, "etcd_ca")?, str_attr(attrs, "etcd_ca_key")?);
    let (fca, fca_key) = (
        str_attr(attrs, "front_proxy_ca")?,
        str_attr(attrs, "front_proxy_ca_key")?,
    );
    let kube = |name: &'a str, leaf: Leaf| Cert {
        name,
        ca_name: CA,
        ca_crt: ca,
        ca_key,
        leaf,
    };
    Ok(vec![
        kube(
            "apiserver",
            Leaf {
                dns_names: dns,
                ips,
                ..leaf("kube-apiserver", &[], Usage::Server)
            },
        ),
        kube(
            "apiserver-kubelet-client",
            leaf(
                "kube-apiserver-kubelet-client",
                &["system:masters"],
                Usage::Client,
            ),
        ),
        kube(
            "controller-manager",
            leaf("system:kube-controller-manager", &[], Usage::Client),
        ),
        kube(
            "scheduler",
            leaf("system:kube-scheduler", &[], Usage::Client),
        ),
        kube(
            "admin",
            leaf("provisioner-node-admin", &["system:masters"], Usage::Client),
        ),
        Cert {
            name: "apiserver-etcd-client",
            ca_name: ETCD_CA,
            ca_crt: eca,
            ca_key: eca_key,
            leaf: leaf("kube-apiserver-etcd-client", &[], Usage::Client),
        },
        Cert {
            name: "front-proxy-client",
            ca_name: FRONT_PROXY_CA,
            ca_crt: fca,
            ca_key: fca_key,
            leaf: leaf("front-proxy-client", &[], Usage::Client),
        },
    ])
}

pub async fn apply(p: &ClusterProvider, attrs: &Attrs) -> Result<Live, ProviderError> {
    let t = target(attrs, None)?;
    let files = public_files(&t, attrs)?;
    let unit_paths: Vec<String> = files
        .iter()
        .filter(|f| f.path.ends_with(".service"))
        .map(|f| f.path.clone())
        .collect();
    let mut secret = vec![
        File::new(format!("{PKI}/ca.key"), 0o600, str_attr(attrs, "ca_key")?),
        File::new(format!("{PKI}/sa.key"), 0o600, str_attr(attrs, "sa_key")?),
    ];
    secret.extend(files);
    let changed = remote::sync(&p.ssh, &t, secret).await?;
    let (issued, expiry) =
        remote::certs(&p.ssh, &t, PKI, certs(&t, attrs)?, p.renew_before).await?;

    // Gate 1: etcd has quorum (any member answering /health does only with it).
    let checks: Vec<String> = super::strings(attrs, "etcd", Some("address"))
        .iter()
        .map(|a| format!("curl -sf --max-time 3 --cacert {PKI}/etcd-ca.crt --cert {PKI}/apiserver-etcd-client.crt --key {PKI}/apiserver-etcd-client.key https://{a}:2379/health | grep -q '\"health\":\"true\"'"))
        .collect();
    remote::gate(
        &p.ssh,
        &t,
        "etcd quorum",
        &format!("{{ {}; }}", checks.join(" || ")),
        p.timeout,
        "check `journalctl -u etcd` on the etcd nodes",
    )
    .await?;

    // Components share the PKI and kubeconfigs: any of those changing restarts them all;
    // otherwise only the one whose unit changed.
    let shared = !issued.is_empty() || changed.iter().any(|c| !c.ends_with(".service"));
    let restart: Vec<(&str, bool)> = UNITS
        .iter()
        .map(|u| {
            (
                *u,
                shared
                    || changed
                        .iter()
                        .any(|c| c.ends_with(&format!("/{u}.service"))),
            )
        })
        .collect();
    remote::units(
        &p.ssh,
        &t,
        &restart,
        changed.iter().any(|c| unit_paths.contains(c)),
        false,
    )
    .await?;
    // Gate 2: the API server says it is ready.
    ready(p, &t).await?;
    let mut live = super::applied(&t, attrs, expiry);
    live.outputs
        .insert("api".into(), format!("https://{}:6443", t.address).into());
    Ok(live)
}

/// The API server on `t` says `/readyz` ok.
pub async fn ready(p: &ClusterProvider, t: &Target) -> Result<(), ProviderError> {
    remote::gate(
        &p.ssh,
        t,
        "kube-apiserver /readyz",
        &format!("curl -sf --max-time 5 --cacert {PKI}/ca.crt https://127.0.0.1:6443/readyz"),
        p.timeout,
        "see `journalctl -u kube-apiserver` on the node",
    )
    .await
}

pub async fn read(p: &ClusterProvider, rec: &Record) -> Result<Option<Live>, ProviderError> {
    super::read_step(p, rec, |t| public_files(t, &rec.attrs), &UNITS).await
}

/// Stop the control plane on this node (its etcd member leaves separately, after).
pub async fn delete(p: &ClusterProvider, rec: &Record) -> Result<(), ProviderError> {
    let t = target(&rec.attrs, None)?;
    if let Err(e) = p
        .ssh
        .run(&t, "systemctl disable --now -q kube-apiserver kube-controller-manager kube-scheduler 2>/dev/null || true")
        .await
    {
        tracing::warn!(node = %t.node, "could not stop the control plane: {e}");
    }
    Ok(())
}
