//! Objects in and out: a local folder, an HTTP(S) Zarr URL (read only) or an S3
//! prefix. The converter is synchronous (rayon), so S3 and HTTP calls are run on
//! the tokio runtime through a `Handle`; S3 writes are spawned as tasks with a
//! bounded number in flight, which is also what bounds the memory they hold.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Result, WorkloadError};
use crate::env::model::S3Location;

/// Where a store lives, parsed from a CLI argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, key: String },
    Http(String),
}

impl Location {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim_end_matches('/');
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(WorkloadError::Usage(format!(
                    "`{s}` has no bucket; write s3://bucket/prefix"
                )));
            }
            return Ok(Self::S3 {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Self::Http(s.into()));
        }
        if s.contains("://") {
            return Err(WorkloadError::Usage(format!(
                "`{s}`: only s3://, http(s):// and local paths are supported"
            )));
        }
        Ok(Self::Dir(PathBuf::from(s)))
    }

    /// The location of `child` below this one.
    pub fn join(&self, child: &str) -> Self {
        match self {
            Self::Dir(p) => Self::Dir(p.join(child)),
            Self::S3 { bucket, key } => Self::S3 {
                bucket: bucket.clone(),
                key: join_key(key, child),
            },
            Self::Http(u) => Self::Http(format!("{u}/{child}")),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Dir(p) => p.display().to_string(),
            Self::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            Self::Http(u) => u.clone(),
        }
    }
}

pub fn join_key(prefix: &str, child: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        child.to_string()
    } else {
        format!("{p}/{child}")
    }
}

/// S3 connection settings shared by the workload commands.
#[derive(Debug, Clone, Default)]
pub struct S3Opts {
    /// Non-AWS endpoint (path-style addressing is used with it).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Storage class set on every object at write time.
    pub storage_class: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl S3Opts {
    pub async fn client(&self, bucket: &str) -> Result<aws_sdk_s3::Client> {
        let loc = S3Location {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone().unwrap_or_else(|| "us-east-1".into()),
            path_style: self.endpoint.is_some(),
            access_key: None,
            secret_key: None,
            create: false,
            force_destroy: false,
        };
        crate::s3::client(&loc, "workload")
            .await
            .map_err(|e| WorkloadError::Usage(e.to_string()))
    }
}

fn s3_err<E, R>(what: String, e: &aws_sdk_s3::error::SdkError<E, R>) -> WorkloadError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error,
    R: crate::s3::HttpStatus,
{
    WorkloadError::S3 {
        what,
        msg: crate::s3::describe(e),
    }
}

// ------------------------------------------------------------------ reading

/// Read-only access to the objects of one store.
pub trait Reader: Send + Sync {
    /// `None` when the object does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Human-readable location of `key`, for errors.
    fn describe(&self, key: &str) -> String;
}

pub struct DirReader(pub PathBuf);

impl Reader for DirReader {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = self.0.join(key);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(WorkloadError::io(format!("reading {}", p.display()), e)),
        }
    }
    fn describe(&self, key: &str) -> String {
        self.0.join(key).display().to_string()
    }
}

pub struct HttpReader {
    pub base: String,
    pub client: reqwest::Client,
    pub rt: Handle,
}

impl Reader for HttpReader {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let url = format!("{}/{key}", self.base);
        self.rt.block_on(async {
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=4 {
                let res = self.client.get(&url).send().await;
                match res {
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(b) => return Ok(Some(b.to_vec())),
                        Err(e) if attempt < 4 => {
                            tracing::debug!(%url, error = %e, "body read failed; retrying")
                        }
                        Err(e) => {
                            return Err(WorkloadError::Http {
                                what: url.clone(),
                                msg: e.to_string(),
                            });
                        }
                    },
                    Ok(r) if r.status().is_server_error() && attempt < 4 => {
                        tracing::debug!(%url, status = %r.status(), "retrying")
                    }
                    Ok(r) => {
                        return Err(WorkloadError::Http {
                            what: url.clone(),
                            msg: format!("status {}", r.status()),
                        });
                    }
                    Err(e) if attempt < 4 => {
                        tracing::debug!(%url, error = %e, "request failed; retrying")
                    }
                    Err(e) => {
                        return Err(WorkloadError::Http {
                            what: url.clone(),
                            msg: e.to_string(),
                        });
                    }
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(WorkloadError::Http {
                what: url.clone(),
                msg: "retries exhausted".into(),
            })
        })
    }
    fn describe(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }
}

