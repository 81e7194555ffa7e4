//! The command line: one file per subcommand, shared plumbing here.

mod apply;
mod certs;
mod collections;
mod completions;
mod deploy;
mod destroy;
mod etcd;
mod image;
mod plan;
mod releases;
mod render;
mod rollback;
mod schema;
mod state;
mod status;
mod up;
mod validate;
mod workload;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::Error;
use crate::env::load::{Loaded, Source, load};
use crate::plan::approval::Confirm;
use crate::plan::render::{PlanDoc, human};
use crate::plan::session::{Session, Ui};
use crate::provider::Options;

#[derive(Debug, Parser)]
#[command(
    name = "provisioner",
    version,
    about = "From an empty OpenStack project to a working EO data platform, from one environment file"
)]
pub struct Cli {
    /// Folder of environment files (default: ./environments, else the embedded set).
    #[arg(long, global = true, env = "PROVISIONER_ENVIRONMENTS")]
    pub environments: Option<PathBuf>,
    /// Folder for local state (overrides `state.path`).
    #[arg(long, global = true, env = "PROVISIONER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// clouds.yaml entry to use (overrides `cloud.name`); `OS_*` variables when neither is set.
    #[arg(long, global = true)]
    pub cloud: Option<String>,
    /// Kubeconfig for the platform layer (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Server-side apply: take over fields another field manager owns instead of stopping.
    #[arg(long, global = true)]
    pub force_conflicts: bool,
    /// Do not wait for releases to become ready after applying them.
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// Folder holding `charts/` and `stacks/` (default: ./ when both exist, else the embedded set).
    #[arg(long, global = true, env = "PROVISIONER_CHARTS")]
    pub charts: Option<PathBuf>,
    /// `human` for people, `json` for machines (stdout).
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// More log detail (-v debug, -vv trace).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Logs as JSON lines on stderr.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check environment files: schema, overlays, cross-field rules.
    Validate(validate::Args),
    /// Print the JSON Schema of environment files (for editors).
    Schema(schema::Args),
    /// Show what `up` would change. Exit 0: no change, 2: changes, 1: error.
    Plan(plan::Args),
    /// Create or converge an environment.
    Up(up::Args),
    /// Delete everything an environment owns.
    Destroy(destroy::Args),
    /// Install or converge the platform layer (charts) onto the environment's cluster.
    Deploy(deploy::Args),
    /// Render the environment's releases to Kubernetes YAML, offline (secrets stay tokens).
    Render(render::Args),
    /// Releases of an environment and their history.
    Releases(releases::Args),
    /// Nodes, etcd members and health, API servers, certificate expiry.
    Status(status::Args),
    /// Re-apply an earlier revision of a release.
    Rollback(rollback::Args),
    /// etcd snapshots (on demand, listed) and restore from one.
    #[command(subcommand)]
    Etcd(etcd::Cmd),
    /// Renew the cluster's certificates now (`rotate`), with or without its CAs.
    #[command(subcommand)]
    Certs(certs::Cmd),
    /// Build the node image, or build and push the container images, on their own.
    #[command(subcommand)]
    Image(image::Cmd),
    /// Inspect and repair state.
    #[command(subcommand)]
    State(state::Cmd),
    /// Print shell completions.
    Completions(completions::Args),
    /// The conversion workload: convert, register, tier (and synthetic products).
    #[command(subcommand)]
    Workload(workload::Cmd),
    /// STAC collections for the workload: create, update, clean.
    #[command(subcommand)]
    Collections(collections::Cmd),
}

