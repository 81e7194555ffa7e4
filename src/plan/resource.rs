//! Resources as the plan sees them: a logical address, a kind with per-field
//! change semantics, desired attributes and dependencies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::core::Address;
use crate::core::Ref;

/// What a change to a field costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Applied to the live resource.
    Update,
    /// The resource must be deleted and created again.
    Replace,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub on_change: OnChange,
}

const fn upd(name: &'static str) -> Field {
    Field {
        name,
        on_change: OnChange::Update,
    }
}
const fn rep(name: &'static str) -> Field {
    Field {
        name,
        on_change: OnChange::Replace,
    }
}

/// A kind whose attribute `attr` is a map of sub-objects (a release's
/// Kubernetes objects), diffed one by one with their own semantics.
#[derive(Debug)]
pub struct Nested {
    pub attr: &'static str,
    /// Whether a change at `path` of sub-object `key` needs delete + create.
    pub replaces: fn(key: &str, path: &str) -> bool,
    /// Whether deleting or replacing sub-object `key` loses data.
    pub holds_data: fn(key: &str) -> bool,
}

/// A release's objects: Kubernetes immutability and data rules (charts::object).
pub static RELEASE_OBJECTS: Nested = Nested {
    attr: "objects",
    replaces: crate::charts::object::replaces,
    holds_data: crate::charts::object::holds_data,
};

/// The layer a kind belongs to; shown in plans and used to say what is not implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Local,
    Storage,
    Images,
    Cloud,
    Cluster,
    Platform,
}

#[derive(Debug)]
pub struct KindSpec {
    pub kind: &'static str,
    pub layer: Layer,
    pub fields: &'static [Field],
    /// Replacing loses data: the plan says so loudly.
    pub holds_data: bool,
    /// Sub-objects diffed one by one (releases).
    pub nested: Option<&'static Nested>,
}

impl KindSpec {
    pub fn on_change(&self, field: &str) -> OnChange {
        // Fields not listed are identity-defining: changing them replaces.
        self.fields
            .iter()
            .find(|f| f.name == field)
            .map_or(OnChange::Replace, |f| f.on_change)
    }
}

