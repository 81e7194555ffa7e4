//! `kubelet.<node>`: what makes a machine a Kubernetes node — containerd
//! (with runc), the CNI bridge with this node's pod range, routes to the other
//! nodes' pod ranges, kubelet and kube-proxy — gated on the kubelet's health.
//! Every node runs one; control-plane-only nodes register with a taint.

use serde_json::{Value, json};

use super::kubeconfig::{self, Cred};
use super::pki::{Leaf, Usage};
use super::pki_resource::CA;
use super::remote::{self, Cert, File};
use super::{Attrs, ClusterProvider, flags, str_attr, target};
use crate::provider::{Live, ProviderError};
use crate::ssh::Target;
use crate::ssh::quote::q;
use crate::state::Record;

const K: &str = "/etc/kubernetes";
const PKI: &str = "/etc/kubernetes/pki/node";
const UNITS: [&str; 4] = ["containerd", "provisioner-routes", "kubelet", "kube-proxy"];

fn unit_path(u: &str) -> String {
    format!("/etc/systemd/system/{u}.service")
}

fn public_files(t: &Target, attrs: &Attrs) -> Result<Vec<File>, ProviderError> {
    let v = super::version(attrs)?;
    let ip = &t.address;
    let svc: ipnet::IpNet = str_attr(attrs, "service_cidr")?
        .parse()
        .map_err(|e| ProviderError::fatal(format!("cluster.service_cidr: {e}")))?;
    let dns = super::dns_ip(&svc)
        .ok_or_else(|| ProviderError::fatal("cluster.service_cidr is too small for a DNS address"))?
        .to_string();
    let pod_cidr = str_attr(attrs, "pod_cidr")?;
    let cluster_cidr = str_attr(attrs, "cluster_cidr")?;
    let systemd = str_attr(attrs, "cgroup_driver")? == "systemd";
    let pause = str_attr(attrs, "pause_image")?;
    let api = format!("https://{}:6443", str_attr(attrs, "api_endpoint")?);

    let containerd = format!(
        "# Written by provisioner.\nversion = 2\nroot = \"/var/lib/containerd\"\nstate = \"/run/containerd\"\n\
         [grpc]\n  address = \"/run/containerd/containerd.sock\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{pause}\"\n  restrict_oom_score_adj = {oom}\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = {systemd}\n  BinaryName = \"/usr/local/bin/runc\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/opt/cni/bin\"\n  conf_dir = \"/etc/cni/net.d\"\n",
        oom = attrs
            .get("restrict_oom_score_adj")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    let cni = json!({
        "cniVersion": "0.4.0", "name": "provisioner",
        "plugins": [
            { "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
              "ipam": { "type": "host-local", "ranges": [[{ "subnet": pod_cidr }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    let mut kcfg = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "cgroupDriver": if systemd { "systemd" } else { "cgroupfs" },
        "port": 10250, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "authentication": { "anonymous": { "enabled": false }, "webhook": { "enabled": true },
                            "x509": { "clientCAFile": format!("{K}/pki/ca.crt") } },
        "authorization": { "mode": "Webhook" },
        "clusterDomain": "cluster.local", "clusterDNS": [dns],
        "serializeImagePulls": false,
    });
    if let Some(over) = attrs.get("kubelet_config").filter(|v| v.is_object()) {
        crate::charts::values::merge(&mut kcfg, over);
    }
    let proxy = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": { "kubeconfig": format!("{K}/kube-proxy.conf") },
        "mode": "iptables", "clusterCIDR": cluster_cidr, "hostnameOverride": t.node,
        "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
        // leave the kernel's conntrack table size alone (containers cannot set it)
        "conntrack": { "maxPerCore": 0, "min": 0 },
        // Service traffic is SNATed, so hairpin and node-local paths work without br_netfilter
        "iptables": { "masqueradeAll": true },
    });
    let mut routes = String::from(
        "#!/bin/sh\n# Written by provisioner: routes to the other nodes' pod ranges.\nset -e\n",
    );
    for r in attrs
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(c), Some(via)) = (
            r.get("cidr").and_then(Value::as_str),
            r.get("via").and_then(Value::as_str),
        ) {
            routes.push_str(&format!("ip route replace {} via {}\n", q(c), q(via)));
        }
    }
    let svc_cidr = str_attr(attrs, "service_cidr")?;
    routes.push_str(&format!(
        "# Service addresses are rewritten by kube-proxy, but the kernel must first have a route.\n\
         ip route get {svc} >/dev/null 2>&1 || ip route replace {svc_cidr} dev \"$(ip -o -4 addr show | awk -v a={ip} '$4 ~ \"^\"a\"/\" {{print $2; exit}}')\"\n\
         # Pods reach beyond the cluster as this node.\n\
         iptables -t nat -C POSTROUTING -s {pod_cidr} ! -d {cluster_cidr} -j MASQUERADE 2>/dev/null || iptables -t nat -A POSTROUTING -s {pod_cidr} ! -d {cluster_cidr} -j MASQUERADE\n"
    ));
    let mut kubelet_flags = vec![
        ("--config", format!("{K}/kubelet-config.yaml")),
        ("--kubeconfig", format!("{K}/kubelet.conf")),
        ("--container-runtime", "remote".into()),
        (
            "--container-runtime-endpoint",
            "unix:///run/containerd/containerd.sock".into(),
        ),
        ("--pod-infra-container-image", pause.to_owned()),
        ("--hostname-override", t.node.clone()),
        ("--node-ip", ip.clone()),
    ];
    if attrs
        .get("taint_control_plane")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        let role = if (v.major, v.minor) >= (1, 24) {
            "control-plane"
        } else {
            "master"
        };
        kubelet_flags.push((
            "--register-with-taints",
            format!("node-role.kubernetes.io/{role}=:NoSchedule"),
        ));
    }
    let ca = Cred::Path(format!("{K}/pki/ca.crt"));
    let conf = |user: &str| {
        kubeconfig::render(
            "kubernetes",
            &api,
            &ca,
            user,
            &Cred::Path(format!("{PKI}/{user}.crt")),
            &Cred::Path(format!("{PKI}/{user}.key")),
        )
    };
    let json = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    Ok(vec![
        File::new(format!("{K}/pki/ca.crt"), 0o644, str_attr(attrs, "ca")?),
        File::new("/etc/containerd/config.toml", 0o644, containerd),
        File::new("/etc/cni/net.d/10-provisioner.conflist", 0o644, json(&cni)),
        File::new(format!("{K}/kubelet-config.yaml"), 0o644, json(&kcfg)),
        File::new(format!("{K}/kube-proxy-config.yaml"), 0o644, json(&proxy)),
        File::new(format!("{K}/kubelet.conf"), 0o600, conf("kubelet")),
        File::new(format!("{K}/kube-proxy.conf"), 0o600, conf("kube-proxy")),
        File::new("/usr/local/lib/provisioner/routes.sh", 0o755, routes),
        File::new(
            unit_path("containerd"),
            0o644,
            flags::unit(
                "containerd (provisioner)",
                "/usr/local/bin/containerd",
                &[],
                &[],
                "Type=notify\nDelegate=yes\nKillMode=process\nOOMScoreAdjust=-999\n",
            ),
        ),
        File::new(
            unit_path("provisioner-routes"),
            0o644,
            "# Written by provisioner.\n[Unit]\nDescription=pod network routes (provisioner)\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/lib/provisioner/routes.sh\n\n[Install]\nWantedBy=multi-user.target\n",
        ),
        File::new(
            unit_path("kubelet"),
            0o644,
            flags::unit(
                "kubelet (provisioner)",
                "/usr/local/bin/kubelet",
                &flags::render("kubelet", &v, &kubelet_flags),
                &["containerd.service", "provisioner-routes.service"],
                "Requires=containerd.service\n",
            ),
        ),
        File::new(
            unit_path("kube-proxy"),
            0o644,
            flags::unit(
                "kube-proxy (provisioner)",
                "/usr/local/bin/kube-proxy",
                &[format!("--config={K}/kube-proxy-config.yaml")],
                &["provisioner-routes.service"],
                "",
            ),
        ),
    ])
}

fn certs<'a>(t: &Target, attrs: &'a Attrs) -> Result<Vec<Cert<'a>>, ProviderError> {
    let days = super::cert_days(attrs);
    let (ca_crt, ca_key) = (str_attr(attrs, "ca")?, str_attr(attrs, "ca_key")?);
    let client = |cn: String, o: &[&str]| Leaf {
        common_name: cn,
        organizations: o.iter().map(|s| s.to_string()).collect(),
        dns_names: vec![],
        ips: vec![],
        usage: Usage::Client,
        days,
    };
    Ok(vec![
        Cert {
            name: "kubelet",
            ca_name: CA,
            ca_crt,
            ca_key,
            leaf: client(format!("system:node:{}", t.node), &["system:nodes"]),
        },
        Cert {
            name: "kube-proxy",
            ca_name: CA,
            ca_crt,
            ca_key,
            leaf: client("system:kube-proxy".into(), &[]),
        },
    ])
}