/// Run the parsed command; the exit code follows the command's contract.
pub async fn run(cli: Cli) -> Result<i32, Error> {
    if let Some(root) = &cli.charts {
        crate::charts::catalog::set_root(root);
    }
    match &cli.command {
        Command::Validate(a) => validate::run(&cli, a),
        Command::Schema(a) => schema::run(a),
        Command::Plan(a) => plan::run(&cli, a).await,
        Command::Up(a) => up::run(&cli, a).await,
        Command::Destroy(a) => destroy::run(&cli, a).await,
        Command::Deploy(a) => deploy::run(&cli, a).await,
        Command::Render(a) => render::run(&cli, a).await,
        Command::Releases(a) => releases::run(&cli, a).await,
        Command::Status(a) => status::run(&cli, a).await,
        Command::Rollback(a) => rollback::run(&cli, a).await,
        Command::Etcd(c) => etcd::run(&cli, c).await,
        Command::Certs(c) => certs::run(&cli, c).await,
        Command::Image(c) => image::run(&cli, c).await,
        Command::State(c) => state::run(&cli, c).await,
        Command::Completions(a) => completions::run(a),
        Command::Workload(c) => workload::run(&cli, c).await,
        Command::Collections(c) => collections::run(&cli, c).await,
    }
}

/// Options shared by plan, up, destroy and deploy.
#[derive(Debug, clap::Args)]
pub struct ApplyOpts {
    /// Environment name (`staging`, `ci-1234`) or path to a .yaml file.
    pub env: String,
    /// Limit to these addresses or kinds (`bucket`, `server.control`), plus what they need.
    #[arg(long)]
    pub target: Vec<String>,
    /// Wait this long for another run's lock (e.g. 30s, 5m).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Read recorded resources from their APIs first (drift; for destroy, also
    /// owned resources state lost); `--refresh=false` plans from state alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub refresh: bool,
    /// Override a release value: RELEASE.path.to.key=value (highest precedence; repeatable).
    #[arg(long = "set", value_name = "RELEASE.KEY=VALUE")]
    pub set: Vec<String>,
}

/// Options of the commands that change things: who approves, what may be lost.
#[derive(Debug, clap::Args)]
pub struct ApproveOpts {
    /// Apply without asking (CI). Data loss still needs --allow-data-loss.
    #[arg(long)]
    pub auto_approve: bool,
    /// Consent to the data loss of these addresses, bases or kinds (`server.worker`,
    /// `volume`), comma-separated or repeated; `all` for every flagged change.
    #[arg(long, value_name = "ADDRESSES")]
    pub allow_data_loss: Vec<String>,
}

impl ApproveOpts {
    pub fn approval(&self, saved_plan: bool) -> crate::plan::approval::Approval {
        crate::plan::approval::Approval {
            auto_approve: self.auto_approve,
            allow_data_loss: crate::plan::approval::DataLossConsent::from_flags(
                &self.allow_data_loss,
            ),
            saved_plan,
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s or 5m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    }
}

pub fn load_env(cli: &Cli, name: &str) -> Result<Loaded, Error> {
    let loaded = load(&Source::discover(cli.environments.as_deref()), name)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded)
}

/// The session of an environment: its state and the providers of its layers.
pub async fn open_session(cli: &Cli, name: &str) -> Result<Session, Error> {
    open_session_rotating(cli, name, None).await
}

/// A session whose cluster layer, with `rotate`, renews certificates whatever their expiry.
pub async fn open_session_rotating(
    cli: &Cli,
    name: &str,
    rotate: Option<crate::provider::Rotation>,
) -> Result<Session, Error> {
    let loaded = load_env(cli, name)?;
    let conn = Options {
        cloud: cli.cloud.clone(),
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        force_conflicts: cli.force_conflicts,
        no_wait: cli.no_wait,
        rotate,
    };
    Session::open(loaded, cli.state_dir.as_deref(), &conn).await
}

/// A session with the `--set` overrides of `opts`.
pub async fn open_session_with(cli: &Cli, opts: &ApplyOpts) -> Result<Session, Error> {
    let mut session = open_session(cli, &opts.env).await?;
    session.sets = opts
        .set
        .iter()
        .map(|s| crate::charts::values::parse_set(s))
        .collect::<Result<_, _>>()?;
    Ok(session)
}

