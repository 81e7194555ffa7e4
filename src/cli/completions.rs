//! `provisioner completions <shell>`

use clap::CommandFactory;

use super::Cli;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub shell: clap_complete::Shell,
}

pub fn run(a: &Args) -> Result<i32, Error> {
    clap_complete::generate(
        a.shell,
        &mut Cli::command(),
        "provisioner",
        &mut std::io::stdout(),
    );
    Ok(0)
}
