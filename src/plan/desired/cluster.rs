//! The cluster layer: the PKI, then per node the machine (`host`: prepared,
//! binaries checked), its etcd member and control plane when it has those
//! roles, its kubelet, and the admin kubeconfig — each a resource, so the plan
//! says per node what changes and why. Nodes are the servers of `node_pools`
//! (reached through the bastion when there is one) or `cluster.nodes`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::core::{Address, Ref};
use crate::env::model::{Artifacts, Environment, Role};
use crate::plan::resource::Desired;

/// A node as the cluster layer sees it.
struct Node {
    name: String,
    /// A literal address, or a reference to a server's.
    address: Value,
    user: String,
    roles: Vec<Role>,
    host_key: Option<String>,
}

fn nodes(env: &Environment, user: &str) -> Vec<Node> {
    if !env.cluster.nodes.is_empty() {
        return env
            .cluster
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                address: n.address.clone().into(),
                user: n.user.clone().unwrap_or_else(|| user.to_owned()),
                roles: n.roles.clone(),
                host_key: n.host_key.clone(),
            })
            .collect();
    }
    let mut out = Vec::new();
    for pool in env.node_pools.iter().filter(|p| !p.roles.is_empty()) {
        for i in 0..pool.count {
            out.push(Node {
                name: format!("{}-{}-{i}", env.name, pool.name),
                address: Ref::output(&Address::indexed("server", &pool.name, i), "address"),
                user: user.to_owned(),
                roles: pool.roles.clone(),
                host_key: None,
            });
        }
    }
    out
}

/// How to reach the bastion, if the nodes are behind one.
fn via(env: &Environment, user: &str) -> Value {
    let ssh = &env.cluster.ssh;
    if !env.cluster.nodes.is_empty() {
        return ssh.bastion.as_ref().map_or(Value::Null, |b| {
            json!({ "address": b.address, "user": b.user.clone().unwrap_or_else(|| user.to_owned()),
                    "host_key": b.host_key })
        });
    }
    if env.bastion.enabled {
        let fip = Address::indexed("floating_ip", "bastion", 0);
        return json!({ "address": Ref::output(&fip, "address"), "user": user, "host_key": null });
    }
    Value::Null
}

