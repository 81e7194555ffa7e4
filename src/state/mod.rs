//! State: where it lives (local file or S3), who holds the lock, and how
//! generated secrets are sealed.

pub mod crypto;
pub mod local;
pub mod model;
pub mod s3;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use model::{Record, StateFile, Status};

use crate::env::model::{BackendKind, Environment};
use crypto::Key;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state of `{env}` is locked by {} on {} (pid {}) since {} for `{}`{}\n  hint: wait for it to finish; if that run is dead, `provisioner state unlock {env} {}`",
        info.owner, info.host, info.pid, info.created_at, info.operation,
        info.expires_at.as_ref().map(|e| format!(", lease until {e}")).unwrap_or_default(), info.id)]
    Locked { env: String, info: Box<LockInfo> },
    #[error(
        "lost the state lock of `{env}`: {message}; stopped before writing state\n  hint: another run may have taken over an expired lease; re-run to converge"
    )]
    LockLost { env: String, message: String },
    #[error("no lock with id {id} on `{env}`{}", current.as_ref().map(|c| format!(" (the current lock is {c})")).unwrap_or_default())]
    LockMismatch {
        env: String,
        id: String,
        current: Option<String>,
    },
    #[error(
        "{what} is not valid state: {message}\n  hint: restore it from the backend's previous version, or `provisioner state rebuild` from the cloud"
    )]
    Corrupt { what: String, message: String },
    #[error("{} at {}: {source}", "cannot access", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("S3 state backend ({what}): {message}")]
    S3 { what: String, message: String },
    #[error(
        "{address} holds a generated secret but no state encryption key is configured\n  hint: set {} or state.encryption_key",
        crypto::KEY_ENV
    )]
    NoKey { address: String },
    #[error(
        "the state encryption key from {origin} is not 32 bytes of base64\n  hint: generate one with `provisioner state new-key`"
    )]
    BadKey { origin: String },
    #[error("cannot read the state encryption key: {message}")]
    KeyUnavailable { message: String },
    #[error(
        "{address} was sealed with state key {want}, but the key from {origin} is {have}\n  hint: use the key this state was written with; if it is lost, `provisioner state rm <env> <address>` drops that record so the secret is generated again"
    )]
    WrongKey {
        address: String,
        want: String,
        have: String,
        origin: String,
    },
    #[error("cannot decrypt {address}: {message}")]
    Crypto { address: String, message: String },
}

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub id: String,
    pub operation: String,
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The holder's start time (clock ticks since boot, from /proc), so a
    /// reused pid is not mistaken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
}

impl LockInfo {
    pub fn new(operation: &str, lease: Option<Duration>) -> Self {
        let mut id = [0u8; 8];
        rand::fill(&mut id);
        let now = chrono::Utc::now();
        Self {
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            operation: operation.to_owned(),
            owner: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            created_at: model::now(),
            expires_at: lease
                .map(|l| (now + l).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            pid_start: local::process_start(std::process::id()),
        }
    }
}

#[async_trait]
pub trait Backend: Send + Sync {
    /// Human description (`local .provisioner/x.state.json`), no credentials.
    fn describe(&self) -> String;
    async fn acquire(&self, operation: &str) -> Result<Box<dyn LockHandle>, StateError>;
    async fn read(&self) -> Result<Option<Vec<u8>>, StateError>;
    /// Called only while holding the lock.
    async fn write(&self, bytes: &[u8], lock: &dyn LockHandle) -> Result<(), StateError>;
    async fn lock_info(&self) -> Result<Option<LockInfo>, StateError>;
    /// Remove the lock if its id is `id`.
    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError>;
    /// Environments that have state in this backend's location.
    async fn list(&self) -> Result<Vec<String>, StateError>;
}

#[async_trait]
pub trait LockHandle: Send + Sync {
    fn info(&self) -> &LockInfo;
    /// Err when the lease could not be renewed; writes must stop.
    fn check(&self) -> Result<(), StateError>;
    async fn release(self: Box<Self>) -> Result<(), StateError>;
}

/// A backend for the environment's `state:` settings. `dir` overrides the local folder.
pub async fn backend_for(
    env: &Environment,
    dir: Option<&std::path::Path>,
) -> Result<Box<dyn Backend>, crate::Error> {
    match env.state.backend {
        BackendKind::Local => {
            let d = dir.map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(env.state.path.as_deref().unwrap_or(".provisioner"))
            });
            Ok(Box::new(local::LocalBackend::new(d, &env.name)))
        }
        BackendKind::S3 => {
            let Some(loc) = &env.state.s3 else {
                return Err(crate::Error::Usage(
                    "state.backend is s3 but state.s3 is missing".into(),
                ));
            };
            let client = crate::s3::client(loc, "state.s3").await?;
            let lease = Duration::from_secs(env.state.lease_seconds.unwrap_or(120));
            Ok(Box::new(s3::S3Backend::new(
                client,
                loc.bucket.clone(),
                loc.prefix.clone(),
                &env.name,
                lease,
            )))
        }
    }
}

