//! S3 buckets the environment creates (`create: true`): the workload's output
//! bucket and the etcd snapshot bucket. Ownership is a bucket tag, so a bucket
//! created by a run that died before saving state is adopted, and someone
//! else's bucket of the same name is refused.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, Tag, Tagging};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::{Class, Live, Provider, ProviderError};
use crate::core::Address;
use crate::env::model::{Environment, S3Location};
use crate::s3::{describe, status_and_code};
use crate::state::Record;

pub const TAG_ENV: &str = "provisioner:environment";
pub const TAG_ADDRESS: &str = "provisioner:address";

struct Target {
    loc: S3Location,
    what: &'static str,
    client: OnceCell<Client>,
}

pub struct BucketProvider {
    env: String,
    targets: BTreeMap<String, Target>,
}

impl BucketProvider {
    pub fn new(env: &Environment) -> Self {
        let mut targets = BTreeMap::new();
        // Only buckets the environment creates are ours to read, adopt and delete.
        if let Some(w) = env.workload.as_ref().filter(|w| w.s3.create) {
            targets.insert(
                "bucket.workload".to_owned(),
                Target {
                    loc: w.s3.clone(),
                    what: "workload.s3",
                    client: OnceCell::new(),
                },
            );
        }
        if let Some(s) = env.cluster.etcd_snapshots.s3.as_ref().filter(|s| s.create) {
            targets.insert(
                "bucket.etcd_snapshots".to_owned(),
                Target {
                    loc: s.clone(),
                    what: "cluster.etcd_snapshots.s3",
                    client: OnceCell::new(),
                },
            );
        }
        Self {
            env: env.name.clone(),
            targets,
        }
    }

    async fn target(&self, addr: &Address) -> Result<(&Target, &Client), ProviderError> {
        let t = self.targets.get(addr.as_str()).ok_or_else(|| {
            ProviderError::fatal(format!(
                "{addr}: no bucket with that address in this environment"
            ))
        })?;
        let c = t
            .client
            .get_or_try_init(|| async {
                crate::s3::client(&t.loc, t.what)
                    .await
                    .map_err(|e| ProviderError::fatal(e.to_string()))
            })
            .await?;
        Ok((t, c))
    }

    fn attrs(&self, t: &Target) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert("bucket".into(), json!(t.loc.bucket));
        m.insert(
            "endpoint".into(),
            json!(t.loc.endpoint.clone().unwrap_or_else(|| "aws".into())),
        );
        m.insert("force_destroy".into(), json!(t.loc.force_destroy));
        m.insert("tags".into(), json!({ TAG_ENV: self.env }));
        m
    }

    /// The bucket's tags, or None when it does not exist.
    async fn tags(
        &self,
        c: &Client,
        bucket: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
        match c.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) if status_and_code(&e).0 == Some(404) => return Ok(None),
            Err(e) => {
                return Err(classify(
                    &format!("head bucket {bucket}"),
                    status_and_code(&e).0,
                    describe(&e),
                ));
            }
        }
        match c.get_bucket_tagging().bucket(bucket).send().await {
            Ok(o) => Ok(Some(
                o.tag_set()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect(),
            )),
            Err(e)
                if status_and_code(&e).1.as_deref() == Some("NoSuchTagSet")
                    || status_and_code(&e).0 == Some(404) =>
            {
                Ok(Some(BTreeMap::new()))
            }
            Err(e) => Err(classify(
                &format!("tags of {bucket}"),
                status_and_code(&e).0,
                describe(&e),
            )),
        }
    }

    async fn put_tags(
        &self,
        c: &Client,
        bucket: &str,
        addr: &Address,
    ) -> Result<(), ProviderError> {
        let tag = |k: &str, v: &str| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| ProviderError::fatal(e.to_string()))
        };
        let tagging = Tagging::builder()
            .tag_set(tag(TAG_ENV, &self.env)?)
            .tag_set(tag(TAG_ADDRESS, addr.as_str())?)
            .build()
            .map_err(|e| ProviderError::fatal(e.to_string()))?;
        c.put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| {
                classify(
                    &format!("tag bucket {bucket}"),
                    status_and_code(&e).0,
                    describe(&e),
                )
            })?;
        Ok(())
    }

    fn owned(&self, tags: &BTreeMap<String, String>, addr: &Address) -> bool {
        tags.get(TAG_ENV) == Some(&self.env)
            && tags.get(TAG_ADDRESS).map(String::as_str) == Some(addr.as_str())
    }

    async fn empty(&self, c: &Client, bucket: &str) -> Result<usize, ProviderError> {
        let mut removed = 0;
        loop {
            let page = c
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| {
                    classify(
                        &format!("list {bucket}"),
                        status_and_code(&e).0,
                        describe(&e),
                    )
                })?;
            let ids: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if ids.is_empty() {
                return Ok(removed);
            }
            removed += ids.len();
            let del = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| ProviderError::fatal(e.to_string()))?;
            c.delete_objects()
                .bucket(bucket)
                .delete(del)
                .send()
                .await
                .map_err(|e| {
                    classify(
                        &format!("empty {bucket}"),
                        status_and_code(&e).0,
                        describe(&e),
                    )
                })?;
        }
    }
}