/// Every kind the plan knows, in one table so field semantics are reviewed together.
/// Cloud kinds follow Neutron/Nova/Cinder semantics: what the API cannot change in
/// place is a replace (image, user data, CIDR, rule fields).
pub static KINDS: &[KindSpec] = &[
    KindSpec {
        kind: "secret",
        layer: Layer::Local,
        fields: &[rep("length"), rep("charset")],
        holds_data: false,
        nested: None,
    },
    // A certificate due for renewal is issued again (replaced): what uses it follows.
    KindSpec {
        kind: "certificate",
        layer: Layer::Local,
        fields: &[
            rep("common_name"),
            rep("dns_names"),
            rep("validity_days"),
            rep("key"),
            rep("renewal_due"),
            upd("renew_before_days"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "bucket",
        layer: Layer::Storage,
        fields: &[
            rep("bucket"),
            rep("endpoint"),
            upd("force_destroy"),
            upd("tags"),
        ],
        holds_data: true,
        nested: None,
    },
    // A pushed container image: a new digest is pushed over the old (the
    // registry keeps both); the registry or repository moving is a new image.
    KindSpec {
        kind: "container_image",
        layer: Layer::Images,
        fields: &[
            rep("registry"),
            rep("repository"),
            upd("recipe"),
            upd("tag"),
            upd("digest"),
            upd("packages"),
            upd("size"),
        ],
        holds_data: false,
        nested: None,
    },
    // A node image: the recipe (its digest) or the base make a new image; the
    // builder's network, flavor and reach only matter while building.
    KindSpec {
        kind: "image",
        layer: Layer::Cloud,
        fields: &[
            rep("name"),
            rep("recipe"),
            rep("digest"),
            rep("base"),
            upd("flavor"),
            upd("network"),
            upd("keypair"),
            upd("security_groups"),
            upd("via"),
            upd("ssh_user"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "keypair",
        layer: Layer::Cloud,
        fields: &[rep("name"), rep("public_key_file")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "network",
        layer: Layer::Cloud,
        fields: &[upd("name"), upd("mtu")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "subnet",
        layer: Layer::Cloud,
        fields: &[upd("name"), rep("network"), rep("cidr"), upd("dns")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "router",
        layer: Layer::Cloud,
        fields: &[upd("name"), upd("external_network")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "router_interface",
        layer: Layer::Cloud,
        fields: &[rep("router"), rep("subnet")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "security_group",
        layer: Layer::Cloud,
        fields: &[upd("name"), upd("description")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "security_group_rule",
        layer: Layer::Cloud,
        fields: &[
            rep("security_group"),
            rep("direction"),
            rep("protocol"),
            rep("port_min"),
            rep("port_max"),
            rep("remote"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "server_group",
        layer: Layer::Cloud,
        fields: &[rep("name"), rep("policy")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "server",
        layer: Layer::Cloud,
        fields: &[
            upd("name"),
            upd("flavor"),
            rep("image"),
            rep("keypair"),
            rep("network"),
            upd("security_groups"),
            rep("server_group"),
            rep("user_data"),
            upd("metadata"),
            rep("boot_volume_gb"),
            upd("allowed_address_pairs"),
        ],
        holds_data: true,
        nested: None,
    },
    KindSpec {
        kind: "volume",
        layer: Layer::Cloud,
        fields: &[upd("name"), upd("size_gb"), rep("volume_type")],
        holds_data: true,
        nested: None,
    },
    KindSpec {
        kind: "volume_attachment",
        layer: Layer::Cloud,
        fields: &[rep("server"), rep("volume")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "floating_ip",
        layer: Layer::Cloud,
        fields: &[rep("network"), upd("server")],
        holds_data: false,
        nested: None,
    },
    // Platform: deleting a namespace deletes everything in it.
    // The cluster layer (src/cluster): a node's machine, its etcd member, control
    // plane and kubelet. A different machine (`node`) is a new host and a new etcd
    // member; everything else is converged in place.
    KindSpec {
        kind: "cluster_pki",
        layer: Layer::Cluster,
        fields: &[upd("ca_days")],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "host",
        layer: Layer::Cluster,
        fields: &[
            upd("roles"),
            upd("version"),
            upd("artifacts"),
            upd("preload_images"),
            upd("drift"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "etcd",
        layer: Layer::Cluster,
        fields: &[
            upd("version"),
            upd("members"),
            upd("cert_days"),
            upd("ca"),
            upd("ca_key"),
            upd("drift"),
        ],
        holds_data: true,
        nested: None,
    },
    KindSpec {
        kind: "etcd_backup",
        layer: Layer::Cluster,
        fields: &[
            upd("node"),
            upd("interval_hours"),
            upd("retention"),
            upd("s3"),
            upd("drift"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "control_plane",
        layer: Layer::Cluster,
        fields: &[
            upd("node"),
            upd("version"),
            upd("api_endpoint"),
            upd("control_addresses"),
            upd("etcd"),
            upd("service_cidr"),
            upd("pod_cidr"),
            upd("cert_days"),
            upd("ca"),
            upd("ca_key"),
            upd("etcd_ca"),
            upd("etcd_ca_key"),
            upd("front_proxy_ca"),
            upd("front_proxy_ca_key"),
            upd("sa_pub"),
            upd("sa_key"),
            upd("drift"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "kubelet",
        layer: Layer::Cluster,
        fields: &[
            upd("node"),
            upd("version"),
            upd("api_endpoint"),
            upd("pod_cidr"),
            upd("cluster_cidr"),
            upd("service_cidr"),
            upd("routes"),
            upd("taint_control_plane"),
            upd("cgroup_driver"),
            upd("kubelet_config"),
            upd("restrict_oom_score_adj"),
            upd("pause_image"),
            upd("preload_images"),
            upd("cert_days"),
            upd("ca"),
            upd("ca_key"),
            upd("drift"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "kubeconfig",
        layer: Layer::Cluster,
        fields: &[
            upd("api_endpoint"),
            upd("path"),
            upd("merge"),
            upd("context"),
            upd("via"),
            upd("cert_days"),
            upd("ca"),
            upd("ca_key"),
            upd("drift"),
        ],
        holds_data: false,
        nested: None,
    },
    KindSpec {
        kind: "namespace",
        layer: Layer::Platform,
        fields: &[rep("name"), upd("environment")],
        holds_data: true,
        nested: None,
    },
    // A release is updated in place; its objects carry their own replace and data rules.
    KindSpec {
        kind: "release",
        layer: Layer::Platform,
        fields: &[
            upd("chart"),
            upd("chart_version"),
            rep("namespace"),
            upd("needs"),
            upd("values"),
            upd("secrets"),
            upd("outputs"),
            upd("wait"),
            upd("objects"),
        ],
        holds_data: false,
        nested: Some(&RELEASE_OBJECTS),
    },
];

pub fn kind_spec(kind: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// A resource as the environment wants it.
#[derive(Debug, Clone)]
pub struct Desired {
    pub address: Address,
    pub spec: &'static KindSpec,
    /// Attributes compared by the diff. References to other resources are
    /// `{"ref": "<address>"}` and resolve to their ids at apply time.
    pub attrs: BTreeMap<String, Value>,
    pub deps: Vec<Address>,
}

impl Desired {
    pub fn new(address: Address, attrs: Value) -> Self {
        let spec = kind_spec(address.kind()).unwrap_or_else(|| unreachable_kind(&address));
        let attrs = match attrs {
            Value::Object(m) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        let mut deps: Vec<Address> = attrs
            .values()
            .flat_map(Ref::all_in)
            .map(|r| r.address)
            .collect();
        deps.sort();
        deps.dedup();
        Self {
            address,
            spec,
            attrs,
            deps,
        }
    }
}

// Desired resources are built only by this crate's own code from the KINDS table,
// so an unknown kind is a programming error caught by the tests of desired.rs.
fn unreachable_kind(a: &Address) -> &'static KindSpec {
    panic!("internal error: resource kind of {a} is not in KINDS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_become_deps() {
        let d = Desired::new(
            Address::new("subnet", "main"),
            serde_json::json!({"network": Ref::id(&Address::new("network", "main")), "cidr": "10.0.0.0/24"}),
        );
        assert_eq!(d.deps, vec![Address::new("network", "main")]);
    }
}
