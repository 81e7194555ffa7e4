//! Environment files: schema, loading with `extends:` overlays, secret
//! references, and cross-field validation.

pub mod load;
pub mod model;
pub mod node;
pub mod secret;
pub mod validate;
