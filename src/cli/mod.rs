//! The command line: one file per subcommand, shared plumbing here.

mod collections;
mod completions;
mod destroy;
mod plan;
mod schema;
mod state;
mod up;
mod validate;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::Error;
use crate::env::load::{Loaded, Source, load};
use crate::plan::diff::{self, Change, Observed};
use crate::plan::resource::{Address, Desired};
use crate::provider::Registry;
use crate::state::{StateFile, Store};

#[derive(Debug, Parser)]
#[command(name = "provisioner", version, about = "From an empty OpenStack project to a working EO data platform, from one environment file")]
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
    match &cli.command {
        Command::Validate(a) => validate::run(&cli, a),
        Command::Schema(a) => schema::run(a),
        Command::Plan(a) => plan::run(&cli, a).await,
        Command::Up(a) => up::run(&cli, a).await,
        Command::Destroy(a) => destroy::run(&cli, a).await,
        Command::State(c) => state::run(&cli, c).await,
        Command::Completions(a) => completions::run(a),
        Command::Workload(c) => workload::run(&cli, c).await,
        Command::Collections(c) => collections::run(&cli, c).await,
    }
}

/// Options shared by plan, up and destroy.
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
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 30s or 5m"))?;
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

pub async fn open_store(cli: &Cli, loaded: &Loaded) -> Result<Store, Error> {
    let backend = crate::state::backend_for(&loaded.env, cli.state_dir.as_deref()).await?;
    Ok(Store::new(backend, &loaded.env)?)
}

/// Read every recorded resource whose provider exists (read calls only).
pub async fn refresh(registry: &Registry, state: &StateFile) -> Result<BTreeMap<Address, Observed>, Error> {
    let mut out = BTreeMap::new();
    // Interrupted records (creating/deleting) are not read: the diff already
    // plans them, and a create that never returned has no id to read.
    for (addr, rec) in state.resources.iter().filter(|(_, r)| r.status == crate::state::Status::Ready) {
        let Some(p) = registry.get(&rec.kind) else { continue };
        let live = p.read(addr, rec).await.map_err(|e| Error::Provider(format!("refreshing {addr}: {e}")))?;
        out.insert(addr.clone(), live.map_or(Observed::Gone, |l| Observed::Live(l.attrs)));
    }
    Ok(out)
}

/// The plan for an environment, optionally restricted to targets.
pub fn changes(desired: &[Desired], state: &StateFile, observed: &BTreeMap<Address, Observed>, targets: &[String], destroy: bool) -> Vec<Change> {
    let all = if destroy { diff::destroy(state) } else { diff::diff(desired, state, observed) };
    diff::restrict(all, targets)
}

/// Every resource the environment owns in the cloud (by ownership tags or
/// names), under `targets`, as state records: dependencies and attributes come
/// from the environment file where it still names the address, so `destroy`
/// deletes in order and a rebuilt state diffs cleanly.
pub async fn discover_owned(registry: &Registry, env: &crate::env::model::Environment, targets: &[String]) -> Result<Vec<(Address, crate::state::Record)>, Error> {
    let desired = crate::plan::desired::desired(env);
    let mut out = Vec::new();
    for (kinds, provider) in registry.providers().filter(|(kinds, _)| kinds.iter().any(|k| kind_targeted(targets, k))) {
        let found = provider.discover().await.map_err(|e| Error::Provider(format!("discovering {} resources: {e}", kinds.join("/"))))?;
        for (addr, live) in found.into_iter().filter(|(a, _)| kind_targeted(targets, a.kind())) {
            let d = desired.iter().find(|d| d.address == addr);
            let rec = crate::state::Record {
                kind: addr.kind().to_owned(),
                id: Some(live.id),
                status: crate::state::Status::Ready,
                attrs: d.map_or(live.attrs, |d| d.attrs.clone()),
                outputs: live.outputs,
                deps: d.map(|d| d.deps.clone()).unwrap_or_default(),
                sealed: None,
                secrets: Default::default(),
                updated_at: crate::state::model::now(),
            };
            out.push((addr, rec));
        }
    }
    Ok(out)
}

/// Whether `--target` values (empty = everything) reach resources of `kind`.
pub fn kind_targeted(targets: &[String], kind: &str) -> bool {
    targets.is_empty() || targets.iter().any(|t| t == kind || t.starts_with(&format!("{kind}.")))
}

pub fn print_json(v: &impl serde::Serialize) -> Result<(), Error> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Usage(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// The error as the user sees it: what happened, where (with the source line
/// for environment problems), and what to do.
pub fn render_error(e: &Error) -> String {
    let Error::Env(env_err) = e else { return format!("error: {e}") };
    let problems = env_err.problems();
    let mut out = format!("error: {} problem(s) in the environment file", problems.len());
    for p in problems {
        let head = match &p.location {
            Some(l) => format!("{l}: "),
            None => String::new(),
        };
        let field = if p.field.is_empty() { String::new() } else { format!("{}: ", p.field) };
        out.push_str(&format!("\n  {head}{field}{}", p.message));
        // The offending line, except where it may hold a secret value.
        if let Some(snippet) = p.location.as_deref().filter(|_| !p.message.contains("secret")).and_then(snippet) {
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
    Some(format!("\n    {line:>4} | {src}\n         | {}^", " ".repeat(col.saturating_sub(1))))
}
