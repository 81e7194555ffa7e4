//! Vocabulary shared by every layer below the command line: resource
//! addresses, the references between resources, and secret values that never
//! print. `plan` and `state` build on it; nothing here depends on them.

pub mod address;
pub mod digest;
pub mod json;
pub mod secret;
pub mod wait;

pub use address::{Address, Ref, Select};
pub use secret::Secret;
