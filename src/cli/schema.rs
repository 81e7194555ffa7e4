//! `provisioner schema`: JSON Schema of environment files, for editors
//! (e.g. `# yaml-language-server: $schema=...`).

use crate::Error;
use crate::env::model::Environment;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_: &Args) -> Result<i32, Error> {
    let mut schema = schemars::schema_for!(Environment);
    schema.insert("title".into(), "provisioner environment file".into());
    super::print_json(&schema)?;
    Ok(0)
}
