//! `etcd_backup.<node>`: scheduled etcd snapshots on an etcd member. A
//! systemd timer runs one script that saves a snapshot under
//! `/var/lib/etcd-snapshots`, keeps the newest `retention` there and, when the
//! environment names a bucket, uploads it (SigV4 by curl, so nothing else is
//! installed) and keeps the newest `retention` of this node's snapshots in
//! the bucket too. `provisioner etcd snapshot` runs the same script, so a
//! snapshot taken on demand and one taken on schedule are the same thing.
//! The bucket's credentials live only in a root-only file on the node; state
//! and plans hold references to them.

use serde_json::Value;

use super::remote::{self, File};
use super::{Attrs, ClusterProvider, target};
use crate::env::model::S3Location;
use crate::env::secret::SecretRef;
use crate::provider::{Live, ProviderError};
use crate::ssh::Target;
use crate::ssh::quote::q;
use crate::state::Record;

pub const SCRIPT: &str = "/usr/local/sbin/provisioner-etcd-snapshot";
pub const DIR: &str = "/var/lib/etcd-snapshots";
const ENV: &str = "/etc/etcd/snapshot.env";
const SERVICE: &str = "/etc/systemd/system/etcd-snapshot.service";
const TIMER: &str = "/etc/systemd/system/etcd-snapshot.timer";

/// Saves, prunes, uploads; prints `name sha256 size url` on success.
const BODY: &str = r#"#!/bin/sh
# Written by provisioner: an etcd snapshot of this member (see etcd_backup in the plan).
set -eu
. /etc/etcd/snapshot.env
kind="${1:-scheduled}"
dir=/var/lib/etcd-snapshots
mkdir -p -m 0700 "$dir"
name="etcd-$NODE-$(date -u +%Y%m%dT%H%M%SZ)-$kind.db"
ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/ca.crt \
  --cert=/etc/etcd/pki/server.crt --key=/etc/etcd/pki/server.key --command-timeout=60s \
  snapshot save "$dir/.$name.part" >/dev/null
mv "$dir/.$name.part" "$dir/$name"
sum=$(sha256sum "$dir/$name" | cut -d' ' -f1)
size=$(stat -c %s "$dir/$name")
# Names sort by time: keep the newest RETENTION of this node's.
ls -1 "$dir" | grep "^etcd-$NODE-.*\.db\$" | sort | head -n -"$RETENTION" | while read -r old; do rm -f "$dir/$old"; done
url=-
if [ -n "$S3_URL" ]; then
  empty=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  s3() { curl -sS --fail --retry 3 --max-time 600 --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$@"; }
  s3 -H "x-amz-content-sha256: $sum" -T "$dir/$name" "$S3_URL/$S3_PREFIX$name" >/dev/null
  url="$S3_URL/$S3_PREFIX$name"
  s3 -H "x-amz-content-sha256: $empty" "$S3_URL?list-type=2&prefix=$S3_LIST_PREFIX" \
    | grep -o '<Key>[^<]*</Key>' | sed -e 's/<Key>//' -e 's/<\/Key>//' | grep '\.db$' | sort \
    | head -n -"$RETENTION" | while read -r old; do
        s3 -H "x-amz-content-sha256: $empty" -X DELETE "$S3_URL/$old" >/dev/null
      done
fi
echo "$name $sum $size $url"
"#;

/// The bucket's base URL: path style (`endpoint/bucket`) or virtual host.
pub fn bucket_url(loc: &S3Location) -> String {
    let endpoint = loc
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", loc.region));
    let endpoint = endpoint.trim_end_matches('/');
    if loc.path_style {
        return format!("{endpoint}/{}", loc.bucket);
    }
    match endpoint.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{}.{host}", loc.bucket),
        None => format!("{endpoint}/{}", loc.bucket),
    }
}

/// The key prefix snapshots go under: empty, or ending in `/`.
pub fn key_prefix(loc: &S3Location) -> String {
    let p = loc.prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// A query-string value, percent-encoded as SigV4 wants it.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn location(attrs: &Attrs) -> Result<Option<S3Location>, ProviderError> {
    match attrs.get("s3") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ProviderError::fatal(format!("attribute `s3`: {e}"))),
    }
}

fn secret(r: Option<&SecretRef>, what: &str) -> Result<String, ProviderError> {
    let r = r.ok_or_else(|| {
        ProviderError::fatal(format!(
            "cluster.etcd_snapshots.s3.{what} is needed: the nodes upload the snapshots themselves"
        ))
    })?;
    r.resolve(&format!("cluster.etcd_snapshots.s3.{what}"))
        .map(|s| s.expose().to_owned())
        .map_err(|e| ProviderError::fatal(e.to_string()))
}

/// The timer's schedule: wall-clock times when the interval divides a day
/// (so a missed run is made up after a reboot), else every N hours of uptime.
fn schedule(hours: u64) -> String {
    if hours > 0 && 24 % hours == 0 {
        format!("OnCalendar=*-*-* 00/{hours}:00:00\nPersistent=true\n")
    } else {
        format!("OnBootSec=1h\nOnUnitActiveSec={hours}h\n")
    }
}

