//! `provisioner workload convert --source <item|zarr|path> --dest <s3://…|dir> --collection <id>`

use std::sync::Arc;

use super::{ProductArgs, S3Args, blocking};
use crate::Error;
use crate::cli::{Cli, Output, print_json};
use crate::workload::WorkloadError;
use crate::workload::convert::{self, Options};
use crate::workload::eopf::Product;
use crate::workload::io::{reader, sink};
use crate::workload::source::resolve;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub product: ProductArgs,
    /// Target inner chunk edge in pixels (256 in production).
    #[arg(long, default_value_t = 256)]
    pub spatial_chunk: u64,
    /// Output CRS of a Sentinel-1 product: EPSG:4326 (default, like the reference),
    /// `utm` (the zone of the scene centre) or EPSG:326zz/327zz. Sentinel-2 keeps its grid.
    #[arg(long)]
    pub crs: Option<String>,
    /// Storage class set on every object at write time (e.g. STANDARD, STANDARD_IA, EXPRESS_ONEZONE).
    #[arg(long)]
    pub storage_class: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
}

pub async fn run(cli: &Cli, a: &Args) -> Result<i32, Error> {
    if a.spatial_chunk < 16 {
        return Err(Error::Usage(format!(
            "--spatial-chunk {} is too small; use 16 or more (256 in production)",
            a.spatial_chunk
        )));
    }
    let src = match resolve(&a.product.source).await {
        Err(e @ WorkloadError::SourceNotFound(_)) => return not_found(e),
        other => other?,
    };
    let opts = a.s3.opts(a.storage_class.clone());
    let out_loc = a.product.store(&src.item_id)?;
    let input = reader(&src.location, &opts).await?;
    let output = sink(&out_loc, &opts).await?;
    let bar = crate::ui::bar(cli.output == Output::Human);
    let conv = Options {
        spatial_chunk: a.spatial_chunk,
        crs: a.crs.clone(),
    };
    let bar2 = bar.clone();
    let result = blocking(move || {
        let p = Product::open(Arc::clone(&input))?;
        convert::convert(&p, output.as_ref(), &conv, &bar2)
    })
    .await;
    bar.finish_and_clear();
    let report = match result {
        Err(Error::Workload(e @ WorkloadError::SourceNotFound(_))) => return not_found(e),
        other => other?,
    };
    match cli.output {
        Output::Json => print_json(&report)?,
        Output::Human => {
            println!("converted {} → {}", a.product.source, report.output);
            for l in &report.levels {
                println!(
                    "  {:<9} {:>5}×{:<5} inner {:>3}  {}",
                    l.level,
                    l.shape[0],
                    l.shape[1],
                    l.inner_chunk,
                    l.variables.join(" ")
                );
            }
            println!(
                "  {} copied arrays; {} of {} source chunks fetched; {} objects, {:.1} MB in {:.1} s",
                report.copied_arrays,
                report.source_chunk_reads,
                report.source_chunks,
                report.objects,
                report.bytes as f64 / 1e6,
                report.seconds
            );
        }
    }
    Ok(0)
}

/// Exit 2: the source is missing, which retrying will not fix.
fn not_found(e: WorkloadError) -> Result<i32, Error> {
    eprintln!("error: {e}");
    Ok(2)
}
