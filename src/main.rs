//! Thin entry point: parse, dispatch, map errors to exit codes.

use clap::Parser;
use provisioner::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Several rustls providers are compiled in (aws-lc via the AWS SDK, ring via
    // others); pin one before any TLS client exists. Failing means one is set already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // `provisioner … | head`: end quietly when the reader goes away, as Unix
    // tools do, instead of failing the next print (Rust ignores SIGPIPE).
    // SAFETY: restoring a signal's default disposition installs no handler
    // and touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    provisioner::ui::init_logging(cli.verbose, cli.log_json);
    let json = cli.output == cli::Output::Json;
    match cli::run(cli).await {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // Machines read the structured error on stdout; people read stderr.
            if json {
                println!("{}", cli::error_json(&e));
            }
            eprintln!("{}", cli::render_error(&e));
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