fn files(t: &Target, attrs: &Attrs) -> Result<Vec<File>, ProviderError> {
    let retention = attrs
        .get("retention")
        .and_then(Value::as_u64)
        .unwrap_or(6)
        .max(1);
    let hours = attrs
        .get("interval_hours")
        .and_then(Value::as_u64)
        .unwrap_or(12)
        .max(1);
    let mut env = format!("NODE={}\nRETENTION={retention}\n", q(&t.node));
    match location(attrs)? {
        Some(loc) => {
            let prefix = key_prefix(&loc);
            env.push_str(&format!(
                "S3_URL={}\nS3_PREFIX={}\nS3_LIST_PREFIX={}\nS3_REGION={}\nS3_ACCESS_KEY={}\nS3_SECRET_KEY={}\n",
                q(&bucket_url(&loc)),
                q(&prefix),
                q(&encode(&format!("{prefix}etcd-{}-", t.node))),
                q(&loc.region),
                q(&secret(loc.access_key.as_ref(), "access_key")?),
                q(&secret(loc.secret_key.as_ref(), "secret_key")?),
            ));
        }
        None => env.push_str("S3_URL=\n"),
    }
    let service = format!(
        "[Unit]\nDescription=etcd snapshot (provisioner)\nAfter=etcd.service\nRequires=etcd.service\n\n[Service]\nType=oneshot\nExecStart={SCRIPT} scheduled\n"
    );
    let timer = format!(
        "[Unit]\nDescription=etcd snapshots every {hours} h (provisioner)\n\n[Timer]\n{}\n[Install]\nWantedBy=timers.target\n",
        schedule(hours)
    );
    Ok(vec![
        File::new(SCRIPT, 0o755, BODY),
        File::new(ENV, 0o600, env),
        File::new(SERVICE, 0o644, service),
        File::new(TIMER, 0o644, timer),
    ])
}

pub async fn apply(p: &ClusterProvider, attrs: &Attrs) -> Result<Live, ProviderError> {
    let t = target(attrs, None)?;
    let changed = remote::sync(&p.ssh, &t, files(&t, attrs)?).await?;
    let timer_changed = changed.iter().any(|c| c == TIMER);
    remote::units(
        &p.ssh,
        &t,
        &[("etcd-snapshot.timer", timer_changed)],
        changed.iter().any(|c| c == TIMER || c == SERVICE),
        false,
    )
    .await?;
    let mut live = super::applied(&t, attrs, Default::default());
    live.outputs.remove("certificates");
    if let Some(loc) = location(attrs)? {
        live.outputs.insert(
            "bucket_url".into(),
            format!("{}/{}", bucket_url(&loc), key_prefix(&loc)).into(),
        );
    }
    Ok(live)
}

pub async fn read(p: &ClusterProvider, rec: &Record) -> Result<Option<Live>, ProviderError> {
    super::read_step(p, rec, |t| files(t, &rec.attrs), &["etcd-snapshot.timer"]).await
}

pub async fn delete(p: &ClusterProvider, rec: &Record) -> Result<(), ProviderError> {
    let t = target(&rec.attrs, None)?;
    // The snapshots stay: they are the point of having taken them.
    p.ssh
        .run(
            &t,
            &format!(
                "systemctl disable --now -q etcd-snapshot.timer 2>/dev/null || true; rm -f {} {} {} {}; systemctl daemon-reload",
                q(TIMER),
                q(SERVICE),
                q(ENV),
                q(SCRIPT)
            ),
        )
        .await?;
    Ok(())
}

/// A snapshot as the script reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Taken {
    pub node: String,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Where it was uploaded; None when the environment names no bucket.
    pub url: Option<String>,
    pub path: String,
}

/// Take a snapshot now on the member `t` (its `etcd_backup` step applied).
pub async fn take(p: &ClusterProvider, t: &Target) -> Result<Taken, ProviderError> {
    let out = p.ssh.run(t, &format!("{SCRIPT} on-demand")).await?;
    let line = out.stdout.lines().last().unwrap_or_default();
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        [name, sha, size, url] => Ok(Taken {
            node: t.node.clone(),
            name: (*name).to_owned(),
            sha256: (*sha).to_owned(),
            size: size.parse().unwrap_or_default(),
            url: (*url != "-").then(|| (*url).to_owned()),
            path: format!("{DIR}/{name}"),
        }),
        _ => Err(ProviderError::fatal(format!(
            "{}: the snapshot script answered `{line}`",
            t.label()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(endpoint: Option<&str>, path_style: bool, prefix: &str) -> S3Location {
        serde_json::from_value(serde_json::json!({
            "bucket": "snaps", "endpoint": endpoint, "path_style": path_style, "prefix": prefix,
        }))
        .unwrap()
    }

    #[test]
    fn urls_and_prefixes() {
        assert_eq!(
            bucket_url(&loc(Some("http://10.0.0.1:9000/"), true, ""),),
            "http://10.0.0.1:9000/snaps"
        );
        assert_eq!(
            bucket_url(&loc(None, false, "")),
            "https://snaps.s3.us-east-1.amazonaws.com"
        );
        assert_eq!(key_prefix(&loc(None, false, "/prod/etcd/")), "prod/etcd/");
        assert_eq!(key_prefix(&loc(None, false, "")), "");
        assert_eq!(encode("prod/etcd-a b-"), "prod%2Fetcd-a%20b-");
    }

    #[test]
    fn schedules() {
        assert!(schedule(12).contains("OnCalendar=*-*-* 00/12:00:00"));
        assert!(schedule(5).contains("OnUnitActiveSec=5h"));
    }
}
