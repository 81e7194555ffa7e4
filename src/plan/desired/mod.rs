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
    /// The node image recipe (`image.build`), read with its digest.
    pub node_image: Option<crate::image::node::Loaded>,
}

/// Every resource of every layer, in a stable order.
pub fn desired(env: &Environment, inputs: &Inputs) -> Result<Vec<Desired>, ChartError> {
    let mut out = Vec::new();
    local::desired(env, &mut out);
    storage::desired(env, &mut out);
    images::desired(env, inputs, &mut out);
    cloud::desired(env, inputs.node_image.as_ref(), &mut out);
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

    /// A built node image: the pools boot it (by reference), the bastion its
    /// base; a recipe change replaces the image and, through the reference,
    /// every server that boots it, flagged as data loss.
    #[test]
    fn node_image_is_planned_and_a_recipe_change_replaces_its_servers() {
        use crate::image::node::Loaded;
        use crate::plan::diff::{Action, diff};
        use crate::state::{Record, StateFile, Status};
        let env = load(&Source::Embedded, "staging").unwrap().env;
        let recipe = |token: &str| {
            let mut f = std::collections::BTreeMap::new();
            f.insert("recipe.yaml".to_owned(), b"base: debian-12-genericcloud\nflavor: m1.small\n".to_vec());
            f.insert("token".to_owned(), token.as_bytes().to_vec());
            Loaded::from_files("images/node", f).unwrap()
        };
        let model = |l: Loaded| desired(&env, &Inputs { node_image: Some(l), ..Inputs::default() }).unwrap();
        let d1 = model(recipe("a"));
        let image = d1.iter().find(|d| d.address.as_str() == "image.node").unwrap();
        assert!(image.attrs["name"].as_str().unwrap().starts_with("debian-12-kube-1.20-"));
        let control = d1.iter().find(|d| d.address.as_str() == "server.control[0]").unwrap();
        assert!(control.deps.iter().any(|a| a.as_str() == "image.node"), "{:?}", control.deps);
        let bastion = d1.iter().find(|d| d.address.as_str() == "server.bastion[0]").unwrap();
        assert_eq!(bastion.attrs["image"], "debian-12-genericcloud");
        // State as after an apply of d1, then the recipe's files change.
        let mut st = StateFile::new("staging");
        for d in &d1 {
            st.resources.insert(d.address.clone(), Record {
                kind: d.spec.kind.into(), id: Some("id".into()), status: Status::Ready,
                attrs: d.attrs.clone(), outputs: Default::default(), deps: d.deps.clone(),
                sealed: None, secrets: Default::default(), updated_at: String::new(),
            });
        }
        let same = diff(&model(recipe("a")), &st, &Default::default());
        assert!(same.iter().filter(|c| c.kind == "image" || c.kind == "server").all(|c| c.action == Action::NoOp));
        let changed = diff(&model(recipe("b")), &st, &Default::default());
        let by = |a: &str| changed.iter().find(|c| c.address.as_str() == a).unwrap();
        assert_eq!(by("image.node").action, Action::Replace);
        assert_eq!(by("server.control[0]").action, Action::Replace);
        assert!(by("server.control[0]").data_loss);
        assert_eq!(by("server.bastion[0]").action, Action::NoOp, "the bastion boots the base");
    }
}