pub fn desired(env: &Environment, assigned: &BTreeMap<String, String>, out: &mut Vec<Desired>) {
    let c = &env.cluster;
    if !c.enabled {
        return;
    }
    let user = c
        .ssh
        .user
        .clone()
        .unwrap_or_else(|| env.image.ssh_user.clone());
    let nodes = nodes(env, &user);
    if nodes.is_empty() {
        return;
    }
    let via = via(env, &user);
    let port = c.ssh.port.unwrap_or(22);
    let version = c.kubernetes_version.clone();
    let artifacts = match &c.artifacts {
        Some(Artifacts::Dir(d)) => json!({ "dir": d }),
        Some(Artifacts::Url(u)) => json!({ "url": u }),
        None => Value::Null,
    };
    let days = c.certificates.validity_days;

    let pki = Address::new("cluster_pki", "main");
    out.push(Desired::new(
        pki.clone(),
        json!({ "ca_days": days.saturating_mul(10) }),
    ));
    let o = |name: &str| Ref::output(&pki, name);
    let s = |name: &str| Ref::secret(&pki, name);

    let has = |n: &Node, r: Role| n.roles.contains(&r);
    let control: Vec<&Node> = nodes
        .iter()
        .filter(|n| has(n, Role::Controlplane))
        .collect();
    let etcd: Vec<&Node> = nodes.iter().filter(|n| has(n, Role::Etcd)).collect();
    let api_host = c
        .api_endpoint
        .clone()
        .map(Value::from)
        .or_else(|| control.first().map(|n| n.address.clone()))
        .unwrap_or(Value::Null);
    let members: Vec<Value> = etcd
        .iter()
        .map(|n| json!({ "name": n.name, "address": n.address }))
        .collect();
    let control_addresses: Vec<Value> = control.iter().map(|n| n.address.clone()).collect();
    let node_value = |n: &Node, host_key: Value| {
        json!({ "name": n.name, "address": n.address, "user": n.user, "port": port,
                "via": via, "host_key": host_key })
    };
    // A /24 per node: the one it has (state), else the first free one, so adding
    // or removing a node never moves another node's pods to new addresses.
    let mut free = c
        .pod_cidr
        .subnets(24)
        .map(|s| s.map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter();
    let taken: BTreeSet<&String> = nodes.iter().filter_map(|n| assigned.get(&n.name)).collect();
    let pod_nets: Vec<String> = nodes
        .iter()
        .map(|n| {
            assigned
                .get(&n.name)
                .cloned()
                .or_else(|| free.by_ref().find(|s| !taken.contains(s)))
                // more nodes than /24s in cluster.pod_cidr: the kubelet step fails on it
                .unwrap_or_default()
        })
        .collect();

    let mut etcd_addrs = Vec::new();
    let mut control_addrs = Vec::new();
    for n in &nodes {
        let host = Address::new("host", &n.name);
        let mut roles: Vec<&str> = Vec::new();
        for (r, name) in [
            (Role::Etcd, "etcd"),
            (Role::Controlplane, "controlplane"),
            (Role::Worker, "worker"),
        ] {
            if has(n, r) {
                roles.push(name);
            }
        }
        out.push(Desired::new(
            host.clone(),
            json!({ "node": node_value(n, n.host_key.clone().map_or(Value::Null, Value::from)),
                    "roles": roles, "version": version, "artifacts": artifacts,
                    "preload_images": c.node_config.preload_images }),
        ));
        let pinned = node_value(n, Ref::output(&host, "host_key"));
        if has(n, Role::Etcd) {
            let a = Address::new("etcd", &n.name);
            out.push(Desired::new(
                a.clone(),
                json!({ "node": pinned.clone(), "version": version, "members": members,
                        "cert_days": days, "ca": o("etcd_ca_crt"), "ca_key": s("etcd_ca_key") }),
            ));
            let mut b = Desired::new(
                Address::new("etcd_backup", &n.name),
                json!({ "node": pinned, "interval_hours": c.etcd_snapshots.interval_hours,
                        "retention": c.etcd_snapshots.retention, "s3": c.etcd_snapshots.s3 }),
            );
            b.deps.push(a.clone());
            // A bucket this environment creates exists before the first upload.
            if c.etcd_snapshots.s3.as_ref().is_some_and(|s| s.create) {
                b.deps.push(Address::new("bucket", "etcd_snapshots"));
            }
            out.push(b);
            etcd_addrs.push(a);
        }
    }
    for n in &control {
        let host = Address::new("host", &n.name);
        let mut d = Desired::new(
            Address::new("control_plane", &n.name),
            json!({
                "node": node_value(n, Ref::output(&host, "host_key")),
                "version": version,
                "api_endpoint": api_host,
                "control_addresses": control_addresses,
                "etcd": members,
                "service_cidr": c.service_cidr.to_string(),
                "pod_cidr": c.pod_cidr.to_string(),
                "cert_days": days,
                "ca": o("ca_crt"), "ca_key": s("ca_key"),
                "etcd_ca": o("etcd_ca_crt"), "etcd_ca_key": s("etcd_ca_key"),
                "front_proxy_ca": o("front_proxy_ca_crt"), "front_proxy_ca_key": s("front_proxy_ca_key"),
                "sa_pub": o("sa_pub"), "sa_key": s("sa_key"),
            }),
        );
        // The control plane starts once every etcd member has (the health gate needs quorum).
        d.deps.extend(etcd_addrs.iter().cloned());
        control_addrs.push(d.address.clone());
        out.push(d);
    }
    let routes: Vec<Value> = nodes
        .iter()
        .zip(&pod_nets)
        .map(|(n, net)| json!({ "node": n.name, "cidr": net, "via": n.address }))
        .collect();
    for (n, net) in nodes.iter().zip(&pod_nets) {
        let host = Address::new("host", &n.name);
        let mut d = Desired::new(
            Address::new("kubelet", &n.name),
            json!({
                "node": node_value(n, Ref::output(&host, "host_key")),
                "version": version,
                "api_endpoint": api_host,
                "pod_cidr": net,
                "cluster_cidr": c.pod_cidr.to_string(),
                "service_cidr": c.service_cidr.to_string(),
                "routes": routes.iter().filter(|r| r["node"] != n.name.as_str()).collect::<Vec<_>>(),
                "taint_control_plane": has(n, Role::Controlplane) && !has(n, Role::Worker),
                "cgroup_driver": c.node_config.cgroup_driver,
                "kubelet_config": c.node_config.kubelet,
                "restrict_oom_score_adj": c.node_config.restrict_oom_score_adj,
                "pause_image": c.node_config.pause_image,
                "preload_images": c.node_config.preload_images,
                "cert_days": days,
                "ca": o("ca_crt"), "ca_key": s("ca_key"),
            }),
        );
        d.deps.extend(control_addrs.iter().cloned());
        out.push(d);
    }
    let path = c
        .kubeconfig
        .path
        .clone()
        .unwrap_or_else(|| format!("~/.kube/provisioner-{}.yaml", env.name));
    let kubelets: Vec<Address> = nodes
        .iter()
        .map(|n| Address::new("kubelet", &n.name))
        .collect();
    let mut attrs = json!({ "api_endpoint": api_host, "path": path, "merge": c.kubeconfig.merge,
            "context": env.name, "cert_days": days, "ca": o("ca_crt"), "ca_key": s("ca_key") });
    // A control plane at a node's address behind a bastion is reached through
    // it (a forwarded port); a given api_endpoint is taken to be reachable.
    if c.api_endpoint.is_none() && !via.is_null() {
        attrs["via"] = via.clone();
    }
    let mut d = Desired::new(Address::new("kubeconfig", "admin"), attrs);
    // Written once the nodes are up: whoever uses it (the platform layer) finds a cluster that runs pods.
    d.deps.extend(control_addrs.iter().cloned());
    d.deps.extend(kubelets);
    out.push(d);
}
