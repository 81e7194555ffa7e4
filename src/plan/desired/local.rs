//! The local layer: secrets generated once and kept sealed in state.

use serde_json::json;

use crate::core::Address;
use crate::env::model::Environment;
use crate::env::secret::SecretRef;
use crate::plan::resource::Desired;

pub fn desired(env: &Environment, out: &mut Vec<Desired>) {
    for (name, r) in &env.secrets {
        if let SecretRef::Generate(g) = r {
            out.push(Desired::new(
                Address::new("secret", name),
                json!({ "length": g.length, "charset": g.charset }),
            ));
        }
    }
}
