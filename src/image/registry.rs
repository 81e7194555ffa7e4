//! The one place that talks to an OCI registry (distribution API v2): ping,
//! authentication (basic, or bearer tokens from the realm the registry names),
//! blob existence, chunked blob uploads, manifests. A blob the registry
//! already has is never sent again. Errors name the registry and, for
//! refused credentials, the user; a registry's HTTP body is reduced to its
//! error codes and messages; the password is never part of one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

use super::oci;
use crate::core::Secret;

/// Bytes per PATCH of a chunked upload.
pub const CHUNK: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} refused {who} ({status})\n  hint: {hint}")]
    Unauthorized {
        registry: String,
        who: String,
        status: u16,
        hint: String,
    },
    #[error("registry {registry}: {op}: HTTP {status}: {message}")]
    Status {
        registry: String,
        op: String,
        status: u16,
        message: String,
    },
    #[error("registry {registry}: {op}: {source}")]
    Http {
        registry: String,
        op: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {registry}: {message}\n  hint: {hint}")]
    Config {
        registry: String,
        message: String,
        hint: String,
    },
}

impl RegistryError {
    /// Worth retrying: the registry or the network failed, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
            RegistryError::Http { source, .. } => source.is_connect() || source.is_timeout(),
            _ => false,
        }
    }
}

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://host[:port]` (or `http://` when insecure).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file of a CA to trust besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Plain HTTP or unverified TLS: only when the environment says so.
    pub insecure: bool,
}

/// What a push did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PushReport {
    pub uploaded: u64,
    pub skipped: u64,
    pub bytes_uploaded: u64,
}

pub struct Registry {
    base: reqwest::Url,
    /// `host[:port]`, as image references name it.
    pub host: String,
    http: reqwest::Client,
    username: Option<String>,
    password: Option<Secret>,
    /// The Authorization header value that works, once known.
    auth: Mutex<Option<String>>,
    calls: AtomicU64,
}

struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

fn parse_challenge(v: &str) -> Challenge {
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while let Some((k, after)) = s.split_once('=') {
        let (val, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((val, tail)) => (val, tail),
                None => (q, ""),
            }
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        params.push((k.trim().trim_start_matches(',').trim().to_lowercase(), val.to_owned()));
        s = tail.trim_start_matches(',').trim();
    }
    Challenge { scheme: scheme.to_lowercase(), params }
}

/// The error codes and messages of a registry's error body, else its first line.
fn explain(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(errors) = v.get("errors").and_then(Value::as_array)
    {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.get("code").and_then(Value::as_str).unwrap_or(""),
                    e.get("message").and_then(Value::as_str).unwrap_or("")
                )
                .trim()
                .to_owned()
            })
            .collect();
        return parts.join("; ");
    }
    let line = body.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

