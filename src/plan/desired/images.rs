//! The images layer: each container image the environment builds
//! (`workload.image: {build: …}`), as pushed to its registry. The digest is
//! computed before planning (the build is reproducible and cached), so the
//! plan says which digest a push would make the charts run.

use serde_json::json;

use super::Inputs;
use crate::core::Address;
use crate::env::model::Environment;
use crate::plan::resource::Desired;

/// The address of the image built from recipe folder `dir` (`images/geozarr` → `container_image.geozarr`).
pub fn address(dir: &str) -> Address {
    let name = dir.trim_end_matches('/').rsplit('/').next().unwrap_or(dir);
    Address::new("container_image", name)
}

pub fn desired(env: &Environment, inputs: &Inputs, out: &mut Vec<Desired>) {
    let Some(registry) = &env.registry else { return };
    for (dir, built) in &inputs.images {
        out.push(Desired::new(
            address(dir),
            json!({
                "registry": crate::image::registry_host(&registry.url),
                "repository": built.repository,
                "recipe": dir,
                "tag": built.tag,
                "digest": built.digest,
                "packages": built.packages,
                "size": built.manifest.layers.iter().map(|l| l.size).sum::<u64>(),
            }),
        ));
    }
}
