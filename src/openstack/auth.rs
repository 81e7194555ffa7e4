//! Authentication: a named cloud from clouds.yaml (`--cloud`, `OS_CLOUD`, or
//! the environment's `cloud.name`), else `OS_*` variables. Password and
//! application credentials both work; the session is osauth's.
//!
//! osauth's own clouds.yaml loader ignores `OS_CLIENT_CONFIG_FILE`, which
//! every OpenStack tool honours, so the file is found and the entry chosen
//! here, then handed to osauth as a `CloudConfig`.

use std::path::PathBuf;

use osauth::CloudConfig;
use osauth::services::{GenericService, VersionSelector};

const IDENTITY: GenericService = GenericService::new("identity", VersionSelector::Major(3));

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no clouds.yaml found (looked at $OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)\n  hint: point OS_CLIENT_CONFIG_FILE at your clouds.yaml, or unset OS_CLOUD and cloud.name to use OS_* variables"
    )]
    NoCloudsFile,
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("cloud `{name}` is not in {path}; clouds there: {}", known.join(", "))]
    UnknownCloud {
        name: String,
        path: PathBuf,
        known: Vec<String>,
    },
    #[error(
        "OpenStack authentication ({source_}) failed: {message}\n  hint: check the credentials with `openstack token issue`"
    )]
    Failed { source_: String, message: String },
}

fn clouds_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OS_CLIENT_CONFIG_FILE") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    [
        Some(PathBuf::from("clouds.yaml")),
        home.map(|h| h.join(".config/openstack/clouds.yaml")),
        Some(PathBuf::from("/etc/openstack/clouds.yaml")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists())
}

/// Which cloud to use: the CLI's `--cloud`, else `OS_CLOUD`; else, when
/// `OS_AUTH_URL` is set, none (the `OS_*` variables are used, as every
/// OpenStack tool does); else the environment file's `cloud.name`.
pub fn cloud_name(cli: Option<&str>, env_file: Option<&str>) -> Option<String> {
    if let Some(c) = cli
        .map(str::to_owned)
        .or_else(|| std::env::var("OS_CLOUD").ok())
    {
        return Some(c);
    }
    if std::env::var_os("OS_AUTH_URL").is_some() {
        return None;
    }
    env_file.map(str::to_owned)
}

/// An authenticated session and the project it is scoped to.
pub async fn session(cloud: Option<&str>, region: &str) -> Result<osauth::Session, AuthError> {
    let (config, source_) = match cloud {
        Some(name) => (from_clouds_yaml(name)?, format!("cloud `{name}`")),
        None => (
            CloudConfig::from_env().map_err(|e| AuthError::Failed {
                source_: "OS_* variables".into(),
                message: e.to_string(),
            })?,
            "OS_* variables".to_owned(),
        ),
    };
    let mut session = config
        .create_session()
        .await
        .map_err(|e| AuthError::Failed {
            source_: source_.clone(),
            message: e.to_string(),
        })?;
    if session.endpoint_filters().region.is_none() {
        session.set_region(region);
    }
    Ok(session)
}

fn from_clouds_yaml(name: &str) -> Result<CloudConfig, AuthError> {
    let path = clouds_file().ok_or(AuthError::NoCloudsFile)?;
    let text = std::fs::read_to_string(&path).map_err(|e| AuthError::BadFile {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let doc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| AuthError::BadFile {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let clouds = doc
        .get("clouds")
        .and_then(|c| c.as_object())
        .ok_or_else(|| AuthError::BadFile {
            path: path.clone(),
            message: "no `clouds:` map".into(),
        })?;
    let entry = clouds.get(name).ok_or_else(|| AuthError::UnknownCloud {
        name: name.into(),
        path: path.clone(),
        known: clouds.keys().cloned().collect(),
    })?;
    serde_json::from_value(entry.clone()).map_err(|e| AuthError::BadFile {
        path,
        message: format!("cloud `{name}`: {e}"),
    })
}

/// The project id the session's token is scoped to (quotas are per project).
pub async fn project_id(session: &osauth::Session) -> Result<String, AuthError> {
    let fail = |m: String| AuthError::Failed {
        source_: "token".into(),
        message: m,
    };
    // Keystone answers a token about itself when it is both the auth and the subject token.
    let http = session.client().inner();
    let probe = session
        .auth_type()
        .authenticate(http, http.get("http://token.invalid/"))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let probe = probe.build().map_err(|e| fail(e.to_string()))?;
    let token = probe
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| fail("no token".into()))?
        .to_owned();
    let v: serde_json::Value = session
        .get(IDENTITY, &["auth", "tokens"])
        .header("X-Subject-Token", token)
        .fetch()
        .await
        .map_err(|e| fail(e.to_string()))?;
    v.pointer("/token/project/id")
        .and_then(|p| p.as_str())
        .map(str::to_owned)
        .ok_or_else(|| fail("the token is not scoped to a project".into()))
}