pub struct S3Reader {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub key: String,
    pub rt: Handle,
}

impl Reader for S3Reader {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = join_key(&self.key, key);
        self.rt.block_on(async {
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
            {
                Ok(o) => {
                    let body = o.body.collect().await.map_err(|e| WorkloadError::S3 {
                        what: format!("reading s3://{}/{full}", self.bucket),
                        msg: e.to_string(),
                    })?;
                    Ok(Some(body.into_bytes().to_vec()))
                }
                Err(e) => {
                    let (status, code) = crate::s3::status_and_code(&e);
                    if status == Some(404) || code.as_deref() == Some("NoSuchKey") {
                        Ok(None)
                    } else {
                        Err(s3_err(format!("GET s3://{}/{full}", self.bucket), &e))
                    }
                }
            }
        })
    }
    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, join_key(&self.key, key))
    }
}

/// A reader for a store location; HTTP and S3 need the runtime handle.
pub async fn reader(loc: &Location, s3: &S3Opts) -> Result<Arc<dyn Reader>> {
    Ok(match loc {
        Location::Dir(p) => Arc::new(DirReader(p.clone())),
        Location::Http(u) => Arc::new(HttpReader {
            base: u.clone(),
            client: http_client()?,
            rt: Handle::current(),
        }),
        Location::S3 { bucket, key } => Arc::new(S3Reader {
            client: s3.client(bucket).await?,
            bucket: bucket.clone(),
            key: key.clone(),
            rt: Handle::current(),
        }),
    })
}

pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| WorkloadError::Http {
            what: "client".into(),
            msg: e.to_string(),
        })
}

// ------------------------------------------------------------------ writing

/// A streamed object: bytes go out as they are written (S3: multipart parts).
pub trait ObjectWrite: Send {
    fn write(&mut self, buf: &[u8]) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Where output objects go. Keys are relative to the store root.
pub trait Sink: Send + Sync {
    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    fn open(&self, key: &str) -> Result<Box<dyn ObjectWrite>>;
    /// Wait until every write so far is durable; the first error wins.
    fn flush(&self) -> Result<()>;
    /// Delete everything under the store root (a rerun starts clean).
    fn clear(&self) -> Result<usize>;
    /// Objects and bytes written so far.
    fn written(&self) -> (u64, u64);
    fn url(&self) -> String;
}

#[derive(Default)]
struct Counters {
    objects: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn add(&self, bytes: u64) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn get(&self) -> (u64, u64) {
        (
            self.objects.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

pub struct DirSink {
    root: PathBuf,
    counters: Arc<Counters>,
}

impl DirSink {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            counters: Arc::default(),
        }
    }
    fn path(&self, key: &str) -> Result<PathBuf> {
        let p = self.root.join(key);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| WorkloadError::io(format!("creating {}", parent.display()), e))?;
        }
        Ok(p)
    }
}

struct DirObject {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    len: u64,
    counters: Arc<Counters>,
}

impl ObjectWrite for DirObject {
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        use std::io::Write;
        self.file
            .write_all(buf)
            .map_err(|e| WorkloadError::io(format!("writing {}", self.path.display()), e))?;
        self.len += buf.len() as u64;
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<()> {
        use std::io::Write;
        let mut file = self.file;
        file.flush()
            .map_err(|e| WorkloadError::io(format!("writing {}", self.path.display()), e))?;
        self.counters.add(self.len);
        Ok(())
    }
}

impl Sink for DirSink {
    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let p = self.path(key)?;
        std::fs::write(&p, &bytes)
            .map_err(|e| WorkloadError::io(format!("writing {}", p.display()), e))?;
        self.counters.add(bytes.len() as u64);
        Ok(())
    }
    fn open(&self, key: &str) -> Result<Box<dyn ObjectWrite>> {
        let path = self.path(key)?;
        let file = std::fs::File::create(&path)
            .map_err(|e| WorkloadError::io(format!("creating {}", path.display()), e))?;
        Ok(Box::new(DirObject {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            path,
            len: 0,
            counters: self.counters.clone(),
        }))
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn clear(&self) -> Result<usize> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(WorkloadError::io(
                format!("removing {}", self.root.display()),
                e,
            )),
        }
    }
    fn written(&self) -> (u64, u64) {
        self.counters.get()
    }
    fn url(&self) -> String {
        self.root.display().to_string()
    }
}

/// Multipart part size: S3's minimum is 5 MiB; 8 MiB keeps few parts per shard
/// and, times the concurrency, bounds the bytes held in flight.
const PART: usize = 8 << 20;

