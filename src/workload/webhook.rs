//! The pipeline's webhook without an event bus: `POST <endpoint>` with
//! `Authorization: Bearer <token>` and `{"source_url": "...", "collection":
//! "..."}` creates a Workflow from the WorkflowTemplate (as the Argo Events
//! sensor would), answering 202 with its name. A missing or wrong token is
//! 401, a bad body 400 (with why), an unknown path 404, `GET /healthz` 200.
//! The token is compared in constant time and never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::WorkloadError;
use crate::core::Secret;

/// What the webhook accepts and where it submits.
pub struct Hook {
    pub endpoint: String,
    pub token: Secret,
    pub namespace: String,
    pub template: String,
    /// Accepted collections (empty: any).
    pub collections: Vec<String>,
    pub source_pattern: regex::Regex,
    pub max_body: usize,
}

/// Creates the Workflow; the cluster in production, anything in tests.
#[async_trait::async_trait]
pub trait Submit: Send + Sync {
    async fn submit(&self, workflow: &Value) -> Result<String, String>;
}

#[async_trait::async_trait]
impl Submit for crate::k8s::client::Cluster {
    async fn submit(&self, workflow: &Value) -> Result<String, String> {
        let created = self.create(workflow).await.map_err(|e| e.to_string())?;
        Ok(created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

impl Hook {
    /// The Workflow a payload asks for, or why the payload is refused.
    pub fn workflow(&self, payload: &Value) -> Result<Value, String> {
        let source = payload
            .get("source_url")
            .and_then(Value::as_str)
            .ok_or("the body needs \"source_url\" (a string)")?;
        let collection = payload
            .get("collection")
            .and_then(Value::as_str)
            .ok_or("the body needs \"collection\" (a string)")?;
        if !self.source_pattern.is_match(source) {
            return Err(format!(
                "source_url does not match {}",
                self.source_pattern.as_str()
            ));
        }
        if !self.collections.is_empty() && !self.collections.iter().any(|c| c == collection) {
            return Err(format!(
                "collection must be one of {}",
                self.collections.join(", ")
            ));
        }
        Ok(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": { "generateName": format!("{}-", self.template), "namespace": self.namespace, "labels": { "workflows.argoproj.io/workflow-template": self.template, "provisioner.io/submitted-by": "webhook" } },
            "spec": {
                "workflowTemplateRef": { "name": self.template },
                "arguments": { "parameters": [ { "name": "source_url", "value": source }, { "name": "collection", "value": collection } ] },
            },
        }))
    }

    pub async fn handle(
        &self,
        req: Request<Incoming>,
        submit: &dyn Submit,
    ) -> Response<Full<Bytes>> {
        if req.method() == Method::GET && req.uri().path() == "/healthz" {
            return reply(StatusCode::OK, json!({ "ok": true }));
        }
        if req.uri().path() != self.endpoint {
            return reply(
                StatusCode::NOT_FOUND,
                json!({ "error": format!("POST {} is the only endpoint", self.endpoint) }),
            );
        }
        if req.method() != Method::POST {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "error": "use POST" }),
            );
        }
        let auth = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(auth.as_bytes(), self.token.expose().as_bytes()) {
            tracing::warn!("refused a request without the right bearer token");
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "a valid `Authorization: Bearer <token>` header is required" }),
            );
        }
        let body = match Limited::new(req.into_body(), self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({ "error": format!("the body is larger than {} bytes (or could not be read)", self.max_body) }),
                );
            }
        };
        let payload: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("the body is not JSON: {e}") }),
                );
            }
        };
        let wf = match self.workflow(&payload) {
            Ok(w) => w,
            Err(e) => return reply(StatusCode::BAD_REQUEST, json!({ "error": e })),
        };
        match submit.submit(&wf).await {
            Ok(name) => {
                tracing::info!(workflow = %name, "submitted");
                reply(
                    StatusCode::ACCEPTED,
                    json!({ "workflow": name, "namespace": self.namespace }),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "could not create the workflow");
                reply(
                    StatusCode::BAD_GATEWAY,
                    json!({ "error": format!("could not create the workflow: {e}") }),
                )
            }
        }
    }
}

/// Serve until the process is stopped.
pub async fn serve(
    hook: Arc<Hook>,
    listen: SocketAddr,
    submit: Arc<dyn Submit>,
) -> Result<(), WorkloadError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| WorkloadError::io(format!("listening on {listen}"), e))?;
    tracing::info!(%listen, endpoint = %hook.endpoint, "webhook listening");
    loop {
        let (stream, peer) = listener
            .accept()
            .await
            .map_err(|e| WorkloadError::io("accepting a connection", e))?;
        let (hook, submit) = (hook.clone(), submit.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (hook, submit) = (hook.clone(), submit.clone());
                async move { Ok::<_, std::convert::Infallible>(hook.handle(req, submit.as_ref()).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> Hook {
        Hook {
            endpoint: "/geozarr".into(),
            token: Secret::new("t0k3n".into()),
            namespace: "geozarr".into(),
            template: "geozarr-pipeline".into(),
            collections: vec!["sentinel-2-l2a".into()],
            source_pattern: regex::Regex::new("^(https?|s3)://[^ ]+$").unwrap(),
            max_body: 1024,
        }
    }

    #[test]
    fn payloads_become_workflows_or_are_refused_with_why() {
        let h = hook();
        let wf = h.workflow(&json!({"source_url": "https://stac.example/items/x", "collection": "sentinel-2-l2a"})).unwrap();
        assert_eq!(
            wf["spec"]["workflowTemplateRef"]["name"],
            "geozarr-pipeline"
        );
        assert_eq!(
            wf["spec"]["arguments"]["parameters"][0]["value"],
            "https://stac.example/items/x"
        );
        assert!(
            h.workflow(&json!({"collection": "sentinel-2-l2a"}))
                .unwrap_err()
                .contains("source_url")
        );
        assert!(
            h.workflow(
                &json!({"source_url": "file:///etc/passwd", "collection": "sentinel-2-l2a"})
            )
            .unwrap_err()
            .contains("does not match")
        );
        assert!(
            h.workflow(&json!({"source_url": "s3://b/k", "collection": "other"}))
                .unwrap_err()
                .contains("one of")
        );
        assert!(
            constant_time_eq(b"abc", b"abc")
                && !constant_time_eq(b"abc", b"abd")
                && !constant_time_eq(b"abc", b"ab")
        );
    }
}
