//! `provisioner collections create|update|clean`: STAC collections for the workload.

use serde::Serialize;
use serde_json::Value;

use super::workload::{S3Args, StacArgs};
use super::{Cli, Output, print_json};
use crate::Error;
use crate::workload::WorkloadError;
use crate::workload::io::delete_prefix;
use crate::workload::stac::{default_collection, store_roots};

#[derive(Debug, clap::Args)]
pub struct Doc {
    /// Collection id.
    pub id: String,
    /// A collection JSON document; without it a default Sentinel-2 GeoZarr collection is used.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub stac: StacArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create a collection (fails if it exists).
    Create(Doc),
    /// Replace a collection's document (fails if it does not exist).
    Update(Doc),
    /// Delete every item of a collection, optionally with its S3 data first.
    Clean {
        id: String,
        /// Also delete each item's Zarr store (alternate.s3 hrefs) before the item.
        #[arg(long)]
        delete_data: bool,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        stac: StacArgs,
        #[command(flatten)]
        s3: S3Args,
    },
}

#[derive(Serialize)]
struct CleanReport {
    collection: String,
    dry_run: bool,
    items: usize,
    objects_deleted: usize,
    items_deleted: usize,
}

fn load_doc(d: &Doc) -> Result<Value, Error> {
    let mut doc = match &d.file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Error::Usage(format!("reading {}: {e}", p.display())))?;
            serde_json::from_str::<Value>(&text).map_err(|e| {
                Error::Usage(format!(
                    "{}:{}:{}: not JSON: {e}",
                    p.display(),
                    e.line(),
                    e.column()
                ))
            })?
        }
        None => default_collection(&d.id, d.title.as_deref(), d.description.as_deref()),
    };
    match doc.get("id").and_then(Value::as_str) {
        Some(id) if id != d.id => {
            return Err(Error::Usage(format!(
                "the document's id `{id}` differs from `{}`; make them equal",
                d.id
            )));
        }
        _ => doc["id"] = Value::from(d.id.clone()),
    }
    if let Some(t) = &d.title {
        doc["title"] = Value::from(t.clone());
    }
    Ok(doc)
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<i32, Error> {
    match cmd {
        Cmd::Create(d) | Cmd::Update(d) => {
            let doc = load_doc(d)?;
            let client = d.stac.client()?;
            let verb = if matches!(cmd, Cmd::Create(_)) {
                client.create_collection(&doc).await?;
                "created"
            } else {
                client.update_collection(&doc).await?;
                "updated"
            };
            match cli.output {
                Output::Json => {
                    print_json(&serde_json::json!({"collection": d.id, "result": verb}))?
                }
                Output::Human => println!("{verb} collection {}", d.id),
            }
            Ok(0)
        }
        Cmd::Clean {
            id,
            delete_data,
            dry_run,
            stac,
            s3,
        } => {
            let client = stac.client()?;
            let items = client.items(id).await?;
            let mut rep = CleanReport {
                collection: id.clone(),
                dry_run: *dry_run,
                items: items.len(),
                objects_deleted: 0,
                items_deleted: 0,
            };
            let opts = s3.opts(None);
            for item in &items {
                let item_id = item["id"].as_str().unwrap_or_default();
                if *delete_data {
                    for root in store_roots(item) {
                        let rest = root.trim_start_matches("s3://");
                        let (bucket, key) = rest.split_once('/').ok_or_else(|| {
                            WorkloadError::Usage(format!("bad store href {root}"))
                        })?;
                        let s3c = opts.client(bucket).await?;
                        if *dry_run {
                            rep.objects_deleted +=
                                crate::workload::io::list(&s3c, bucket, &format!("{key}/"))
                                    .await?
                                    .len();
                        } else {
                            // Data first: an item is never left pointing at half-deleted data
                            // without the item itself still listing where the rest is.
                            rep.objects_deleted +=
                                delete_prefix(&s3c, bucket, &format!("{key}/")).await?;
                        }
                    }
                }
                if !*dry_run {
                    client.delete_item(id, item_id).await?;
                    rep.items_deleted += 1;
                }
            }
            match cli.output {
                Output::Json => print_json(&rep)?,
                Output::Human => {
                    let verb = if rep.dry_run {
                        "would delete"
                    } else {
                        "deleted"
                    };
                    println!(
                        "{}: {} items; {verb} {} items and {} objects",
                        rep.collection,
                        rep.items,
                        if rep.dry_run {
                            rep.items
                        } else {
                            rep.items_deleted
                        },
                        rep.objects_deleted
                    );
                }
            }
            Ok(0)
        }
    }
}
