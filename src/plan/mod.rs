//! Planning and applying: the desired model, diffs, rendering, approval,
//! saved plans, the executor and its retry policy, and the session that runs
//! them in order.

pub mod approval;
pub mod desired;
pub mod diff;
pub mod executor;
pub mod render;
pub mod resource;
pub mod retry;
pub mod saved;
pub mod session;
pub mod task;
