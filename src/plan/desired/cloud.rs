//! The cloud layer's resources: network, router, security groups, keypair,
//! server groups, servers, volumes and floating IPs, in OpenStack's terms.

use serde_json::{Value, json};

use crate::core::{Address, Ref};
use crate::env::model::Environment;
use crate::image::node::Loaded;
use crate::plan::resource::Desired;

pub fn desired(env: &Environment, node_image: Option<&Loaded>, out: &mut Vec<Desired>) {
    // Only existing machines (`cluster.nodes`) and no pools: nothing to make in the cloud.
    if env.node_pools.is_empty() && !env.cluster.nodes.is_empty() {
        return;
    }
    let n = &env.name;
    // The network, its router, security groups, then servers.
    let keypair = Address::new("keypair", "deploy");
    out.push(Desired::new(
        keypair.clone(),
        json!({ "name": env.keypair.name, "public_key_file": env.keypair.public_key_file }),
    ));
    let network = Address::new("network", "main");
    let mut net_attrs = json!({ "name": n });
    if let Some(mtu) = env.network.mtu {
        net_attrs["mtu"] = mtu.into();
    }
    out.push(Desired::new(network.clone(), net_attrs));
    let subnet = Address::new("subnet", "main");
    out.push(Desired::new(
        subnet.clone(),
        json!({ "name": n, "network": Ref::id(&network), "cidr": env.network.cidr.to_string(), "dns": env.network.dns }),
    ));
    if env.network.router {
        let router = Address::new("router", "main");
        out.push(Desired::new(
            router.clone(),
            json!({ "name": n, "external_network": env.cloud.external_network }),
        ));
        out.push(Desired::new(
            Address::new("router_interface", "main"),
            json!({ "router": Ref::id(&router), "subnet": Ref::id(&subnet) }),
        ));
    }

    let nodes_sg = Address::new("security_group", "nodes");
    out.push(Desired::new(
        nodes_sg.clone(),
        json!({ "name": format!("{n}-nodes"), "description": "cluster nodes" }),
    ));
    let ssh_sg = if env.bastion.enabled {
        let a = Address::new("security_group", "bastion");
        out.push(Desired::new(
            a.clone(),
            json!({ "name": format!("{n}-bastion"), "description": "SSH bastion" }),
        ));
        a
    } else {
        nodes_sg.clone()
    };
    let mut rule = |name: String, sg: &Address, proto: &str, ports: (u16, u16), remote: String| {
        out.push(Desired::new(
            Address::new("security_group_rule", &name),
            json!({ "security_group": Ref::id(sg), "direction": "ingress", "protocol": proto,
                    "port_min": ports.0, "port_max": ports.1, "remote": remote }),
        ));
    };
    for (i, c) in env.security.ssh_cidrs.iter().enumerate() {
        rule(format!("ssh-{i}"), &ssh_sg, "tcp", (22, 22), c.to_string());
    }
    for (i, c) in env.security.api_cidrs.iter().enumerate() {
        rule(
            format!("api-{i}"),
            &nodes_sg,
            "tcp",
            (6443, 6443),
            c.to_string(),
        );
    }
    // Nodes talk to each other on every port (etcd, kubelet, CNI overlay).
    rule(
        "intra-tcp".into(),
        &nodes_sg,
        "tcp",
        (1, 65535),
        env.network.cidr.to_string(),
    );
    rule(
        "intra-udp".into(),
        &nodes_sg,
        "udp",
        (1, 65535),
        env.network.cidr.to_string(),
    );

    // The node image, when the environment builds one: the pools boot it, the
    // builder and the bastion boot its base.
    let built = node_image.map(|l| {
        let a = Address::new("image", "node");
        let mut attrs = json!({
            "name": format!("{}-{}", env.image.name, l.short()),
            "recipe": env.image.build,
            "digest": l.digest,
            "base": l.recipe.base,
            "flavor": l.recipe.flavor,
            "ssh_user": l.recipe.ssh_user,
            "network": Ref::id(&subnet),
            "keypair": Ref::id(&keypair),
            "security_groups": [Ref::id(&nodes_sg)],
        });
        if env.bastion.enabled {
            let fip = Address::indexed("floating_ip", "bastion", 0);
            attrs["via"] = json!({ "address": Ref::output(&fip, "address"), "user": env.image.ssh_user });
        }
        let mut d = Desired::new(a.clone(), attrs);
        if env.network.router {
            // The builder fetches packages through the router.
            d.deps.push(Address::new("router_interface", "main"));
        }
        out.push(d);
        (a, l.recipe.base.clone())
    });

    let mut servers = Vec::new();
    if env.bastion.enabled {
        servers.push((
            "bastion".to_owned(),
            0u32,
            env.bastion.flavor.clone(),
            None,
            vec![ssh_sg.clone()],
            json!({ "role": "bastion" }),
            None,
        ));
    }
    for pool in &env.node_pools {
        let group = pool.server_group.map(|policy| {
            let a = Address::new("server_group", &pool.name);
            out.push(Desired::new(
                a.clone(),
                json!({ "name": format!("{n}-{}", pool.name), "policy": policy.as_str() }),
            ));
            a
        });
        let roles: Vec<String> = pool
            .roles
            .iter()
            .map(|r| format!("{r:?}").to_lowercase())
            .collect();
        for i in 0..pool.count {
            servers.push((
                pool.name.clone(),
                i,
                pool.flavor.clone(),
                group.clone(),
                vec![nodes_sg.clone()],
                json!({ "roles": roles.join(",") }),
                pool.boot_volume_gb,
            ));
        }
    }
    for (pool, i, flavor, group, sgs, meta, boot) in servers {
        let server = Address::indexed("server", &pool, i);
        let node_pool = env.node_pools.iter().find(|p| p.name == pool);
        let image = match &built {
            Some((_, base)) if pool == "bastion" => json!(base),
            Some((a, _)) => Ref::id(a),
            None => json!(env.image.name),
        };
        let mut attrs = json!({
            "name": format!("{n}-{pool}-{i}"),
            "flavor": flavor,
            "image": image,
            "keypair": Ref::id(&keypair),
            "network": Ref::id(&subnet),
            "security_groups": sgs.iter().map(Ref::id).collect::<Vec<Value>>(),
            "metadata": meta,
            "user_data": user_data(env, &server, node_pool),
        });
        if let Some(g) = &group {
            attrs["server_group"] = Ref::id(g);
        }
        if let Some(gb) = boot {
            attrs["boot_volume_gb"] = gb.into();
        }
        // The bridge CNI routes pods by their own addresses between nodes:
        // port security must let the pod range through.
        if pool != "bastion"
            && env.cluster.enabled
            && env.cluster.cni == crate::env::model::Cni::Bridge
        {
            attrs["allowed_address_pairs"] = json!([env.cluster.pod_cidr.to_string()]);
        }
        out.push(Desired::new(server.clone(), attrs));
        for v in node_pool.map(|p| p.volumes.as_slice()).unwrap_or_default() {
            let vname = format!("{pool}-{}", v.name);
            let vol = Address::indexed("volume", &vname, i);
            let mut va = json!({ "name": format!("{n}-{vname}-{i}"), "size_gb": v.size_gb });
            if let Some(t) = &v.volume_type {
                va["volume_type"] = t.clone().into();
            }
            out.push(Desired::new(vol.clone(), va));
            out.push(Desired::new(
                Address::indexed("volume_attachment", &vname, i),
                json!({ "server": Ref::id(&server), "volume": Ref::id(&vol) }),
            ));
        }
        let wants_fip = pool == "bastion" || node_pool.is_some_and(|p| p.floating_ip);
        if wants_fip {
            let mut fip = Desired::new(
                Address::indexed("floating_ip", &pool, i),
                json!({ "network": env.cloud.external_network, "server": Ref::id(&server) }),
            );
            // Neutron needs the subnet on a router for a floating IP, and refuses
            // to remove that interface while one is left: made after, deleted before.
            if env.network.router {
                fip.deps.push(Address::new("router_interface", "main"));
            }
            out.push(fip);
        }
    }
}

/// The `#cloud-config` every server boots with: it writes
/// `/etc/provisioner/node.json`, saying which environment, address, pool and
/// roles the machine has and where its volumes are meant to be mounted, so the
/// machine (and the cluster layer after it) knows what it is for. Changing it
/// replaces the server, as user data does on every cloud.
fn user_data(
    env: &Environment,
    server: &Address,
    pool: Option<&crate::env::model::NodePool>,
) -> String {
    let node = json!({
        "environment": env.name,
        "address": server.as_str(),
        "pool": pool.map_or("bastion", |p| p.name.as_str()),
        "roles": pool.map(|p| p.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect::<Vec<_>>()).unwrap_or_default(),
        "volumes": pool.map(|p| p.volumes.iter().map(|v| json!({ "name": v.name, "mount": v.mount })).collect::<Vec<_>>()).unwrap_or_default(),
    });
    // JSON is valid YAML: the content is one double-quoted scalar.
    let content = serde_json::to_string(&node.to_string()).unwrap_or_default();
    format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/provisioner/node.json\n    permissions: '0644'\n    content: {content}\n"
    )
}