/// Map an S3 failure onto the retry classes.
fn classify(what: &str, status: Option<u16>, message: String) -> ProviderError {
    let class = match status {
        None | Some(429 | 500..=599) => Class::Transient { after: None },
        Some(409) => Class::InUse,
        _ => Class::Fatal,
    };
    ProviderError::new(class, format!("{what}: {message}"))
}

#[async_trait]
impl Provider for BucketProvider {
    fn kinds(&self) -> &'static [&'static str] {
        &["bucket"]
    }

    async fn read(&self, addr: &Address, _rec: &Record) -> Result<Option<Live>, ProviderError> {
        let (t, c) = self.target(addr).await?;
        Ok(self.tags(c, &t.loc.bucket).await?.map(|tags| {
            let mut attrs = self.attrs(t);
            attrs.insert(
                "tags".into(),
                json!(
                    tags.iter()
                        .filter(|(k, _)| k.as_str() == TAG_ENV)
                        .collect::<BTreeMap<_, _>>()
                ),
            );
            Live {
                id: t.loc.bucket.clone(),
                attrs,
                ..Live::default()
            }
        }))
    }

    async fn find(
        &self,
        addr: &Address,
        _: &BTreeMap<String, Value>,
        interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let (t, c) = self.target(addr).await?;
        let Some(tags) = self.tags(c, &t.loc.bucket).await? else {
            return Ok(None);
        };
        if self.owned(&tags, addr) {
            return Ok(Some(Live {
                id: t.loc.bucket.clone(),
                attrs: self.attrs(t),
                ..Live::default()
            }));
        }
        // Our own create that died between CreateBucket and tagging leaves an untagged bucket.
        if interrupted && tags.is_empty() {
            self.put_tags(c, &t.loc.bucket, addr).await?;
            return Ok(Some(Live {
                id: t.loc.bucket.clone(),
                attrs: self.attrs(t),
                ..Live::default()
            }));
        }
        Err(ProviderError::fatal(format!(
            "{addr}: bucket {} already exists and is not owned by environment `{}` (tags: {tags:?})\n  hint: choose another bucket name, or set `create: false` to use it as it is",
            t.loc.bucket, self.env
        )))
    }

    async fn create(
        &self,
        addr: &Address,
        _attrs: &BTreeMap<String, Value>,
    ) -> Result<Live, ProviderError> {
        let (t, c) = self.target(addr).await?;
        let bucket = &t.loc.bucket;
        match c.create_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) if status_and_code(&e).1.as_deref() == Some("BucketAlreadyOwnedByYou") => {}
            Err(e) => {
                let (status, code) = status_and_code(&e);
                if code.as_deref() == Some("BucketAlreadyExists") {
                    return Err(ProviderError::fatal(format!(
                        "{addr}: bucket name {bucket} is taken by another account; choose another name"
                    )));
                }
                return Err(classify(
                    &format!("create bucket {bucket}"),
                    status,
                    describe(&e),
                ));
            }
        }
        self.put_tags(c, bucket, addr).await?;
        Ok(Live {
            id: bucket.clone(),
            attrs: self.attrs(t),
            ..Live::default()
        })
    }

    async fn update(
        &self,
        addr: &Address,
        _rec: &Record,
        _attrs: &BTreeMap<String, Value>,
    ) -> Result<Live, ProviderError> {
        // force_destroy lives only in state; tags are re-applied.
        let (t, c) = self.target(addr).await?;
        self.put_tags(c, &t.loc.bucket, addr).await?;
        Ok(Live {
            id: t.loc.bucket.clone(),
            attrs: self.attrs(t),
            ..Live::default()
        })
    }

    async fn delete(&self, addr: &Address, rec: &Record) -> Result<(), ProviderError> {
        let (t, c) = self.target(addr).await?;
        let bucket = rec.id.as_deref().unwrap_or(&t.loc.bucket);
        let force = rec
            .attrs
            .get("force_destroy")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if force {
            let n = self.empty(c, bucket).await?;
            if n > 0 {
                tracing::warn!(
                    bucket,
                    objects = n,
                    "force_destroy: deleted the bucket's objects"
                );
            }
        }
        match c.delete_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if status_and_code(&e).0 == Some(404) => Ok(()),
            Err(e) if status_and_code(&e).1.as_deref() == Some("BucketNotEmpty") => {
                Err(ProviderError::fatal(format!(
                    "{addr}: bucket {bucket} is not empty; nothing was deleted\n  hint: move the data, or set `force_destroy: true` to delete it with the bucket"
                )))
            }
            Err(e) => Err(classify(
                &format!("delete bucket {bucket}"),
                status_and_code(&e).0,
                describe(&e),
            )),
        }
    }

    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError> {
        let mut out = Vec::new();
        for name in self.targets.keys() {
            let Some(addr) = Address::parse(name) else {
                continue;
            };
            let (t, c) = self.target(&addr).await?;
            if let Some(tags) = self.tags(c, &t.loc.bucket).await?
                && self.owned(&tags, &addr)
            {
                out.push((
                    addr,
                    Live {
                        id: t.loc.bucket.clone(),
                        attrs: self.attrs(t),
                        ..Live::default()
                    },
                ));
            }
        }
        Ok(out)
    }
}
