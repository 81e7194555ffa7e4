//! From what a user or a workflow passes (`--source`) to a Zarr location: a
//! STAC item URL (its `product`, else `zarr`, else any `.zarr` asset), a Zarr
//! URL (https:// or s3://) or a local path. The item id is the basename with
//! `.json`/`.zarr` removed; the output path and the registered item use it.

use serde_json::Value;

use super::io::{Location, http_client};
use super::{Result, WorkloadError};

#[derive(Debug, Clone)]
pub struct Resolved {
    pub location: Location,
    pub item_id: String,
    /// The STAC item the source came from, when it came from one.
    pub item_url: Option<String>,
    pub item: Option<Value>,
}

pub fn is_item_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && (s.contains("/items/") || s.ends_with(".json"))
}

/// Basename of a URL or path without `.json`/`.zarr` (and query string).
pub fn item_id(s: &str) -> String {
    let s = s
        .split(['?', '#'])
        .next()
        .unwrap_or(s)
        .trim_end_matches('/');
    let base = s.rsplit('/').next().unwrap_or(s);
    base.trim_end_matches(".json")
        .trim_end_matches(".zarr")
        .to_string()
}

/// The Zarr href of a STAC item: `product`, then `zarr`, then any `.zarr` href.
pub fn zarr_href(item: &Value) -> Option<String> {
    let assets = item.get("assets")?.as_object()?;
    for k in ["product", "zarr"] {
        if let Some(h) = assets
            .get(k)
            .and_then(|a| a.get("href"))
            .and_then(Value::as_str)
        {
            return Some(h.to_string());
        }
    }
    assets
        .values()
        .filter_map(|a| a.get("href").and_then(Value::as_str))
        .find(|h| h.contains(".zarr"))
        .map(|h| {
            // An asset inside the store (…/x.zarr/measurements/…) points at its root.
            match h.find(".zarr") {
                Some(i) => h[..i + 5].to_string(),
                None => h.to_string(),
            }
        })
}

pub async fn resolve(src: &str) -> Result<Resolved> {
    if is_item_url(src) {
        let client = http_client()?;
        let resp = client
            .get(src)
            .send()
            .await
            .map_err(|e| WorkloadError::Http {
                what: format!("GET {src}"),
                msg: e.to_string(),
            })?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(WorkloadError::SourceNotFound(src.to_string()));
        }
        if !resp.status().is_success() {
            return Err(WorkloadError::Http {
                what: format!("GET {src}"),
                msg: format!("status {}", resp.status()),
            });
        }
        let item: Value = resp
            .json()
            .await
            .map_err(|e| WorkloadError::product(src, format!("not a STAC item: {e}")))?;
        let href = zarr_href(&item).ok_or_else(|| WorkloadError::product(src, "no Zarr asset (looked for assets.product, assets.zarr, then any href containing .zarr)"))?;
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| item_id(src), str::to_owned);
        return Ok(Resolved {
            location: Location::parse(&href)?,
            item_id: id,
            item_url: Some(src.to_string()),
            item: Some(item),
        });
    }
    let location = Location::parse(src)?;
    if let Location::Dir(p) = &location
        && !p.exists()
    {
        return Err(WorkloadError::SourceNotFound(p.display().to_string()));
    }
    Ok(Resolved {
        location,
        item_id: item_id(src),
        item_url: None,
        item: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_hrefs_follow_the_reference_rules() {
        assert_eq!(
            item_id("https://stac.example/collections/s2/items/S2A_X"),
            "S2A_X"
        );
        assert_eq!(item_id("s3://b/p/S2A_X.zarr/"), "S2A_X");
        assert_eq!(item_id("/tmp/S2A_X.json"), "S2A_X");
        assert!(is_item_url("https://h/collections/c/items/x"));
        assert!(!is_item_url("https://h/x.zarr"));
        let item = json!({"assets": {"SR_10m": {"href": "https://h/b/x.zarr/measurements/reflectance/r10m"}, "zarr": {"href": "s3://b/x.zarr"}}});
        assert_eq!(zarr_href(&item).as_deref(), Some("s3://b/x.zarr"));
        let item = json!({"assets": {"SR_10m": {"href": "https://h/b/x.zarr/measurements/reflectance/r10m"}}});
        assert_eq!(zarr_href(&item).as_deref(), Some("https://h/b/x.zarr"));
    }
}