impl Registry {
    pub fn new(ep: &Endpoint) -> Result<Self, RegistryError> {
        let config = |message: String, hint: &str| RegistryError::Config {
            registry: ep.url.clone(),
            message,
            hint: hint.into(),
        };
        let base = reqwest::Url::parse(&ep.url)
            .map_err(|e| config(format!("`{}` is not a URL: {e}", ep.url), "e.g. https://registry.example.org"))?;
        if base.scheme() == "http" && !ep.insecure {
            return Err(config(
                "plain HTTP would send the credentials in clear".into(),
                "use https://, or set `registry.insecure: true` if you mean it",
            ));
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(config("the URL has no host".into(), "e.g. https://registry.example.org")),
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(300));
        if let Some(ca) = &ep.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| config(format!("cannot read ca_file {}: {e}", ca.display()), "registry.ca_file names a PEM file"))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| config(format!("ca_file {}: {e}", ca.display()), "registry.ca_file must hold a PEM certificate"))?;
            b = b.add_root_certificate(cert);
        }
        if ep.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| config(format!("HTTP client: {e}"), "check registry.ca_file"))?;
        Ok(Self {
            base,
            host,
            http,
            username: ep.username.clone(),
            password: ep.password.clone(),
            auth: Mutex::new(None),
            calls: AtomicU64::new(0),
        })
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn who(&self) -> String {
        self.username
            .as_deref()
            .map_or_else(|| "anonymous access".into(), |u| format!("the credentials of user `{u}`"))
    }

    fn http_err(&self, op: &str) -> impl FnOnce(reqwest::Error) -> RegistryError + '_ {
        let op = op.to_owned();
        move |source| RegistryError::Http { registry: self.host.clone(), op, source }
    }

    fn basic(&self) -> Option<String> {
        let user = self.username.as_deref()?;
        let pass = self.password.as_ref().map_or("", Secret::expose);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    }

    fn current_auth(&self) -> Option<String> {
        self.auth.lock().map_or(None, |a| a.clone())
    }

    /// Send a request; on 401, authenticate as the challenge says (once) and retry.
    async fn send(
        &self,
        op: &str,
        repo: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        for attempt in 0..2 {
            let mut rb = build(&self.http);
            if let Some(a) = self.current_auth() {
                rb = rb.header(header::AUTHORIZATION, a);
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            let resp = rb.send().await.map_err(self.http_err(op))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(parse_challenge);
            if attempt == 1 || challenge.is_none() {
                return Err(self.unauthorized(401));
            }
            let Some(c) = challenge else { break };
            let value = match c.scheme.as_str() {
                "basic" => self.basic().ok_or_else(|| self.unauthorized(401))?,
                "bearer" => self.token(&c, repo).await?,
                other => {
                    return Err(RegistryError::Config {
                        registry: self.host.clone(),
                        message: format!("asks for `{other}` authentication"),
                        hint: "only basic and bearer token authentication are supported".into(),
                    });
                }
            };
            if let Ok(mut a) = self.auth.lock() {
                *a = Some(value);
            }
        }
        Err(self.unauthorized(401))
    }

    fn unauthorized(&self, status: u16) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.host.clone(),
            who: self.who(),
            status,
            hint: if self.username.is_some() {
                "check registry.username and the secret registry.password reads".into()
            } else {
                "this registry needs registry.username and registry.password".into()
            },
        }
    }

    /// A bearer token from the realm, for pull and push on `repo`.
    async fn token(&self, c: &Challenge, repo: &str) -> Result<String, RegistryError> {
        let param = |k: &str| c.params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let realm = param("realm").ok_or_else(|| RegistryError::Config {
            registry: self.host.clone(),
            message: "a bearer challenge without a realm".into(),
            hint: "the registry's token service is misconfigured".into(),
        })?;
        let mut query = vec![("scope".to_owned(), format!("repository:{repo}:pull,push"))];
        if let Some(s) = param("service") {
            query.push(("service".into(), s));
        }
        let mut rb = self.http.get(&realm).query(&query);
        if let Some(b) = self.basic() {
            rb = rb.header(header::AUTHORIZATION, b);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let resp = rb.send().await.map_err(self.http_err("token"))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(status.as_u16()));
        }
        let body: Value = self.check(resp, "token").await?.json().await.map_err(self.http_err("token"))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .ok_or_else(|| RegistryError::Config {
                registry: self.host.clone(),
                message: "the token service answered without a token".into(),
                hint: "the registry's token service is misconfigured".into(),
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// The response when its status is a success, else an error with the registry's words.
    async fn check(&self, resp: reqwest::Response, op: &str) -> Result<reqwest::Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(403));
        }
        let body = resp.text().await.unwrap_or_default();
        Err(RegistryError::Status {
            registry: self.host.clone(),
            op: op.into(),
            status: status.as_u16(),
            message: explain(&body),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// The registry answers and accepts our credentials (`GET /v2/`).
    pub async fn ping(&self, repo: &str) -> Result<(), RegistryError> {
        let url = self.url("/v2/");
        let resp = self.send("ping", repo, |c| c.get(&url)).await?;
        self.check(resp, "ping").await.map(drop)
    }

    async fn exists(&self, repo: &str, what: &str, reference: &str, accept: Option<&str>) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/{what}/{reference}"));
        let op = format!("HEAD {what}/{reference}");
        let resp = self
            .send(&op, repo, |c| {
                let rb = c.head(&url);
                match accept {
                    Some(a) => rb.header(header::ACCEPT, a),
                    None => rb,
                }
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            _ => self.check(resp, &op).await.map(|_| true),
        }
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        self.exists(repo, "blobs", digest, None).await
    }

    pub async fn manifest_exists(&self, repo: &str, reference: &str) -> Result<bool, RegistryError> {
        self.exists(repo, "manifests", reference, Some(oci::MANIFEST)).await
    }

    /// Where an upload continues: the Location header, resolved against the registry.
    fn location(&self, resp: &reqwest::Response, op: &str) -> Result<reqwest::Url, RegistryError> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                registry: self.host.clone(),
                op: op.into(),
                status: resp.status().as_u16(),
                message: "no Location header".into(),
            })?;
        self.base.join(loc).map_err(|e| RegistryError::Status {
            registry: self.host.clone(),
            op: op.into(),
            status: resp.status().as_u16(),
            message: format!("bad Location `{loc}`: {e}"),
        })
    }

    /// Upload one blob in chunks of `CHUNK` bytes (POST, PATCH…, PUT ?digest=).
    pub async fn upload_blob(&self, repo: &str, digest: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let op = format!("upload {digest}");
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.send(&op, repo, |c| c.post(&start).header(header::CONTENT_LENGTH, 0)).await?;
        let resp = self.check(resp, &op).await?;
        let mut at = self.location(&resp, &op)?;
        let mut offset = 0usize;
        for chunk in bytes.chunks(CHUNK) {
            let end = offset + chunk.len();
            let range = format!("{offset}-{}", end - 1);
            let url = at.clone();
            let body = bytes::Bytes::copy_from_slice(chunk);
            let resp = self
                .send(&op, repo, |c| {
                    c.request(Method::PATCH, url.clone())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_RANGE, range.clone())
                        .body(body.clone())
                })
                .await?;
            let resp = self.check(resp, &op).await?;
            at = self.location(&resp, &op)?;
            offset = end;
        }
        at.query_pairs_mut().append_pair("digest", digest);
        let resp = self
            .send(&op, repo, |c| c.put(at.clone()).header(header::CONTENT_LENGTH, 0))
            .await?;
        self.check(resp, &op).await.map(drop)
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, manifest: &[u8]) -> Result<String, RegistryError> {
        let op = format!("PUT manifests/{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let body = bytes::Bytes::copy_from_slice(manifest);
        let resp = self
            .send(&op, repo, |c| {
                c.put(&url)
                    .header(header::CONTENT_TYPE, oci::MANIFEST)
                    .body(body.clone())
            })
            .await?;
        let resp = self.check(resp, &op).await?;
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned())
    }

    /// Push a built image: each blob unless the registry has it, then the
    /// manifest by digest and by tag.
    pub async fn push(
        &self,
        image: &super::Built,
        blobs: &super::cache::Blobs,
    ) -> Result<PushReport, super::ImageError> {
        let repo = &image.repository;
        let mut report = PushReport::default();
        for d in image.blobs() {
            if self.blob_exists(repo, &d.digest).await? {
                report.skipped += 1;
                continue;
            }
            let bytes = blobs.read(&d.digest)?;
            tracing::info!(registry = %self.host, repository = %repo, digest = %d.digest, bytes = bytes.len(), "uploading blob");
            self.upload_blob(repo, &d.digest, &bytes).await?;
            report.uploaded += 1;
            report.bytes_uploaded += bytes.len() as u64;
        }
        let said = self.put_manifest(repo, &image.digest, &image.manifest_bytes).await?;
        if !said.is_empty() && said != image.digest {
            return Err(RegistryError::Status {
                registry: self.host.clone(),
                op: "PUT manifest".into(),
                status: 201,
                message: format!("stored it as {said}, not {}", image.digest),
            }
            .into());
        }
        self.put_manifest(repo, &image.tag, &image.manifest_bytes).await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_error_bodies() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:eo/x:pull""#);
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(c.params[1], ("service".into(), "registry.example".into()));
        assert_eq!(c.params.len(), 3);
        let c = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(c.scheme, "basic");
        assert_eq!(
            explain(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#),
            "UNAUTHORIZED authentication required"
        );
        assert_eq!(explain("<html>\n<body>"), "<html>");
    }

    #[test]
    fn plain_http_needs_consent() {
        let ep = Endpoint { url: "http://r.example:5000".into(), username: None, password: None, ca_file: None, insecure: false };
        let e = Registry::new(&ep).err().unwrap();
        assert!(e.to_string().contains("insecure: true"), "{e}");
        let ok = Registry::new(&Endpoint { insecure: true, ..ep }).unwrap();
        assert_eq!(ok.host, "r.example:5000");
    }
}
