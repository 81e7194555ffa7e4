//! `provisioner releases ENV`: every release in state, its current revision
//! and the history the cluster keeps (or why it could not be read).

use super::{Cli, Output, open_session, print_json};
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment name or path to a .yaml file.
    pub env: String,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<i32, Error> {
    let session = open_session(cli, &args.env).await?;
    let releases = session.releases().await?;
    if cli.output == Output::Json {
        let docs: Vec<serde_json::Value> = releases
            .iter()
            .map(|(addr, rec, hist)| {
                let history = match hist {
                    Ok(h) => serde_json::Value::Array(
                        h.iter()
                            .map(|r| {
                                let mut r = r.clone();
                                if let Some(m) = r.as_object_mut() {
                                    m.remove("attrs");
                                }
                                r
                            })
                            .collect(),
                    ),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                };
                serde_json::json!({
                    "release": addr.name(),
                    "namespace": rec.attrs.get("namespace"),
                    "chart": rec.attrs.get("chart"),
                    "chart_version": rec.attrs.get("chart_version"),
                    "revision": rec.outputs.get("revision"),
                    "history": history,
                })
            })
            .collect();
        return print_json(&docs).map(|()| 0);
    }
    for (addr, rec, hist) in &releases {
        let s = |k: &str| {
            rec.attrs
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "{}  {}  chart {} {}  revision {}",
            addr.name(),
            s("namespace"),
            s("chart"),
            s("chart_version"),
            rec.outputs
                .get("revision")
                .map_or("-".into(), ToString::to_string)
        );
        match hist {
            Ok(h) => {
                for r in h {
                    println!(
                        "    {:>3}  {:<10}  {}  {}  {} objects  {}",
                        r["revision"],
                        r["status"].as_str().unwrap_or(""),
                        r["time"].as_str().unwrap_or(""),
                        r["chart_version"].as_str().unwrap_or(""),
                        r["objects"],
                        r["description"].as_str().unwrap_or("")
                    );
                }
            }
            Err(e) => println!(
                "    (history unavailable: {})",
                e.to_string().lines().next().unwrap_or_default()
            ),
        }
    }
    if releases.is_empty() {
        println!("no releases in the state of `{}`", session.env_name());
    }
    Ok(0)
}
