//! `provisioner etcd snapshot|snapshots|restore ENV`: etcd backups on demand,
//! the list of them, and disaster recovery from one (after approval: the
//! restore replaces every member's data).

use std::time::Duration;

use serde_json::Value;

use super::{ApproveOpts, Cli, Output, Terminal, open_session, parse_duration, print_json};
use crate::Error;
use crate::provider::Task;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Take a snapshot now (kept on the member, and uploaded to
    /// `cluster.etcd_snapshots.s3` when set, with the same retention as the timer's).
    Snapshot {
        /// Environment name or path to a .yaml file.
        env: String,
    },
    /// The snapshots in the bucket and on each member.
    Snapshots {
        /// Environment name or path to a .yaml file.
        env: String,
    },
    /// Replace the data of every etcd member with a snapshot: a file here, or
    /// a name from `etcd snapshots` (fetched from the bucket). For fresh
    /// nodes, run `up` first; the data this replaces is moved aside on each node.
    Restore {
        /// Environment name or path to a .yaml file.
        env: String,
        /// A snapshot file, or a snapshot's name (or key) in the bucket.
        #[arg(long)]
        snapshot: String,
        #[command(flatten)]
        approve: ApproveOpts,
        /// Wait this long for another run's lock.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        lock_timeout: Duration,
    },
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<i32, Error> {
    let (env, task, approval, lock_timeout) = match cmd {
        Cmd::Snapshot { env } => (env, Task::EtcdSnapshot, Default::default(), Duration::ZERO),
        Cmd::Snapshots { env } => (env, Task::EtcdSnapshots, Default::default(), Duration::ZERO),
        Cmd::Restore {
            env,
            snapshot,
            approve,
            lock_timeout,
        } => (
            env,
            Task::EtcdRestore {
                snapshot: snapshot.clone(),
            },
            approve.approval(false),
            *lock_timeout,
        ),
    };
    let session = open_session(cli, env).await?;
    let doc = session
        .task(&task, &approval, lock_timeout, &Terminal::new(cli))
        .await?;
    if cli.output == Output::Json {
        return print_json(&doc).map(|()| 0);
    }
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match task {
        Task::EtcdSnapshot => println!(
            "snapshot {} taken on {} ({} bytes, sha256 {})\n  on the node: {}\n  in the bucket: {}",
            s(&doc["name"]),
            s(&doc["node"]),
            s(&doc["size"]),
            s(&doc["sha256"]),
            s(&doc["path"]),
            doc["url"]
                .as_str()
                .unwrap_or("- (cluster.etcd_snapshots.s3 is not set)")
        ),
        Task::EtcdSnapshots => {
            if let Some(b) = doc["bucket"].as_object() {
                println!("Bucket {}", s(&b["url"]));
                for o in b["snapshots"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<64} {:>12} {}",
                        s(&o["name"]),
                        s(&o["size"]),
                        s(&o["modified"])
                    );
                }
            }
            for (node, list) in doc["nodes"].as_object().into_iter().flatten() {
                println!("Node {node}");
                match list.as_array() {
                    Some(items) => {
                        for o in items {
                            println!(
                                "  {:<64} {:>12} {}",
                                s(&o["name"]),
                                s(&o["size"]),
                                s(&o["modified"])
                            );
                        }
                    }
                    None => println!("  {}", s(&list["error"])),
                }
            }
        }
        Task::EtcdRestore { .. } => println!(
            "restored {} onto {}; the data it replaced is in {} on each member{}",
            s(&doc["snapshot"]),
            doc["members"].as_array().map_or(String::new(), |m| m
                .iter()
                .map(&s)
                .collect::<Vec<_>>()
                .join(", ")),
            s(&doc["previous_data"]),
            match doc["removed_nodes"].as_array() {
                Some(n) if !n.is_empty() => format!(
                    "; Node objects of machines no longer in the environment removed: {}",
                    n.iter().map(&s).collect::<Vec<_>>().join(", ")
                ),
                _ => String::new(),
            }
        ),
    }
    Ok(0)
}
