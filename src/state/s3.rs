//! S3 backend: state at `<prefix><env>.state.json`, and a lease lock at
//! `<prefix><env>.lock` taken with a conditional create (`If-None-Match: *`).
//! The holder renews the lease with `If-Match: <etag>`; an expired lease is
//! taken over with the same conditional write, so two contenders can never
//! both win. A holder whose renewal fails stops writing state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::{Backend, LockHandle, LockInfo, StateError};
use crate::s3::{describe, status_and_code};

pub struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
    env: String,
    lease: Duration,
}

impl S3Backend {
    pub fn new(client: Client, bucket: String, prefix: String, env: &str, lease: Duration) -> Self {
        Self {
            client,
            bucket,
            prefix,
            env: env.to_owned(),
            lease,
        }
    }
    fn state_key(&self) -> String {
        format!("{}{}.state.json", self.prefix, self.env)
    }
    fn lock_key(&self) -> String {
        format!("{}{}.lock", self.prefix, self.env)
    }
    fn err(&self, what: &str, message: String) -> StateError {
        StateError::S3 {
            what: format!("s3://{}/{}", self.bucket, what),
            message,
        }
    }

    /// The current lock and its ETag.
    async fn get_lock(&self) -> Result<Option<(LockInfo, String)>, StateError> {
        let key = self.lock_key();
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(o) => {
                let etag = o.e_tag().unwrap_or_default().to_owned();
                let body = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.err(&key, e.to_string()))?
                    .into_bytes();
                let info = serde_json::from_slice(&body).map_err(|e| StateError::Corrupt {
                    what: format!("s3://{}/{key}", self.bucket),
                    message: e.to_string(),
                })?;
                Ok(Some((info, etag)))
            }
            Err(e) if status_and_code(&e).0 == Some(404) => Ok(None),
            Err(e) => Err(self.err(&key, describe(&e))),
        }
    }

    /// Conditional write of the lock object; Ok(None) when the condition failed.
    async fn put_lock(
        &self,
        info: &LockInfo,
        condition: Condition<'_>,
    ) -> Result<Option<String>, StateError> {
        let key = self.lock_key();
        let body = serde_json::to_vec(info).map_err(|e| self.err(&key, e.to_string()))?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        req = match condition {
            Condition::Absent => req.if_none_match("*"),
            Condition::Etag(e) => req.if_match(e),
        };
        match req.send().await {
            Ok(o) => Ok(Some(o.e_tag().unwrap_or_default().to_owned())),
            // 412: someone else wrote first. 409: a concurrent conditional write is in flight.
            Err(e) if matches!(status_and_code(&e).0, Some(412 | 409)) => Ok(None),
            Err(e) => Err(self.err(&key, describe(&e))),
        }
    }
}

enum Condition<'a> {
    Absent,
    Etag(&'a str),
}

fn expired(info: &LockInfo) -> bool {
    info.expires_at
        .as_deref()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .is_some_and(|t| t < chrono::Utc::now())
}

struct S3Lock {
    info: LockInfo,
    lost: Arc<AtomicBool>,
    lost_reason: Arc<Mutex<String>>,
    renewer: tokio::task::JoinHandle<()>,
    backend: Arc<S3Parts>,
}

/// What the renewal task needs, shared with the handle.
struct S3Parts {
    inner: S3Backend,
}

