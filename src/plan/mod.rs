//! Planning and applying: the desired model, diffs, rendering, the executor
//! and its retry policy, and the session that runs them in order.

pub mod desired;
pub mod diff;
pub mod executor;
pub mod render;
pub mod resource;
pub mod retry;
pub mod session;
