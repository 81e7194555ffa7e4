//! The resources an environment implies, one module per layer. Pure: no I/O,
//! so plans are deterministic and testable; what a layer needs from outside
//! (chart files, the cluster's capabilities) is loaded before and passed in.

mod cloud;
mod cluster;
pub mod images;
mod local;
pub mod platform;
mod storage;

use serde_json::Value;

use super::resource::Desired;
use crate::charts::{Capabilities, Catalog, ChartError};
use crate::env::model::Environment;

/// What the desired model needs from outside the environment file.
#[derive(Default)]
pub struct Inputs<'a> {
    /// Charts and stacks; None leaves the platform layer out.
    pub catalog: Option<&'a Catalog>,
    /// The target cluster's version and APIs; None derives them from
    /// `cluster.kubernetes_version`.
    pub capabilities: Option<&'a Capabilities>,
    /// `--set RELEASE.key=value`, in order.
    pub sets: &'a [(String, Value)],
    /// The revision each release has now (state); templates see the next one.
    pub revisions: std::collections::BTreeMap<String, u64>,
    /// The pod range each node has now (state); new nodes get free ones.
    pub pod_cidrs: std::collections::BTreeMap<String, String>,
    /// Container images built for this environment, by recipe folder.
    pub images: std::collections::BTreeMap<String, crate::image::Built>,
}

/// Every resource of every layer, in a stable order.
pub fn desired(env: &Environment, inputs: &Inputs) -> Result<Vec<Desired>, ChartError> {
    let mut out = Vec::new();
    local::desired(env, &mut out);
    storage::desired(env, &mut out);
    images::desired(env, inputs, &mut out);
    cloud::desired(env, &mut out);
    cluster::desired(env, &inputs.pod_cidrs, &mut out);
    platform::desired(env, inputs, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::load::{Source, load};

    #[test]
    fn staging_resources_and_dependencies() {
        let env = load(&Source::Embedded, "staging").unwrap().env;
        let d = desired(&env, &Inputs::default()).unwrap();
        let addrs: Vec<String> = d.iter().map(|r| r.address.to_string()).collect();
        for want in [
            "network.main",
            "subnet.main",
            "router_interface.main",
            "server.control[0]",
            "server.worker[1]",
            "server.bastion[0]",
            "floating_ip.bastion[0]",
            "volume.control-etcd[0]",
            "bucket.workload",
            "secret.cluster_token",
        ] {
            assert!(
                addrs.contains(&want.to_owned()),
                "missing {want} in {addrs:?}"
            );
        }
        // every dependency is itself a desired resource
        for r in &d {
            for dep in &r.deps {
                assert!(
                    addrs.contains(&dep.to_string()),
                    "{} depends on unknown {dep}",
                    r.address
                );
            }
        }
        let unique: std::collections::BTreeSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), addrs.len(), "duplicate addresses");
    }
}
