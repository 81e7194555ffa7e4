//! What can go wrong talking to a machine, each failure naming the machine
//! (name and address, and the bastion when one was used) and what was tried.

use std::time::Duration;

use crate::provider::{Class, ProviderError};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{target}: cannot connect ({tried}): {source}")]
    Connect {
        target: String,
        tried: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: SSH {what} failed: {source}")]
    Protocol {
        target: String,
        what: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("{target}: {what}: {source}")]
    Io {
        target: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{target}: no key was accepted for user `{user}` (tried {tried}); check the keypair the machine was created with, or set cluster.ssh.private_key_file / SSH_AUTH_SOCK"
    )]
    Auth {
        target: String,
        user: String,
        tried: String,
    },
    #[error(
        "{target}: the host key changed: pinned {pinned}, the machine presents {presented}. If the machine was rebuilt on purpose, compare the new key with its console log, then `provisioner state rm host.{node}` so the next `up` pins it again; otherwise do not connect (someone may be in the middle)"
    )]
    HostKeyMismatch {
        target: String,
        node: String,
        pinned: String,
        presented: String,
    },
    #[error("{target}: `{command}` exited {status}: {stderr}")]
    Command {
        target: String,
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("{target}: {what} took longer than {after:?}")]
    Timeout {
        target: String,
        what: String,
        after: Duration,
    },
    #[error("{target}: upload of {path} arrived with sha256 {got}, expected {expected}")]
    Corrupt {
        target: String,
        path: String,
        expected: String,
        got: String,
    },
    #[error("{target}: reading {path}: {source}")]
    Local {
        target: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// Unreachable machines and dropped sessions may recover (a reboot, a slow
    /// boot); a changed host key, refused keys or a failing command will not.
    pub fn class(&self) -> Class {
        match self {
            SshError::Connect { .. }
            | SshError::Timeout { .. }
            | SshError::Protocol { .. }
            | SshError::Io { .. } => Class::Transient { after: None },
            _ => Class::Fatal,
        }
    }
}

impl From<SshError> for ProviderError {
    fn from(e: SshError) -> Self {
        ProviderError::new(e.class(), e.to_string()).caused_by(e)
    }
}