pub async fn apply(p: &ClusterProvider, attrs: &Attrs) -> Result<Live, ProviderError> {
    let t = target(attrs, None)?;
    let changed = remote::sync(&p.ssh, &t, public_files(&t, attrs)?).await?;
    let (issued, expiry) =
        remote::certs(&p.ssh, &t, PKI, certs(&t, attrs)?, p.renew_before).await?;
    let touched = |u: &str| match u {
        "containerd" => changed
            .iter()
            .any(|c| c == "/etc/containerd/config.toml" || *c == unit_path(u)),
        "provisioner-routes" => changed
            .iter()
            .any(|c| c.ends_with("routes.sh") || *c == unit_path(u)),
        "kubelet" => {
            !issued.is_empty()
                || changed.iter().any(|c| {
                    c.contains("kubelet") || c.ends_with("ca.crt") || c.contains("containerd")
                })
        }
        _ => {
            !issued.is_empty()
                || changed
                    .iter()
                    .any(|c| c.contains("kube-proxy") || c.ends_with("ca.crt"))
        }
    };
    let restart: Vec<(&str, bool)> = UNITS.iter().map(|u| (*u, touched(u))).collect();
    remote::units(
        &p.ssh,
        &t,
        &restart,
        changed.iter().any(|c| c.ends_with(".service")),
        false,
    )
    .await?;
    // Images the site provides as archives (airgapped, the lab), imported once per content.
    for img in super::strings(attrs, "preload_images", None)
        .iter()
        .map(|n| super::artifacts::install_path(n))
    {
        let script = format!(
            "set -e; f={f}; m=\"$f.imported\"; s=$(sha256sum \"$f\" | cut -d' ' -f1); \
             [ \"$(cat \"$m\" 2>/dev/null)\" = \"$s\" ] && exit 0; \
             for i in $(seq 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done; \
             ctr -n k8s.io images import \"$f\" >/dev/null; echo \"$s\" > \"$m\"",
            f = q(&img)
        );
        p.ssh.run(&t, &script).await?;
    }
    remote::gate(
        &p.ssh,
        &t,
        "kubelet health",
        "curl -sf --max-time 3 http://127.0.0.1:10248/healthz",
        p.timeout,
        "see `journalctl -u kubelet` on the node",
    )
    .await?;
    Ok(super::applied(&t, attrs, expiry))
}

