//! Converging files, certificates and units on a node, touching only what
//! differs: a file is uploaded when its sha256 differs, a certificate is
//! issued again only when its subject, names, CA or expiry window changed,
//! and a unit restarts only when one of its files changed. What changed is
//! returned, so a rerun with nothing to do provably did nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::pki::{self, Leaf};
use crate::core::digest::{sha256_hex, sha256_json};
use crate::provider::ProviderError;
use crate::ssh::quote::q;
use crate::ssh::{Ssh, Target};

pub struct File {
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

impl File {
    pub fn new(path: impl Into<String>, mode: u32, content: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            mode,
            content: content.into(),
        }
    }
}

/// The sha256 of each of `paths` on the node (absent files are left out).
pub async fn digests(
    ssh: &Arc<Ssh>,
    t: &Target,
    paths: &[&str],
) -> Result<BTreeMap<String, String>, ProviderError> {
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list: Vec<String> = paths.iter().map(|p| q(p)).collect();
    let out = ssh
        .try_run(
            t,
            &format!("sha256sum {} 2>/dev/null; true", list.join(" ")),
            Duration::from_secs(120),
        )
        .await?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let (sha, path) = l.split_once("  ")?;
            Some((path.to_owned(), sha.to_owned()))
        })
        .collect())
}

/// Upload the files whose content differs; returns their paths.
pub async fn sync(
    ssh: &Arc<Ssh>,
    t: &Target,
    files: Vec<File>,
) -> Result<Vec<String>, ProviderError> {
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let have = digests(ssh, t, &paths).await?;
    let todo: Vec<(String, u32, Vec<u8>)> = files
        .into_iter()
        .filter(|f| have.get(&f.path) != Some(&sha256_hex(&f.content)))
        .map(|f| (f.path, f.mode, f.content))
        .collect();
    let changed = todo.iter().map(|(p, _, _)| p.clone()).collect();
    ssh.put_all(t, todo).await?;
    Ok(changed)
}

/// A certificate wanted on a node: `dir/name.{crt,key}`, signed by a CA.
pub struct Cert<'a> {
    pub name: &'a str,
    pub ca_name: &'a str,
    pub ca_crt: &'a str,
    pub ca_key: &'a str,
    pub leaf: Leaf,
}

/// Issue the certificates that are missing, differ from what is wanted, or
/// expire within `renew_before`; returns (issued names, expiry of every one).
pub async fn certs(
    ssh: &Arc<Ssh>,
    t: &Target,
    dir: &str,
    wanted: Vec<Cert<'_>>,
    renew_before: chrono::Duration,
) -> Result<(Vec<String>, BTreeMap<String, String>), ProviderError> {
    // `NAME.spec` beside each pair: "DIGEST NOT_AFTER" of what it was issued for.
    let out = ssh
        .try_run(
            t,
            &format!("cd {} 2>/dev/null && for f in *.spec; do [ -e \"$f\" ] && echo \"${{f%.spec}} $(cat \"$f\")\"; done; true", q(dir)),
            Duration::from_secs(60),
        )
        .await?;
    let have: BTreeMap<String, (String, String)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.to_owned(),
                (it.next()?.to_owned(), it.next()?.to_owned()),
            ))
        })
        .collect();
    let mut issued = Vec::new();
    let mut expiry = BTreeMap::new();
    let mut files = Vec::new();
    for c in wanted {
        let spec = sha256_json(&serde_json::json!({
            "ca": sha256_hex(c.ca_crt.as_bytes()), "cn": c.leaf.common_name, "o": c.leaf.organizations,
            "dns": c.leaf.dns_names, "ip": c.leaf.ips, "usage": format!("{:?}", c.leaf.usage), "days": c.leaf.days,
        }));
        let spec = spec.trim_start_matches("sha256:").to_owned();
        if let Some((digest, not_after)) = have.get(c.name) {
            let due = DateTime::parse_from_rfc3339(not_after)
                .map(|t| t.with_timezone(&Utc) - Utc::now() < renew_before)
                .unwrap_or(true);
            if *digest == spec && !due {
                expiry.insert(c.name.to_owned(), not_after.clone());
                continue;
            }
        }
        let got = pki::issue(c.ca_name, c.ca_key, &c.leaf).map_err(|e| {
            ProviderError::fatal(format!("certificate {}: {e}", c.name)).caused_by(e)
        })?;
        let not_after = got
            .not_after
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // Key first, spec last: a run killed in between issues again next time.
        files.push(File::new(
            format!("{dir}/{}.key", c.name),
            0o600,
            got.key_pem,
        ));
        files.push(File::new(
            format!("{dir}/{}.crt", c.name),
            0o644,
            got.cert_pem,
        ));
        files.push(File::new(
            format!("{dir}/{}.spec", c.name),
            0o644,
            format!("{spec} {not_after}\n"),
        ));
        expiry.insert(c.name.to_owned(), not_after);
        issued.push(c.name.to_owned());
    }
    // In order (key, certificate, spec), in one round trip.
    ssh.put_all(
        t,
        files
            .into_iter()
            .map(|f| (f.path, f.mode, f.content))
            .collect(),
    )
    .await?;
    Ok((issued, expiry))
}

/// Enable and start `units`; restart the ones whose files changed. With
/// `no_block`, start without waiting (etcd's first members wait for each other).
pub async fn units(
    ssh: &Arc<Ssh>,
    t: &Target,
    units: &[(&str, bool)],
    reload: bool,
    no_block: bool,
) -> Result<(), ProviderError> {
    let nb = if no_block { " --no-block" } else { "" };
    let mut script = String::from("set -e; ");
    if reload {
        script.push_str("systemctl daemon-reload; ");
    }
    for (u, changed) in units {
        let u = q(u);
        script.push_str(&format!("systemctl enable -q {u}; "));
        if *changed {
            script.push_str(&format!("systemctl restart{nb} {u}; "));
        } else {
            script.push_str(&format!(
                "systemctl is-active -q {u} || systemctl start{nb} {u}; "
            ));
        }
    }
    ssh.run(t, &script).await?;
    Ok(())
}

/// Run `check` on the node until it exits 0, up to `timeout`; the error
/// carries its last output and `hint`.
pub async fn gate(
    ssh: &Arc<Ssh>,
    t: &Target,
    what: &str,
    check: &str,
    timeout: Duration,
    hint: &str,
) -> Result<(), ProviderError> {
    let last = std::sync::Mutex::new(String::new());
    let ok = crate::core::wait::until(timeout, Duration::from_secs(2), || {
        let last = &last;
        async move {
            let out = ssh.try_run(t, check, Duration::from_secs(30)).await?;
            if out.status == 0 {
                return Ok::<_, ProviderError>(Some(()));
            }
            if let Ok(mut l) = last.lock() {
                *l = format!("{}{}", out.stdout.trim(), out.stderr.trim());
            }
            Ok(None)
        }
    })
    .await?;
    let last = last.into_inner().unwrap_or_default();
    ok.ok_or_else(|| {
        ProviderError::transient(format!(
            "{}: {what} not reached after {timeout:?} (last answer: {}); {hint}",
            t.label(),
            if last.is_empty() {
                "none"
            } else {
                last.as_str()
            }
        ))
    })
}
