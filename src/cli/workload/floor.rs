//! `provisioner workload floor --source <product> --converted <dir>`

use std::sync::Arc;

use super::{S3Args, blocking};
use crate::Error;
use crate::cli::{Cli, Output, print_json};
use crate::workload::eopf::Product;
use crate::workload::floor;
use crate::workload::io::{Location, reader};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source product (folder, s3:// or https:// Zarr URL).
    #[arg(long)]
    pub source: String,
    /// The converted store (the output of `workload convert`).
    #[arg(long)]
    pub converted: String,
    #[command(flatten)]
    pub s3: S3Args,
}

pub async fn run(cli: &Cli, a: &Args) -> Result<i32, Error> {
    let opts = a.s3.opts(None);
    let src = reader(&Location::parse(&a.source)?, &opts).await?;
    let out = reader(&Location::parse(&a.converted)?, &opts).await?;
    let f = blocking(move || {
        let p = Product::open(Arc::clone(&src))?;
        floor::measure(&p, out.as_ref())
    })
    .await?;
    match cli.output {
        Output::Json => print_json(&f)?,
        Output::Human => println!(
            "codec floor {:.2} s (decode {:.2} s of {} chunks, encode {:.2} s of {} chunks)",
            f.floor_s, f.decode_s, f.source_chunks, f.encode_s, f.output_chunks
        ),
    }
    Ok(0)
}