struct S3Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    root: String,
    storage_class: Option<StorageClass>,
    rt: Handle,
    permits: Arc<Semaphore>,
    pending: Mutex<Vec<JoinHandle<Result<()>>>>,
    counters: Counters,
}

/// Writes under `s3://bucket/root/`, at most `concurrency` requests at once.
pub struct S3Sink(Arc<S3Inner>);

impl S3Sink {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, root: String, opts: &S3Opts) -> Self {
        Self(Arc::new(S3Inner {
            client,
            bucket,
            root,
            storage_class: opts.storage_class.as_deref().map(StorageClass::from),
            rt: Handle::current(),
            permits: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            pending: Mutex::new(Vec::new()),
            counters: Counters::default(),
        }))
    }
}

impl S3Inner {
    fn key(&self, key: &str) -> String {
        join_key(&self.root, key)
    }

    /// Surface errors of finished tasks early and keep the list short.
    fn reap(&self) -> Result<()> {
        let done: Vec<JoinHandle<Result<()>>> = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (done, running): (Vec<_>, Vec<_>) =
                pending.drain(..).partition(JoinHandle::is_finished);
            *pending = running;
            done
        };
        for h in done {
            join(&self.rt, h)?;
        }
        Ok(())
    }

    fn spawn_put(self: &Arc<Self>, key: String, bytes: Vec<u8>) -> Result<()> {
        self.reap()?;
        let permit = self
            .rt
            .block_on(self.permits.clone().acquire_owned())
            .map_err(|e| WorkloadError::Usage(e.to_string()))?;
        let me = self.clone();
        let h = self.rt.spawn(async move {
            let _permit = permit;
            let len = bytes.len() as u64;
            let full = me.key(&key);
            let mut req = me
                .client
                .put_object()
                .bucket(&me.bucket)
                .key(&full)
                .body(ByteStream::from(bytes));
            if let Some(c) = &me.storage_class {
                req = req.storage_class(c.clone());
            }
            req.send()
                .await
                .map_err(|e| s3_err(format!("PUT s3://{}/{full}", me.bucket), &e))?;
            me.counters.add(len);
            Ok(())
        });
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(h);
        Ok(())
    }
}

fn join<T>(rt: &Handle, h: JoinHandle<Result<T>>) -> Result<T> {
    rt.block_on(h)
        .map_err(|e| WorkloadError::Usage(format!("upload task failed: {e}")))?
}

struct S3Object {
    inner: Arc<S3Inner>,
    key: String,
    buf: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<JoinHandle<Result<CompletedPart>>>,
    len: u64,
}

impl S3Object {
    fn send_part(&mut self, data: Vec<u8>) -> Result<()> {
        let inner = self.inner.clone();
        let full = inner.key(&self.key);
        if self.upload_id.is_none() {
            let mut req = inner
                .client
                .create_multipart_upload()
                .bucket(&inner.bucket)
                .key(&full);
            if let Some(c) = &inner.storage_class {
                req = req.storage_class(c.clone());
            }
            let out = inner.rt.block_on(req.send()).map_err(|e| {
                s3_err(
                    format!("starting multipart upload of s3://{}/{full}", inner.bucket),
                    &e,
                )
            })?;
            self.upload_id = out.upload_id;
        }
        let Some(upload_id) = self.upload_id.clone() else {
            return Err(WorkloadError::S3 {
                what: format!("s3://{}/{full}", inner.bucket),
                msg: "the server returned no upload id".into(),
            });
        };
        let n = i32::try_from(self.parts.len() + 1)
            .map_err(|_| WorkloadError::Usage("too many parts".into()))?;
        let permit = inner
            .rt
            .block_on(inner.permits.clone().acquire_owned())
            .map_err(|e| WorkloadError::Usage(e.to_string()))?;
        let h = inner.rt.spawn({
            let inner = inner.clone();
            async move {
                let _permit = permit;
                let out = inner
                    .client
                    .upload_part()
                    .bucket(&inner.bucket)
                    .key(&full)
                    .upload_id(upload_id)
                    .part_number(n)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| {
                        s3_err(
                            format!("uploading part {n} of s3://{}/{full}", inner.bucket),
                            &e,
                        )
                    })?;
                Ok(CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(out.e_tag)
                    .build())
            }
        });
        self.parts.push(h);
        Ok(())
    }

    fn abort(&self) {
        if let Some(id) = &self.upload_id {
            let full = self.inner.key(&self.key);
            let _ = self.inner.rt.block_on(
                self.inner
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.inner.bucket)
                    .key(full)
                    .upload_id(id)
                    .send(),
            );
        }
    }
}

