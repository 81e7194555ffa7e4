//! Shared by `up`, `destroy` and `deploy`: run the session's converge, then
//! report what was done for people or machines.

use std::path::Path;

use serde::Serialize;

use super::{ApplyOpts, ApproveOpts, Cli, Output, Terminal, open_session_with, print_json};
use crate::Error;
use crate::plan::diff::Summary;
use crate::plan::executor::Report;
use crate::plan::render::FORMAT_VERSION;
use crate::plan::saved::SavedPlan;
use crate::plan::session::{Operation, Request, Source};

#[derive(Serialize)]
struct Outcome<'a> {
    format_version: &'static str,
    environment: &'a str,
    operation: &'a str,
    summary: Summary,
    report: &'a Report,
    errors: Vec<String>,
    /// Provider API calls this run made (0 when no API was touched).
    api_calls: u64,
}

/// Plan (or read `saved`), get approval, apply, report. Exit 0, or the
/// apply's errors.
pub async fn run(
    cli: &Cli,
    operation: Operation,
    opts: &ApplyOpts,
    approve: &ApproveOpts,
    saved: Option<&Path>,
) -> Result<i32, Error> {
    let session = open_session_with(cli, opts).await?;
    run_in(cli, session, operation, opts, approve, saved).await
}

/// The same, in a session the caller opened (`certs rotate`'s).
pub async fn run_in(
    cli: &Cli,
    mut session: crate::plan::session::Session,
    operation: Operation,
    opts: &ApplyOpts,
    approve: &ApproveOpts,
    saved: Option<&Path>,
) -> Result<i32, Error> {
    let request = Request {
        operation,
        targets: opts.target.clone(),
        refresh: opts.refresh,
    };
    let source = match saved {
        Some(path) => {
            let plan = SavedPlan::read(path)?;
            if !opts.target.is_empty() {
                return Err(Error::Usage("--target cannot narrow a saved plan: the plan file already says what is applied".into()));
            }
            Source::Saved {
                plan: Box::new(plan),
                path,
            }
        }
        None => Source::Fresh(&request),
    };
    let approval = approve.approval(saved.is_some());
    let mut applied = session
        .converge(source, &approval, opts.lock_timeout, &Terminal::new(cli))
        .await?;
    let errors = std::mem::take(&mut applied.report.errors);
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let r = &applied.report;
    match cli.output {
        Output::Json => print_json(&Outcome {
            format_version: FORMAT_VERSION,
            environment: session.env_name(),
            operation: applied.operation.as_str(),
            summary: applied.summary,
            report: r,
            errors: messages,
            api_calls: applied.api_calls,
        })?,
        Output::Human => println!(
            "{} `{}`: {} created, {} adopted, {} updated, {} deleted.",
            applied.operation.as_str(),
            session.env_name(),
            r.created.len(),
            r.adopted.len(),
            r.updated.len(),
            r.deleted.len()
        ),
    }
    if errors.is_empty() {
        Ok(0)
    } else {
        Err(Error::Apply(errors))
    }
}
