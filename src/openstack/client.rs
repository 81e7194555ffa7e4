//! Raw JSON calls on the osauth session, for everything the `openstack` crate
//! lacks (tags, security groups, server groups, volume attachments, quotas).
//! One place classifies failures for the retry policy and counts API calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use osauth::services::{BLOCK_STORAGE, COMPUTE, IMAGE, NETWORK};
use serde_json::Value;

use crate::provider::{Class, ProviderError};

/// Nova microversion: 2.52 sets server tags at create (no untagged window).
pub const NOVA: (u16, u16) = (2, 52);
/// Cinder microversion for attachment and metadata filters.
pub const CINDER: (u16, u16) = (3, 60);

#[derive(Debug, Clone, Copy)]
pub enum Svc {
    Compute,
    Network,
    Volume,
    Image,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// A failed call: HTTP status (if any), the service's message, Retry-After.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: Option<u16>,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl From<ApiError> for ProviderError {
    fn from(e: ApiError) -> Self {
        let quota = e.message.to_ascii_lowercase().contains("quota");
        let class = match e.status {
            _ if quota => Class::Quota,
            Some(429) => Class::Transient {
                after: e.retry_after,
            },
            Some(409) => Class::InUse,
            None | Some(500..=599) => Class::Transient {
                after: e.retry_after,
            },
            _ => Class::Fatal,
        };
        ProviderError::new(class, e.message.clone()).caused_by(e)
    }
}

pub struct Api {
    pub session: osauth::Session,
    calls: AtomicU64,
}

impl Api {
    pub fn new(session: osauth::Session) -> Self {
        Self {
            session,
            calls: AtomicU64::new(0),
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub async fn get(
        &self,
        svc: Svc,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ApiError> {
        self.call(Method::Get, svc, path, query, None).await
    }
    pub async fn post(&self, svc: Svc, path: &[&str], body: &Value) -> Result<Value, ApiError> {
        self.call(Method::Post, svc, path, &[], Some(body)).await
    }
    pub async fn put(&self, svc: Svc, path: &[&str], body: &Value) -> Result<Value, ApiError> {
        self.call(Method::Put, svc, path, &[], Some(body)).await
    }
    /// GET one resource and take `key` out of the answer; None when it is gone (404).
    pub async fn show(
        &self,
        svc: Svc,
        path: &[&str],
        key: &str,
    ) -> Result<Option<Value>, ApiError> {
        match self.get(svc, path, &[]).await {
            Ok(v) => Ok(v.get(key).cloned()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// DELETE; a resource that is already gone counts as deleted.
    pub async fn delete(&self, svc: Svc, path: &[&str]) -> Result<(), ApiError> {
        match self.call(Method::Delete, svc, path, &[], None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn call(
        &self,
        m: Method,
        svc: Svc,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let what = format!("{m:?} {svc:?} /{}", path.join("/")).to_uppercase();
        macro_rules! build {
            ($service:expr) => {{
                let s = &self.session;
                let rb = match m {
                    Method::Get => s.get($service, path),
                    Method::Post => s.post($service, path),
                    Method::Put => s.put($service, path),
                    Method::Delete => s.delete($service, path),
                };
                let rb = if query.is_empty() {
                    rb
                } else {
                    rb.query(query)
                };
                match body {
                    Some(b) => rb.json(b),
                    None => rb,
                }
            }};
        }
        let sent = match svc {
            Svc::Compute => build!(COMPUTE).api_version(NOVA).send_unchecked().await,
            Svc::Network => build!(NETWORK).send_unchecked().await,
            Svc::Image => build!(IMAGE).send_unchecked().await,
            Svc::Volume => {
                build!(BLOCK_STORAGE)
                    .header(
                        "OpenStack-API-Version",
                        format!("volume {}.{}", CINDER.0, CINDER.1),
                    )
                    .send_unchecked()
                    .await
            }
        };
        let resp = sent.map_err(|e| ApiError {
            status: None,
            message: format!("{what}: {e}"),
            retry_after: None,
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| ApiError {
            status: Some(status),
            message: format!("{what}: reading the answer: {e}"),
            retry_after,
        })?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| ApiError {
                status: Some(status),
                message: format!("{what}: not JSON: {e}"),
                retry_after: None,
            });
        }
        tracing::debug!(status, %what, "OpenStack call failed");
        Err(ApiError {
            status: Some(status),
            message: format!("{what}: HTTP {status}: {}", service_message(&text)),
            retry_after,
        })
    }
}

/// The human part of an OpenStack error body (`{"NeutronError": {"message": …}}`,
/// `{"itemNotFound": {"message": …}}`, `{"badRequest": …}`, …).
fn service_message(body: &str) -> String {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return body.chars().take(300).collect(),
    };
    fn find(v: &Value) -> Option<String> {
        match v {
            Value::Object(m) => m
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    m.get("faultstring")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .or_else(|| m.values().find_map(find)),
            _ => None,
        }
    }
    find(&v).unwrap_or_else(|| body.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_classes() {
        assert_eq!(
            service_message(
                r#"{"NeutronError": {"type": "X", "message": "Subnet in use", "detail": ""}}"#
            ),
            "Subnet in use"
        );
        assert_eq!(
            service_message(
                r#"{"forbidden": {"code": 403, "message": "Quota exceeded for cores"}}"#
            ),
            "Quota exceeded for cores"
        );
        let c = |status, msg: &str| {
            ProviderError::from(ApiError {
                status: Some(status),
                message: msg.into(),
                retry_after: None,
            })
            .class
        };
        assert_eq!(
            c(
                409,
                "Unable to complete operation on subnet: One or more ports have an IP allocation"
            ),
            Class::InUse
        );
        assert_eq!(
            c(409, "Quota exceeded for resources: ['floatingip']"),
            Class::Quota
        );
        assert_eq!(c(403, "Quota exceeded for cores"), Class::Quota);
        assert_eq!(c(503, "unavailable"), Class::Transient { after: None });
        assert_eq!(c(400, "bad"), Class::Fatal);
    }
}