impl ObjectWrite for S3Object {
    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (PART - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == PART {
                let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART));
                if let Err(e) = self.send_part(part) {
                    self.abort();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if self.upload_id.is_none() {
            // Small object: one PUT, no multipart round trips.
            let buf = std::mem::take(&mut self.buf);
            return self.inner.spawn_put(self.key.clone(), buf);
        }
        if !self.buf.is_empty() {
            let part = std::mem::take(&mut self.buf);
            if let Err(e) = self.send_part(part) {
                self.abort();
                return Err(e);
            }
        }
        let mut parts = Vec::with_capacity(self.parts.len());
        for h in std::mem::take(&mut self.parts) {
            match join(&self.inner.rt, h) {
                Ok(p) => parts.push(p),
                Err(e) => {
                    self.abort();
                    return Err(e);
                }
            }
        }
        let inner = self.inner.clone();
        let full = inner.key(&self.key);
        let req = inner
            .client
            .complete_multipart_upload()
            .bucket(&inner.bucket)
            .key(&full)
            .set_upload_id(self.upload_id.clone())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if let Err(e) = inner.rt.block_on(req.send()) {
            self.abort();
            return Err(s3_err(
                format!("completing s3://{}/{full}", inner.bucket),
                &e,
            ));
        }
        inner.counters.add(self.len);
        Ok(())
    }
}

impl Sink for S3Sink {
    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.0.spawn_put(key.to_string(), bytes)
    }
    fn open(&self, key: &str) -> Result<Box<dyn ObjectWrite>> {
        Ok(Box::new(S3Object {
            inner: self.0.clone(),
            key: key.to_string(),
            buf: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            len: 0,
        }))
    }
    fn flush(&self) -> Result<()> {
        let all: Vec<_> = std::mem::take(
            &mut *self
                .0
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut first = None;
        for h in all {
            if let Err(e) = join(&self.0.rt, h) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
    fn clear(&self) -> Result<usize> {
        let inner = &self.0;
        let prefix = format!("{}/", inner.root.trim_end_matches('/'));
        inner
            .rt
            .block_on(delete_prefix(&inner.client, &inner.bucket, &prefix))
    }
    fn written(&self) -> (u64, u64) {
        self.0.counters.get()
    }
    fn url(&self) -> String {
        format!("s3://{}/{}", self.0.bucket, self.0.root)
    }
}

/// Every key under `prefix`, with its storage class (missing = STANDARD).
pub async fn list(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, String, i64)>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| s3_err(format!("listing s3://{bucket}/{prefix}"), &e))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                let class = o
                    .storage_class()
                    .map_or_else(|| "STANDARD".to_string(), |c| c.as_str().to_string());
                out.push((k.to_string(), class, o.size().unwrap_or(0)));
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// Delete every object under `prefix` in batches of 1000; returns the count.
pub async fn delete_prefix(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<usize> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let keys = list(client, bucket, prefix).await?;
    for batch in keys.chunks(1000) {
        let ids: Vec<ObjectIdentifier> = batch
            .iter()
            .filter_map(|(k, _, _)| ObjectIdentifier::builder().key(k).build().ok())
            .collect();
        let del = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| WorkloadError::Usage(e.to_string()))?;
        let out = client
            .delete_objects()
            .bucket(bucket)
            .delete(del)
            .send()
            .await
            .map_err(|e| s3_err(format!("deleting under s3://{bucket}/{prefix}"), &e))?;
        if let Some(err) = out.errors().first() {
            return Err(WorkloadError::S3 {
                what: format!("deleting s3://{bucket}/{}", err.key().unwrap_or("?")),
                msg: err.message().unwrap_or("failed").into(),
            });
        }
    }
    Ok(keys.len())
}

/// The sink for an output location.
pub async fn sink(loc: &Location, s3: &S3Opts) -> Result<Arc<dyn Sink>> {
    Ok(match loc {
        Location::Dir(p) => Arc::new(DirSink::new(p.clone())),
        Location::S3 { bucket, key } => Arc::new(S3Sink::new(
            s3.client(bucket).await?,
            bucket.clone(),
            key.clone(),
            s3,
        )),
        Location::Http(u) => {
            return Err(WorkloadError::Usage(format!(
                "cannot write to {u}: use s3:// or a folder"
            )));
        }
    })
}
