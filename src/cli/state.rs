//! `provisioner state list|show|unlock|rm|rebuild|new-key`

use serde::Serialize;

use super::{Cli, Output, open_session, print_json};
use crate::Error;
use crate::core::Address;
use crate::state::crypto::Key;
use crate::state::{Record, Status};

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Resources recorded for an environment.
    List { env: String },
    /// One record (or all) in detail; sealed secrets stay sealed.
    Show {
        env: String,
        address: Option<String>,
    },
    /// Remove a stuck lock; the lock id is printed in the "locked by" error.
    Unlock { env: String, lock_id: String },
    /// Forget a record without touching the resource (it is adopted or recreated later).
    Rm { env: String, address: String },
    /// Rebuild state from what the environment owns in the cloud (ownership tags).
    Rebuild {
        env: String,
        /// Only these kinds or addresses (e.g. `bucket`), as with `up --target`.
        #[arg(long)]
        target: Vec<String>,
    },
    /// Print a new random state encryption key (base64) for PROVISIONER_STATE_KEY.
    NewKey,
}

#[derive(Serialize)]
struct Row<'a> {
    address: &'a Address,
    kind: &'a str,
    id: Option<&'a str>,
    status: Status,
    sealed_secrets: bool,
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<i32, Error> {
    match cmd {
        Cmd::NewKey => {
            println!("{}", Key::generate_base64());
            Ok(0)
        }
        Cmd::List { env } | Cmd::Show { env, address: None } => {
            let session = open_session(cli, env).await?;
            let state = session.store.load().await?;
            let rows: Vec<Row> = state
                .resources
                .iter()
                .map(|(a, r)| Row {
                    address: a,
                    kind: &r.kind,
                    id: r.id.as_deref(),
                    status: r.status,
                    sealed_secrets: r.sealed.is_some(),
                })
                .collect();
            if matches!(cmd, Cmd::Show { .. }) {
                print_records(cli, &state.resources.iter().collect::<Vec<_>>())?;
            } else if cli.output == Output::Json {
                print_json(
                    &serde_json::json!({ "environment": session.env_name(), "serial": state.serial, "lineage": state.lineage, "resources": rows }),
                )?;
            } else {
                for r in &rows {
                    let status = if r.status == Status::Ready {
                        String::new()
                    } else {
                        format!("  ({:?})", r.status).to_lowercase()
                    };
                    println!("{}  {}{status}", r.address, r.id.unwrap_or("-"));
                }
            }
            Ok(0)
        }
        Cmd::Show {
            env,
            address: Some(a),
        } => {
            let state = open_session(cli, env).await?.store.load().await?;
            let found: Vec<_> = state
                .resources
                .iter()
                .filter(|(k, _)| k.matches(a))
                .collect();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "no record matches `{a}` in the state of `{env}`; `provisioner state list {env}` shows what there is"
                )));
            }
            print_records(cli, &found)?;
            Ok(0)
        }
        Cmd::Unlock { env, lock_id } => {
            let session = open_session(cli, env).await?;
            let info = session.store.backend.force_unlock(lock_id).await?;
            match cli.output {
                Output::Json => print_json(&info)?,
                Output::Human => println!(
                    "removed lock {} held by {}@{} (pid {}) since {}",
                    info.id, info.owner, info.host, info.pid, info.created_at
                ),
            }
            Ok(0)
        }
        Cmd::Rm { env, address } => {
            let session = open_session(cli, env).await?;
            let store = &session.store;
            let lock = store.lock("state rm", std::time::Duration::ZERO).await?;
            let result = async {
                let mut state = store.load().await?;
                let addr = Address::parse(address).ok_or_else(|| {
                    Error::Usage(format!(
                        "`{address}` is not an address like bucket.workload"
                    ))
                })?;
                if state.resources.remove(&addr).is_none() {
                    return Err(Error::Usage(format!(
                        "no record `{address}` in the state of `{env}`"
                    )));
                }
                store.save(&mut state, lock.as_ref()).await?;
                println!("forgot {address}; the resource itself was not touched");
                Ok(0)
            }
            .await;
            lock.release().await?;
            result
        }
        Cmd::Rebuild { env, target } => {
            let session = open_session(cli, env).await?;
            let store = &session.store;
            let lock = store
                .lock("state rebuild", std::time::Duration::ZERO)
                .await?;
            let result = async {
                let mut state = store.load().await?;
                let mut found = Vec::new();
                for (addr, rec) in session.discover_owned(target).await? {
                    state.resources.insert(addr.clone(), rec);
                    found.push(addr);
                }
                store.save(&mut state, lock.as_ref()).await?;
                match cli.output {
                    Output::Json => print_json(&serde_json::json!({ "environment": session.env_name(), "rebuilt": found }))?,
                    Output::Human => {
                        println!("rebuilt {} record(s) from the cloud: {}", found.len(), found.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
                        println!("note: generated secrets exist only in state and cannot be rebuilt; missing ones are generated again by `up`");
                    }
                }
                Ok(0)
            }
            .await;
            lock.release().await?;
            result
        }
    }
}

fn print_records(cli: &Cli, recs: &[(&Address, &Record)]) -> Result<(), Error> {
    if cli.output == Output::Json {
        let m: serde_json::Map<String, serde_json::Value> = recs
            .iter()
            .map(|(a, r)| (a.to_string(), serde_json::to_value(r).unwrap_or_default()))
            .collect();
        return print_json(&m);
    }
    for (a, r) in recs {
        println!(
            "{a}\n  kind: {}\n  id: {}\n  status: {:?}",
            r.kind,
            r.id.as_deref().unwrap_or("-"),
            r.status
        );
        for (k, v) in &r.attrs {
            println!("  {k}: {v}");
        }
        if r.sealed.is_some() {
            println!("  secrets: (sealed)");
        }
    }
    Ok(())
}
