//! `provisioner render ENV [--release R]… [--out DIR]`: the releases as
//! Kubernetes YAML, offline, with the capabilities of the environment's
//! Kubernetes version. Secret values never appear: Secrets carry tokens.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use super::{Cli, Output, load_env, print_json};
use crate::Error;
use crate::charts::Catalog;
use crate::plan::desired::{Inputs, desired};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment name or path to a .yaml file.
    pub env: String,
    /// Only these releases (default: every release of the selected stacks).
    #[arg(long)]
    pub release: Vec<String>,
    /// Write `DIR/<nn>-<release>.yaml` (CRDs first in each file) instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override a release value: RELEASE.path.to.key=value.
    #[arg(long = "set", value_name = "RELEASE.KEY=VALUE")]
    pub set: Vec<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let loaded = load_env(cli, &args.env)?;
    let catalog = Catalog::discover()?;
    let sets: Vec<(String, Value)> = args
        .set
        .iter()
        .map(|s| crate::charts::values::parse_set(s))
        .collect::<Result<_, _>>()?;
    let model = desired(
        &loaded.env,
        &Inputs {
            catalog: Some(&catalog),
            capabilities: None,
            sets: &sets,
            revisions: Default::default(),
            pod_cidrs: Default::default(),
            images: crate::image::for_env(&loaded.env)?,
            node_image: None,
        },
    )?;
    let releases: Vec<_> = model
        .iter()
        .filter(|d| d.spec.kind == "release")
        .filter(|d| args.release.is_empty() || args.release.iter().any(|r| r == d.address.name()))
        .collect();
    if let Some(missing) = args
        .release
        .iter()
        .find(|r| !releases.iter().any(|d| d.address.name() == r.as_str()))
    {
        return Err(Error::Usage(format!(
            "no release `{missing}` in `{}`; releases: {}",
            loaded.env.name,
            model
                .iter()
                .filter(|d| d.spec.kind == "release")
                .map(|d| d.address.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if cli.output == Output::Json {
        let docs: Vec<Value> = releases.iter().map(|d| serde_json::json!({ "release": d.address.name(), "namespace": d.attrs.get("namespace"), "objects": d.attrs.get("objects") })).collect();
        return print_json(&docs).map(|()| 0);
    }
    for (i, d) in releases.iter().enumerate() {
        let mut text = String::new();
        for (key, body) in d
            .attrs
            .get("objects")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let yaml = serde_saphyr::to_string(body).map_err(|e| Error::Output {
                what: format!("YAML of {key}"),
                source: std::io::Error::other(e),
            })?;
            let _ = write!(text, "---\n# {key} (release {})\n{yaml}", d.address.name());
        }
        match &args.out {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| Error::Output {
                    what: dir.display().to_string(),
                    source,
                })?;
                let path = dir.join(format!("{:02}-{}.yaml", i + 1, d.address.name()));
                std::fs::write(&path, text).map_err(|source| Error::Output {
                    what: path.display().to_string(),
                    source,
                })?;
                eprintln!("wrote {}", path.display());
            }
            None => print!("{text}"),
        }
    }
    Ok(0)
}