#[async_trait]
impl LockHandle for S3Lock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
    fn check(&self) -> Result<(), StateError> {
        if self.lost.load(Ordering::SeqCst) {
            let message = self
                .lost_reason
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            return Err(StateError::LockLost {
                env: self.backend.inner.env.clone(),
                message,
            });
        }
        Ok(())
    }
    async fn release(self: Box<Self>) -> Result<(), StateError> {
        self.renewer.abort();
        let b = &self.backend.inner;
        // Delete only our own lock: a taken-over lease belongs to someone else now.
        if let Some((current, _)) = b.get_lock().await?
            && current.id == self.info.id
        {
            let key = b.lock_key();
            b.client
                .delete_object()
                .bucket(&b.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| b.err(&key, describe(&e)))?;
        }
        Ok(())
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.state_key())
    }

    async fn acquire(&self, operation: &str) -> Result<Box<dyn LockHandle>, StateError> {
        let info = LockInfo::new(operation, Some(self.lease));
        let etag = match self.put_lock(&info, Condition::Absent).await? {
            Some(etag) => etag,
            None => {
                let Some((held, held_etag)) = self.get_lock().await? else {
                    // Released between our write and read: let the caller retry.
                    return Err(StateError::Locked {
                        env: self.env.clone(),
                        info: Box::new(LockInfo {
                            operation: "(just released)".into(),
                            ..info
                        }),
                    });
                };
                if !expired(&held) {
                    return Err(StateError::Locked {
                        env: self.env.clone(),
                        info: Box::new(held),
                    });
                }
                tracing::warn!(holder = %held.owner, host = %held.host, expired = ?held.expires_at, "taking over an expired state lease");
                match self.put_lock(&info, Condition::Etag(&held_etag)).await? {
                    Some(etag) => etag,
                    None => {
                        let now = self.get_lock().await?.map(|(i, _)| i).unwrap_or(held);
                        return Err(StateError::Locked {
                            env: self.env.clone(),
                            info: Box::new(now),
                        });
                    }
                }
            }
        };
        // Read back: a server whose conditional create is not atomic (or is
        // ignored) can let two writers "win"; the one whose id is not there lost.
        match self.get_lock().await? {
            Some((current, _)) if current.id != info.id => {
                return Err(StateError::Locked {
                    env: self.env.clone(),
                    info: Box::new(current),
                });
            }
            _ => {}
        }
        let parts = Arc::new(S3Parts {
            inner: S3Backend {
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                prefix: self.prefix.clone(),
                env: self.env.clone(),
                lease: self.lease,
            },
        });
        let lost = Arc::new(AtomicBool::new(false));
        let lost_reason = Arc::new(Mutex::new(String::new()));
        let etag = Arc::new(Mutex::new(etag));
        let renewer = tokio::spawn(renew(
            parts.clone(),
            info.clone(),
            etag,
            lost.clone(),
            lost_reason.clone(),
        ));
        Ok(Box::new(S3Lock {
            info,
            lost,
            lost_reason,
            renewer,
            backend: parts,
        }))
    }

    async fn read(&self) -> Result<Option<Vec<u8>>, StateError> {
        let key = self.state_key();
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(
                o.body
                    .collect()
                    .await
                    .map_err(|e| self.err(&key, e.to_string()))?
                    .into_bytes()
                    .to_vec(),
            )),
            Err(e) if status_and_code(&e).0 == Some(404) => Ok(None),
            Err(e) => Err(self.err(&key, describe(&e))),
        }
    }

    async fn write(&self, bytes: &[u8], lock: &dyn LockHandle) -> Result<(), StateError> {
        lock.check()?;
        let key = self.state_key();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| self.err(&key, describe(&e)))?;
        Ok(())
    }

    async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.get_lock().await?.map(|(i, _)| i))
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        match self.get_lock().await? {
            Some((h, _)) if h.id == id => {
                let key = self.lock_key();
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| self.err(&key, describe(&e)))?;
                Ok(h)
            }
            other => Err(StateError::LockMismatch {
                env: self.env.clone(),
                id: id.into(),
                current: other.map(|(h, _)| h.id),
            }),
        }
    }

    async fn list(&self) -> Result<Vec<String>, StateError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err(&self.prefix, describe(&e)))?;
            for o in page.contents() {
                if let Some(name) = o
                    .key()
                    .and_then(|k| k.strip_prefix(&self.prefix))
                    .and_then(|k| k.strip_suffix(".state.json"))
                    && !name.contains('/')
                {
                    out.push(name.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Renew the lease every third of its length; mark the lock lost when the
/// object is no longer ours (expired and taken over) or cannot be renewed in time.
async fn renew(
    parts: Arc<S3Parts>,
    mut info: LockInfo,
    etag: Arc<Mutex<String>>,
    lost: Arc<AtomicBool>,
    reason: Arc<Mutex<String>>,
) {
    let b = &parts.inner;
    let period = b.lease / 3;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        info.expires_at = Some(
            (chrono::Utc::now() + b.lease).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        let current = etag.lock().map(|e| e.clone()).unwrap_or_default();
        let fail = |m: String| {
            if let Ok(mut r) = reason.lock() {
                *r = m;
            }
            lost.store(true, Ordering::SeqCst);
        };
        match b.put_lock(&info, Condition::Etag(&current)).await {
            Ok(Some(new)) => {
                if let Ok(mut e) = etag.lock() {
                    *e = new;
                }
                last_ok = tokio::time::Instant::now();
            }
            Ok(None) => {
                fail("the lease object changed (it expired and another run took it over)".into());
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the state lease; retrying");
                if last_ok.elapsed() >= b.lease {
                    fail(format!("could not renew the lease for {:?}: {e}", b.lease));
                    return;
                }
            }
        }
    }
}
