//! SSH to the machines a cluster runs on: libssh2 sessions (blocking, so every
//! call runs on tokio's blocking pool), host keys pinned on first contact and
//! refused when they change, jumps through one shared bastion session, uploads
//! that land atomically only after their sha256 checks, and per-host logs.
//!
//! `Ssh` is the only door: the cluster layer never touches `ssh2` itself.

mod conn;
mod error;
mod forward;
mod hostkey;
mod jump;
mod pool;
pub mod quote;

pub use error::SshError;
pub use forward::Forward;
pub use hostkey::HostKey;
pub use pool::{Auth, Output, Ssh, Target, install_step};
