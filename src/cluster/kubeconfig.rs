//! `kubeconfig.admin`: the administrator's kubeconfig, written for the user
//! (mode 0600, atomically) and kept sealed in state; with `merge`, also a
//! context named after the environment in `~/.kube/config`. Also renders the
//! components' kubeconfigs, which point at certificate files on the node.

use base64::Engine as _;
use serde_json::{Value, json};

use super::pki::{self, Leaf, Usage};
use super::pki_resource::CA;
use super::{Attrs, observed, str_attr};
use crate::core::Secret;
use crate::core::digest::sha256_hex;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

/// A certificate or key given by path (on a node) or inline (PEM).
pub enum Cred {
    Path(String),
    Data(String),
}

fn field(name: &str, c: &Cred) -> String {
    match c {
        Cred::Path(p) => format!("{name}: {p}"),
        Cred::Data(pem) => format!(
            "{name}-data: {}",
            base64::engine::general_purpose::STANDARD.encode(pem)
        ),
    }
}

pub fn render(
    cluster: &str,
    server: &str,
    ca: &Cred,
    user: &str,
    cert: &Cred,
    key: &Cred,
) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    {}\n\
         users:\n- name: {user}\n  user:\n    {}\n    {}\n\
         contexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n\
         current-context: {cluster}\n",
        field("certificate-authority", ca),
        field("client-certificate", cert),
        field("client-key", key),
    )
}

fn path(attrs: &Attrs) -> Result<std::path::PathBuf, ProviderError> {
    Ok(crate::env::secret::expand_home(str_attr(attrs, "path")?))
}

fn write(path: &std::path::Path, text: &str) -> Result<(), ProviderError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| {
        ProviderError::fatal(format!("writing {}: {e}", path.display())).caused_by(e)
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(fail)?;
    }
    let tmp = path.with_extension("provisioner-tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Put context `name` (cluster, user, context of `text`) into `target`
/// (~/.kube/config), replacing an earlier one of that name, keeping the rest.
fn merge(target: &std::path::Path, name: &str, text: &str) -> Result<(), ProviderError> {
    let bad = |e: String| ProviderError::fatal(format!("merging into {}: {e}", target.display()));
    let mine: Value = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut cfg: Value = match std::fs::read_to_string(target) {
        Ok(t) if !t.trim().is_empty() => {
            serde_saphyr::from_str(&t).map_err(|e| bad(e.to_string()))?
        }
        _ => {
            json!({ "apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [] })
        }
    };
    for (list, item) in [
        ("clusters", &mine["clusters"][0]),
        ("users", &mine["users"][0]),
        ("contexts", &mine["contexts"][0]),
    ] {
        let mut item = item.clone();
        item["name"] = name.into();
        if list == "contexts" {
            item["context"] = json!({ "cluster": name, "user": name });
        }
        let arr = cfg[list]
            .as_array_mut()
            .ok_or_else(|| bad(format!("`{list}` is not a list")))?;
        arr.retain(|x| x["name"] != name);
        arr.push(item);
    }
    // JSON is YAML: kubectl reads it as it is.
    write(
        target,
        &serde_json::to_string_pretty(&cfg).map_err(|e| bad(e.to_string()))?,
    )
}

pub fn apply(attrs: &Attrs) -> Result<Live, ProviderError> {
    let days = super::cert_days(attrs);
    let admin = pki::issue(
        CA,
        str_attr(attrs, "ca_key")?,
        &Leaf {
            common_name: "provisioner-admin".into(),
            organizations: vec!["system:masters".into()],
            dns_names: vec![],
            ips: vec![],
            usage: Usage::Client,
            days,
        },
    )
    .map_err(|e| ProviderError::fatal(format!("the admin certificate: {e}")).caused_by(e))?;
    let server = format!("https://{}:6443", str_attr(attrs, "api_endpoint")?);
    let context = str_attr(attrs, "context")?;
    let mut text = render(
        context,
        &server,
        &Cred::Data(str_attr(attrs, "ca")?.to_owned()),
        &format!("{context}-admin"),
        &Cred::Data(admin.cert_pem),
        &Cred::Data(admin.key_pem),
    );
    // Behind a bastion: say how to get there, for the provisioner (kubectl
    // ignores extensions; people use `ssh -L`, see the README).
    if let Some(via) = attrs.get("via").filter(|v| v.is_object()) {
        let line = format!("    server: {server}\n");
        text = text.replacen(
            &line,
            &format!(
                "{line}    extensions:\n    - name: {}\n      extension: {}\n",
                super::tunnel::EXTENSION,
                serde_json::to_string(via).unwrap_or_default()
            ),
            1,
        );
    }
    let p = path(attrs)?;
    write(&p, &text)?;
    if attrs.get("merge").and_then(Value::as_bool).unwrap_or(false) {
        merge(
            &crate::env::secret::expand_home("~/.kube/config"),
            context,
            &text,
        )?;
    }
    let mut live = Live {
        id: p.display().to_string(),
        attrs: attrs.clone(),
        ..Default::default()
    };
    live.outputs
        .insert("path".into(), p.display().to_string().into());
    live.outputs.insert("server".into(), server.into());
    live.outputs
        .insert("digest".into(), sha256_hex(text.as_bytes()).into());
    live.outputs.insert(
        "certificates".into(),
        json!({ "admin": admin.not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) }),
    );
    live.secrets.insert("kubeconfig".into(), Secret::new(text));
    Ok(live)
}

pub fn read(rec: &Record, renew_before: chrono::Duration) -> Result<Option<Live>, ProviderError> {
    let p = path(&rec.attrs)?;
    let mut drift = Vec::new();
    match std::fs::read(&p) {
        Ok(b) if Some(&Value::String(sha256_hex(&b))) == rec.outputs.get("digest") => {}
        Ok(_) => drift.push(format!("{} was changed", p.display())),
        Err(_) => drift.push(format!("{} is missing", p.display())),
    }
    drift.extend(super::due(rec, renew_before));
    Ok(Some(observed(rec, &p.display().to_string(), drift)))
}

pub fn delete(rec: &Record) -> Result<(), ProviderError> {
    let p = path(&rec.attrs)?;
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ProviderError::fatal(format!("removing {}: {e}", p.display())).caused_by(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_one_context_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://o:6443}\nusers:\n- name: other\n  user: {token: t}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n",
        )
        .unwrap();
        let mine = |server: &str| {
            render(
                "staging",
                server,
                &Cred::Data("CA".into()),
                "staging-admin",
                &Cred::Data("C".into()),
                &Cred::Data("K".into()),
            )
        };
        merge(&cfg, "staging", &mine("https://a:6443")).unwrap();
        merge(&cfg, "staging", &mine("https://b:6443")).unwrap();
        let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        let names = |k: &str| -> Vec<String> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("clusters"), ["other", "staging"]);
        assert_eq!(names("users"), ["other", "staging"]);
        assert_eq!(names("contexts"), ["other", "staging"]);
        assert_eq!(v["clusters"][1]["cluster"]["server"], "https://b:6443");
        assert_eq!(v["contexts"][1]["context"]["user"], "staging");
        assert_eq!(
            v["current-context"], "other",
            "merging must not switch the user's context"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
