//! `provisioner validate <env>...`

use serde::Serialize;

use super::{Cli, Output, print_json};
use crate::Error;
use crate::env::load::{Problem, Source, load};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment names or .yaml paths; all shipped environments when empty.
    pub envs: Vec<String>,
}

#[derive(Serialize)]
struct Verdict {
    environment: String,
    valid: bool,
    files: Vec<String>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let source = Source::discover(cli.environments.as_deref());
    let names: Vec<String> = if args.envs.is_empty() {
        shipped(&source)
    } else {
        args.envs.clone()
    };
    let verdicts: Vec<Verdict> = names
        .iter()
        .map(|n| match load(&source, n) {
            Ok(l) => Verdict {
                environment: l.env.name.clone(),
                valid: true,
                files: l.files.iter().map(|f| f.display().to_string()).collect(),
                errors: Vec::new(),
                warnings: l.warnings,
            },
            Err(e) => Verdict {
                environment: n.clone(),
                valid: false,
                files: Vec::new(),
                errors: e.problems(),
                warnings: Vec::new(),
            },
        })
        .collect();
    let ok = verdicts.iter().all(|v| v.valid);
    match cli.output {
        Output::Json => print_json(&verdicts)?,
        Output::Human => {
            for v in &verdicts {
                if v.valid {
                    println!("ok    {} ({})", v.environment, v.files.join(" <- "));
                } else {
                    println!("FAIL  {}", v.environment);
                    for p in &v.errors {
                        println!("  {}", p.to_string().replace('\n', "\n  "));
                    }
                }
                for w in &v.warnings {
                    println!("  warning: {}", w.to_string().replace('\n', "\n  "));
                }
            }
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// Every environment file except pure bases (files nothing names directly: base.yaml).
fn shipped(source: &Source) -> Vec<String> {
    let mut v: Vec<String> = ["staging", "production", "ci", "lab"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Source::Dir(d) = source
        && let Ok(rd) = std::fs::read_dir(d)
    {
        v = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".yaml"))
                    .map(str::to_owned)
            })
            .filter(|n| n != "base")
            .collect();
        v.sort();
    }
    v
}