pub async fn read(p: &ClusterProvider, rec: &Record) -> Result<Option<Live>, ProviderError> {
    super::read_step(p, rec, |t| public_files(t, &rec.attrs), &UNITS).await
}

/// Drain the node through the API (cordon, evict, delete the Node), then stop
/// what runs on it. A machine that is lost cannot be drained (its pods will
/// never stop): its Node object is deleted and there is nothing left to stop.
pub async fn delete(p: &ClusterProvider, rec: &Record, lost: bool) -> Result<(), ProviderError> {
    let t = target(&rec.attrs, None)?;
    if let Some(kc) = p.kubeconfig.as_deref().filter(|k| k.exists()) {
        match super::tunnel::connect(p.ssh.clone(), kc).await {
            Ok((c, _tunnel)) if lost => {
                let node = crate::charts::object::ObjectId {
                    group: String::new(),
                    kind: "Node".into(),
                    namespace: None,
                    name: t.node.clone(),
                };
                // The API may be lost with it (a whole cluster gone); `etcd restore`
                // removes Node objects of machines the environment no longer has.
                if let Err(e) = c.delete("v1", &node).await {
                    tracing::warn!(node = %t.node, "its Node object was not deleted: {e}");
                }
            }
            Ok((c, _tunnel)) => {
                c.drain(&t.node, p.timeout.min(std::time::Duration::from_secs(300)))
                    .await?
            }
            Err(e) => tracing::warn!(node = %t.node, "not drained: {e}"),
        }
    }
    if lost {
        tracing::warn!(node = %t.node, "its machine does not answer: removed from the cluster without draining");
        return Ok(());
    }
    let stop = "systemctl disable --now -q kubelet kube-proxy 2>/dev/null || true; \
                systemctl disable --now -q containerd 2>/dev/null || true; \
                pkill -x containerd-shim 2>/dev/null || true";
    if let Err(e) = p.ssh.run(&t, stop).await {
        tracing::warn!(node = %t.node, "could not stop the node's services: {e}");
    }
    Ok(())
}
