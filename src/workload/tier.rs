//! Change the storage class of a registered item's objects (the reference's
//! change-storage-tier step): list the store, filter by include/exclude
//! patterns relative to the Zarr root, copy each object onto itself with the new
//! class (bounded concurrency instead of one at a time), then record the tier
//! in the item's `alternate.s3` storage scheme.

use aws_sdk_s3::types::{MetadataDirective, StorageClass};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;

use super::glob::matches;
use super::io::{S3Opts, list};
use super::stac::{Client, store_roots};
use super::{Result, WorkloadError};

#[derive(Debug, Serialize)]
pub struct Report {
    pub item: String,
    pub storage_class: String,
    pub dry_run: bool,
    pub listed: usize,
    pub selected: usize,
    pub changed: usize,
    pub already: usize,
    pub failed: Vec<String>,
    /// Whether the STAC item was updated with the new tier.
    pub item_updated: bool,
}

pub struct Request<'a> {
    pub item_url: &'a str,
    pub storage_class: &'a str,
    pub include: &'a [String],
    pub exclude: &'a [String],
    pub dry_run: bool,
}

fn split_s3(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| WorkloadError::Usage(format!("`{url}` is not an s3:// URL")))?;
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((b.to_string(), k.to_string()))
}

pub async fn run(stac: &Client, s3: &S3Opts, r: &Request<'_>) -> Result<Report> {
    let mut item = stac
        .get(r.item_url)
        .await?
        .ok_or_else(|| WorkloadError::SourceNotFound(r.item_url.to_string()))?;
    let roots = store_roots(&item);
    if roots.is_empty() {
        return Err(WorkloadError::product(
            r.item_url,
            "no asset has alternate.s3.href pointing into a .zarr store; was it registered by `workload register`?",
        ));
    }
    let mut rep = Report {
        item: r.item_url.into(),
        storage_class: r.storage_class.into(),
        dry_run: r.dry_run,
        listed: 0,
        selected: 0,
        changed: 0,
        already: 0,
        failed: Vec::new(),
        item_updated: false,
    };
    let target = StorageClass::from(r.storage_class);
    for root in &roots {
        let (bucket, key) = split_s3(root)?;
        let client = s3.client(&bucket).await?;
        let objects = list(&client, &bucket, &format!("{key}/")).await?;
        rep.listed += objects.len();
        let selected: Vec<(String, String)> = objects
            .into_iter()
            .filter_map(|(k, class, _)| {
                let rel = k.strip_prefix(&format!("{key}/"))?.to_string();
                let inc = r.include.is_empty() || r.include.iter().any(|p| matches(p, &rel));
                let exc = r.exclude.iter().any(|p| matches(p, &rel));
                (inc && !exc).then_some((k, class))
            })
            .collect();
        rep.selected += selected.len();
        let todo: Vec<String> = selected
            .iter()
            .filter(|(_, c)| c != r.storage_class)
            .map(|(k, _)| k.clone())
            .collect();
        rep.already += selected.len() - todo.len();
        if r.dry_run {
            rep.changed += todo.len();
            continue;
        }
        let results: Vec<(String, std::result::Result<(), String>)> = stream::iter(todo)
            .map(|k| {
                let (client, bucket, target) = (client.clone(), bucket.clone(), target.clone());
                async move {
                    let res = client
                        .copy_object()
                        .bucket(&bucket)
                        .key(&k)
                        .copy_source(format!(
                            "{bucket}/{}",
                            super::stac::urlencode(&k).replace("%2F", "/")
                        ))
                        .storage_class(target)
                        .metadata_directive(MetadataDirective::Copy)
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| crate::s3::describe(&e));
                    (k, res)
                }
            })
            .buffer_unordered(s3.concurrency.max(1))
            .collect()
            .await;
        for (k, res) in results {
            match res {
                Ok(()) => rep.changed += 1,
                Err(e) => rep.failed.push(format!("s3://{bucket}/{k}: {e}")),
            }
        }
    }
    // Record the tier only when every object of the item now has it.
    if !r.dry_run && rep.failed.is_empty() && r.include.is_empty() && r.exclude.is_empty() {
        if let Some(assets) = item["assets"].as_object_mut() {
            for a in assets.values_mut() {
                if let Some(s) = a.pointer_mut("/alternate/s3/storage:scheme") {
                    s["tier"] = Value::from(r.storage_class);
                }
            }
        }
        if let Some(s) = item.pointer_mut(&format!(
            "/properties/storage:schemes/{}",
            super::stac::STORAGE_SCHEME
        )) {
            s["storage_class"] = Value::from(r.storage_class);
        }
        stac.put_url(r.item_url, &item).await?;
        rep.item_updated = true;
    }
    Ok(rep)
}
