//! `provisioner workload synth --out <dir|s3://…>`

use super::{S3Args, blocking};
use crate::Error;
use crate::cli::{Cli, Output, print_json};
use crate::workload::eopf::ProductType;
use crate::workload::io::{Location, sink};
use crate::workload::source::item_id;
use crate::workload::synth::{self, Chunking, Options};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Product {
    L2a,
    L1c,
    /// Sentinel-1 IW GRD (VV + VH).
    S1Grd,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the product (a folder or s3://bucket/prefix/<id>.zarr).
    #[arg(long)]
    pub out: String,
    #[arg(long, value_enum, default_value_t = Product::L2a)]
    pub product: Product,
    /// full (10980² at r10m), small (1830²), tiny (366²) or an r10m edge in
    /// pixels; for s1-grd: full (16677 × 26064), small or tiny.
    #[arg(long, default_value = "small")]
    pub size: String,
    /// Source chunking: small (1830/915/305) or real (5490² at r10m, else one chunk).
    #[arg(long, value_enum, default_value_t = Chunking::Small)]
    pub chunking: Chunking,
    /// s1-grd only: `grd` = 1 + line + 2·pixel instead of SAR amplitudes, so a
    /// converted value tells where it was read (use tiny or small: full overflows u16).
    #[arg(long)]
    pub ramp: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

pub async fn run(cli: &Cli, a: &Args) -> Result<i32, Error> {
    if a.ramp && !matches!(a.product, Product::S1Grd) {
        return Err(Error::Usage("--ramp is for --product s1-grd".into()));
    }
    let product = match a.product {
        Product::L2a => ProductType::L2A,
        Product::L1c => ProductType::L1C,
        Product::S1Grd => return run_s1(cli, a).await,
    };
    let loc = Location::parse(&a.out)?;
    // The product id is the store's basename, as `convert` will derive it.
    let id = Some(item_id(&a.out))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| Options::default_id(product).to_string());
    let opts = Options {
        product,
        size: Options::size_from(&a.size)?,
        chunking: a.chunking,
        id,
    };
    let out = sink(&loc, &a.s3.opts(None)).await?;
    let report = blocking(move || synth::generate(out.as_ref(), &opts)).await?;
    show(cli, &report)
}

async fn run_s1(cli: &Cli, a: &Args) -> Result<i32, Error> {
    use crate::workload::synth_s1::{self, DEFAULT_ID, S1Options, S1Size};
    let loc = Location::parse(&a.out)?;
    let id = Some(item_id(&a.out))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_ID.to_string());
    let opts = S1Options {
        size: S1Size::from_name(&a.size)?,
        id,
        ramp: a.ramp,
    };
    let out = sink(&loc, &a.s3.opts(None)).await?;
    let report = blocking(move || synth_s1::generate(out.as_ref(), &opts)).await?;
    show(cli, &report)
}

fn show(cli: &Cli, report: &synth::Report) -> Result<i32, Error> {
    match cli.output {
        Output::Json => print_json(report)?,
        Output::Human => println!(
            "wrote {} ({} objects, {:.1} MB) in {:.1} s",
            report.path,
            report.objects,
            report.bytes as f64 / 1e6,
            report.seconds
        ),
    }
    Ok(0)
}