/// State plus the means to save it: every save bumps the serial, seals secrets
/// and writes atomically through the backend.
pub struct Store {
    pub backend: Box<dyn Backend>,
    pub key: Option<Key>,
    /// Why the configured key could not be read; reported only when a key is needed,
    /// so plans, listings and destroys work without it.
    key_error: Option<String>,
    pub env: String,
    configured_key: Option<crate::env::secret::SecretRef>,
}

impl Store {
    pub fn new(backend: Box<dyn Backend>, env: &Environment) -> Result<Self, StateError> {
        let (key, key_error) =
            match crypto::resolve_key(env.state.encryption_key.as_ref(), &env.name, false) {
                Ok(k) => (k, None),
                Err(e) => (None, Some(e.to_string())),
            };
        Ok(Self {
            backend,
            key,
            key_error,
            env: env.name.clone(),
            configured_key: env.state.encryption_key.clone(),
        })
    }

    /// Current state (empty if none). Sealed secrets stay sealed: nothing
    /// reads their values yet, and unchanged records keep their blobs.
    pub async fn load(&self) -> Result<StateFile, StateError> {
        match self.backend.read().await? {
            Some(bytes) => StateFile::from_json(&bytes, &self.backend.describe()),
            None => Ok(StateFile::new(&self.env)),
        }
    }

    /// Make sure a key exists before a secret is generated.
    pub fn ensure_key(&mut self, state: &StateFile) -> Result<(), StateError> {
        if self.key.is_none() && self.key_error.is_none() {
            self.key = crypto::resolve_key(self.configured_key.as_ref(), &self.env, true)?;
        }
        self.check_key(state)
    }

    /// A configured key must be readable and be the one the state's secrets
    /// were sealed with; no key at all is fine until one is needed.
    pub fn check_key(&self, state: &StateFile) -> Result<(), StateError> {
        if let Some(e) = &self.key_error {
            return Err(StateError::KeyUnavailable { message: e.clone() });
        }
        if let (Some(k), Some(want)) = (&self.key, state.sealed_key_id())
            && k.id != want
        {
            let address = state
                .resources
                .iter()
                .find(|(_, r)| r.sealed.is_some())
                .map(|(a, _)| a.to_string())
                .unwrap_or_default();
            return Err(StateError::WrongKey {
                address,
                want: want.to_owned(),
                have: k.id.clone(),
                origin: k.origin.clone(),
            });
        }
        Ok(())
    }

    pub async fn save(
        &self,
        state: &mut StateFile,
        lock: &dyn LockHandle,
    ) -> Result<(), StateError> {
        lock.check()?;
        state.serial += 1;
        state.updated_at = model::now();
        let bytes = state.to_json(self.key.as_ref())?;
        self.backend.write(&bytes, lock).await
    }

    /// Take the lock, waiting up to `wait` for a holder to finish.
    pub async fn lock(
        &self,
        operation: &str,
        wait: Duration,
    ) -> Result<Box<dyn LockHandle>, StateError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut delay = Duration::from_millis(250);
        loop {
            match self.backend.acquire(operation).await {
                Err(StateError::Locked { env, info }) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(holder = %info.owner, host = %info.host, pid = info.pid, "state of {env} is locked; waiting");
                    tokio::time::sleep(delay.min(deadline - tokio::time::Instant::now())).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}
