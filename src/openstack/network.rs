//! `network.*`: the environment's tenant network (name, MTU).

use super::neutron::{NETWORKS, Plain};

pub const NETWORK: Plain = Plain {
    coll: NETWORKS,
    fields: &["name", "mtu"],
    clear_ports: true,
};