/// The terminal side of a run: the plan on stderr, the question on the
/// terminal, a progress bar when somebody watches.
pub struct Terminal {
    output: Output,
}

impl Terminal {
    pub fn new(cli: &Cli) -> Self {
        Self { output: cli.output }
    }
}

impl Confirm for Terminal {
    fn interactive(&self) -> bool {
        std::io::stdin().is_terminal()
    }
    fn ask(&self, prompt: &str) -> Option<String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }
}

impl Ui for Terminal {
    fn show_plan(&self, doc: &PlanDoc) {
        if self.output == Output::Human {
            eprint!("{}", human(doc));
        }
    }
    fn progress(&self) -> ProgressBar {
        crate::ui::bar(self.output == Output::Human)
    }
}

pub fn print_json(v: &impl Serialize) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)
        .map_err(std::io::Error::other)
        .and_then(|()| writeln!(out))
        .map_err(|source| Error::Output {
            what: "JSON to stdout".into(),
            source,
        })
}

/// An error for machines (`--output json`): on stdout, versioned, with its
/// class and exit code, and the structured details where there are some.
pub fn error_json(e: &Error) -> serde_json::Value {
    let details = match e {
        Error::Refused(r) => serde_json::to_value(r).ok(),
        Error::Env(env_err) => serde_json::to_value(env_err.problems()).ok(),
        Error::Apply(errors) => Some(serde_json::Value::Array(
            errors
                .iter()
                .map(|a| serde_json::json!({ "message": a.to_string(), "class": a.class() }))
                .collect(),
        )),
        _ => None,
    };
    let kind = match e {
        Error::Env(_) => "environment",
        Error::State(_) => "state",
        Error::Secret(_) => "secret",
        Error::Workload(_) => "workload",
        Error::Charts(_) => "charts",
        Error::Image(_) => "image",
        Error::Usage(_) => "usage",
        Error::Preflight(_) => "preflight",
        Error::Provider { .. } => "provider",
        Error::Apply(_) => "apply",
        Error::Refused(_) => "refused",
        Error::SavedPlan(_) => "saved_plan",
        Error::Output { .. } => "output",
    };
    let mut err = serde_json::json!({ "kind": kind, "class": e.class(), "exit_code": e.exit_code(), "message": e.to_string() });
    if let Some(d) = details {
        err["details"] = d;
    }
    serde_json::json!({ "format_version": crate::plan::render::FORMAT_VERSION, "error": err })
}

/// The error as the user sees it: what happened, where (with the source line
/// for environment problems), and what to do.
pub fn render_error(e: &Error) -> String {
    let Error::Env(env_err) = e else {
        return format!("error: {e}");
    };
    let problems = env_err.problems();
    let mut out = format!(
        "error: {} problem(s) in the environment file",
        problems.len()
    );
    for p in problems {
        let head = match &p.location {
            Some(l) => format!("{l}: "),
            None => String::new(),
        };
        let field = if p.field.is_empty() {
            String::new()
        } else {
            format!("{}: ", p.field)
        };
        out.push_str(&format!("\n  {head}{field}{}", p.message));
        // The offending line, except where it may hold a secret value.
        if let Some(snippet) = p
            .location
            .as_deref()
            .filter(|_| !p.message.contains("secret"))
            .and_then(snippet)
        {
            out.push_str(&snippet);
        }
        if let Some(h) = &p.hint {
            out.push_str(&format!("\n    hint: {h}"));
        }
    }
    out
}

fn snippet(loc: &str) -> Option<String> {
    let mut parts = loc.rsplitn(3, ':');
    let col: usize = parts.next()?.parse().ok()?;
    let line: usize = parts.next()?.parse().ok()?;
    let text = std::fs::read_to_string(parts.next()?).ok()?;
    let src = text.lines().nth(line.checked_sub(1)?)?;
    Some(format!(
        "\n    {line:>4} | {src}\n         | {}^",
        " ".repeat(col.saturating_sub(1))
    ))
}
