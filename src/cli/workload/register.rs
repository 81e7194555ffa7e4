//! `provisioner workload register --source … --dest s3://… --collection … --stac-api-url …`

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{ProductArgs, S3Args, StacArgs, blocking};
use crate::Error;
use crate::cli::{Cli, Output, print_json};
use crate::workload::WorkloadError;
use crate::workload::eopf::Product;
use crate::workload::io::{Location, list, reader};
use crate::workload::source::resolve;
use crate::workload::stac::{Converted, Links, RasterFlavor, Upsert, build_item};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The same --source, --dest and --collection as `workload convert` (--dest: s3://).
    #[command(flatten)]
    pub product: ProductArgs,
    #[command(flatten)]
    pub stac: StacArgs,
    /// TiTiler base URL for the viewer/xyz/tilejson links and the thumbnail.
    #[arg(long, env = "RASTER_API_URL")]
    pub raster_api_url: Option<String>,
    /// Link form: titiler-eopf (production) or titiler.xarray.
    #[arg(long, value_enum, default_value_t = RasterFlavor::Eopf)]
    pub raster_flavor: RasterFlavor,
    /// Public HTTPS base of the bucket (an S3 gateway); default: the S3 endpoint, path-style.
    #[arg(long)]
    pub public_base_url: Option<String>,
    /// Explorer base URL for the `via` link.
    #[arg(long, env = "EXPLORER_BASE_URL")]
    pub explorer_url: Option<String>,
    /// Days until `expires`; 0 leaves it out.
    #[arg(long, default_value_t = 183)]
    pub retention_days: i64,
    /// Print the item instead of sending it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Serialize)]
struct Outcome {
    item_id: String,
    collection: String,
    item_url: String,
    result: Option<Upsert>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<Value>,
}

pub async fn run(cli: &Cli, a: &Args) -> Result<i32, Error> {
    let src = resolve(&a.product.source).await?;
    let store = a.product.store(&src.item_id)?;
    let Location::S3 { bucket, key } = &store else {
        return Err(Error::Usage(format!(
            "--dest {}: registration needs an s3:// destination (the item's assets point at it)",
            a.product.dest
        )));
    };
    let opts = a.s3.opts(None);
    let out = reader(&store, &opts).await?;
    let source_reader = match &src.item {
        Some(_) => None,
        None => Some(reader(&src.location, &opts).await?),
    };
    let store_url = store.url();
    let (root, source_item) = blocking(move || {
        let root = out.get("zarr.json")?.ok_or_else(|| WorkloadError::product(&store_url, "no zarr.json at the store root: the conversion is missing or incomplete; run `workload convert` first"))?;
        let root: Value = serde_json::from_slice(&root).map_err(|e| WorkloadError::product(&store_url, format!("zarr.json: {e}")))?;
        let source = match source_reader {
            Some(r) => Product::open(Arc::clone(&r))?.stac_discovery().cloned().unwrap_or(Value::Null),
            None => Value::Null,
        };
        Ok((root, source))
    })
    .await?;
    let source_item = src.item.clone().unwrap_or(source_item);

    // The tier the objects were written with: the most common class under the store.
    let client = opts.client(bucket).await?;
    let objects = list(&client, bucket, &format!("{key}/")).await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, class, _) in &objects {
        *counts.entry(class.clone()).or_default() += 1;
    }
    let tier = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or_else(|| "STANDARD".to_string(), |(c, _)| c);

    let public_base = a
        .public_base_url
        .clone()
        .or_else(|| a.s3.s3_endpoint.clone())
        .unwrap_or_else(|| "https://s3.amazonaws.com".into());
    let converted = Converted {
        item_id: src.item_id.clone(),
        collection: a.product.collection.clone(),
        s3_url: store.url(),
        public_url: format!("{}/{bucket}/{key}", public_base.trim_end_matches('/')),
        root,
        tier,
        s3_endpoint: public_endpoint(a.s3.s3_endpoint.as_deref()),
        bucket: bucket.clone(),
        region: a.s3.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
    };
    let links = Links {
        collection_url: Some(format!(
            "{}/collections/{}",
            a.stac.stac_api_url.trim_end_matches('/'),
            a.product.collection
        )),
        raster_api: a.raster_api_url.clone(),
        flavor: a.raster_flavor,
        source_item_url: src.item_url.clone(),
        explorer_url: a.explorer_url.clone(),
        retention_days: a.retention_days,
    };
    let item = build_item(&converted, &source_item, &links, chrono::Utc::now())?;
    let item_url = format!(
        "{}/collections/{}/items/{}",
        a.stac.stac_api_url.trim_end_matches('/'),
        a.product.collection,
        src.item_id
    );
    let result = if a.dry_run {
        None
    } else {
        Some(
            a.stac
                .client()?
                .upsert_item(&a.product.collection, &item)
                .await?,
        )
    };
    let outcome = Outcome {
        item_id: src.item_id,
        collection: a.product.collection.clone(),
        item_url,
        result,
        item: a.dry_run.then_some(item),
    };
    match cli.output {
        Output::Json => print_json(&outcome)?,
        Output::Human => match (outcome.result, &outcome.item) {
            (Some(r), _) => println!("{:?} {}", r, outcome.item_url),
            (None, Some(item)) => {
                println!("{}", serde_json::to_string_pretty(item).unwrap_or_default())
            }
            _ => {}
        },
    }
    Ok(0)
}

/// The endpoint for the storage scheme: the one used, else AWS's.
fn public_endpoint(endpoint: Option<&str>) -> String {
    endpoint
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "https://s3.amazonaws.com".into())
}
