//! The charts and stacks a run can use: `./charts` and `./stacks` when both
//! exist, else the set embedded in the binary (so `provisioner plan staging`
//! works from any folder). Templates are compiled once, at load, so a syntax
//! error is reported before anything is planned.

use std::collections::BTreeMap;
use std::path::Path;

use include_dir::{Dir, include_dir};
use serde::Deserialize;
use serde_json::Value;

use super::ChartError;

static EMBEDDED_CHARTS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/charts");
static EMBEDDED_STACKS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/stacks");

/// `Chart.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChartMeta {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub app_version: Option<String>,
    /// A semver range the target cluster must satisfy (`>=1.20.0`).
    #[serde(default)]
    pub kube_version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

pub struct Chart {
    pub meta: ChartMeta,
    /// Where it was read from (`charts/stac-api`), for messages.
    pub dir: String,
    pub values: Value,
    pub schema: Option<Value>,
    /// Template names (`charts/stac-api/templates/deployment.yaml`), rendered in this order.
    pub templates: Vec<String>,
    /// CRD documents from `crds/`, applied first and never templated.
    pub crds: Vec<(String, Value)>,
    pub(super) tera: tera::Tera,
}

/// One release of a stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackRelease {
    pub name: String,
    pub chart: String,
    pub namespace: String,
    /// Releases that must be ready before this one is applied.
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default = "empty_map")]
    pub values: Value,
    /// Secrets the chart receives: chart name → an entry of the environment's
    /// `secrets:` or `workload.s3.access_key` / `workload.s3.secret_key`; a
    /// trailing `?` makes it optional (absent when the environment lacks it).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Wait for the release's objects to be ready (default true).
    #[serde(default = "yes")]
    pub wait: bool,
    /// Certificates the provisioner generates and renews for the release
    /// (`certificate.<release>-<name>`). A certificate `c` gives the chart the
    /// secret inputs `<c>Cert`, `<c>Key`, `<c>CACert` (PEM) and the outputs
    /// `<c>CA` (the CA bundle, base64 PEM) and `<c>Version` (its expiry).
    #[serde(default)]
    pub certificates: BTreeMap<String, CertificateSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    /// DNS names the certificate is for (a webhook's `<service>.<namespace>.svc`).
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub common_name: Option<String>,
    #[serde(default = "validity")]
    pub validity_days: u32,
    /// Renew when this close to expiry (by `up`/`deploy`).
    #[serde(default = "renew_before")]
    pub renew_before_days: u32,
    /// `rsa-2048` (PKCS#1 keys) or `ecdsa-p256`.
    #[serde(default = "rsa")]
    pub key: String,
}

fn validity() -> u32 {
    365
}
fn renew_before() -> u32 {
    30
}
fn rsa() -> String {
    "rsa-2048".into()
}

fn empty_map() -> Value {
    Value::Object(Default::default())
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    #[serde(default)]
    pub description: Option<String>,
    pub releases: Vec<StackRelease>,
}

pub struct Catalog {
    pub charts: BTreeMap<String, Chart>,
    pub stacks: BTreeMap<String, Stack>,
    /// Every file read and its digest (saved plans compare them).
    pub files: Vec<(String, String)>,
}

/// Files under a root, as (relative path, text).
fn read_tree(root: &Path, rel: &str) -> Result<Vec<(String, String)>, ChartError> {
    let mut out = Vec::new();
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).map_err(|e| ChartError::Read {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    for entry in rd {
        let entry = entry.map_err(|e| ChartError::Read {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        if entry.path().is_dir() {
            out.extend(read_tree(root, &child)?);
        } else {
            let text = std::fs::read_to_string(entry.path()).map_err(|e| ChartError::Read {
                path: child.clone(),
                message: e.to_string(),
            })?;
            out.push((child, text));
        }
    }
    Ok(out)
}

fn embedded(dir: &Dir<'_>, prefix: &str, out: &mut Vec<(String, String)>) {
    for f in dir.files() {
        if let Some(text) = f.contents_utf8() {
            out.push((format!("{prefix}/{}", f.path().display()), text.to_owned()));
        }
    }
    for d in dir.dirs() {
        embedded(d, prefix, out);
    }
}

/// The stacks a run would use (as `Catalog::discover` finds them), without
/// compiling any chart: environment validation needs only their releases.
/// A stack that does not parse is left out here and reported when loaded.
pub fn available_stacks() -> BTreeMap<String, Stack> {
    let mut files = Vec::new();
    match root() {
        Some(r) => files = read_tree(&r, "stacks").unwrap_or_default(),
        None => embedded(&EMBEDDED_STACKS, "stacks", &mut files),
    }
    files
        .iter()
        .filter_map(|(p, t)| {
            let name = p.strip_prefix("stacks/")?.strip_suffix(".yaml")?;
            Some((name.to_owned(), serde_saphyr::from_str::<Stack>(t).ok()?))
        })
        .collect()
}

fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    hint: &str,
) -> Result<T, ChartError> {
    serde_saphyr::from_str(text).map_err(|e| ChartError::Parse {
        file: file.to_owned(),
        message: e.to_string(),
        hint: hint.to_owned(),
    })
}

/// A folder holding `charts/` and `stacks/` given on the command line
/// (`--charts`), set once at start-up before anything is loaded.
static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Use `root` instead of discovering; the first call wins.
pub fn set_root(root: &Path) {
    let _ = ROOT.set(root.to_path_buf());
}

/// Where charts come from: `--charts`, else `.` when `./charts` and
/// `./stacks` both exist, else None (the embedded set).
fn root() -> Option<std::path::PathBuf> {
    ROOT.get().cloned().or_else(|| {
        (Path::new("charts").is_dir() && Path::new("stacks").is_dir())
            .then(|| std::path::PathBuf::from("."))
    })
}

impl Catalog {
    /// From `--charts`, `./charts` + `./stacks`, or the embedded set.
    pub fn discover() -> Result<Self, ChartError> {
        match root() {
            Some(r) => Self::from_dir(&r),
            None => Self::embedded(),
        }
    }

    pub fn from_dir(root: &Path) -> Result<Self, ChartError> {
        let mut files = read_tree(root, "charts")?;
        files.extend(read_tree(root, "stacks")?);
        Self::from_files(files)
    }

    pub fn embedded() -> Result<Self, ChartError> {
        let mut files = Vec::new();
        embedded(&EMBEDDED_CHARTS, "charts", &mut files);
        embedded(&EMBEDDED_STACKS, "stacks", &mut files);
        Self::from_files(files)
    }

    /// Build from (path, text) pairs: `charts/<chart>/…`, `charts/_lib/…`, `stacks/<name>.yaml`.
    pub fn from_files(mut files: Vec<(String, String)>) -> Result<Self, ChartError> {
        files.sort();
        let digests = files
            .iter()
            .map(|(p, t)| (p.clone(), crate::core::digest::sha256(t.as_bytes())))
            .collect();
        let lib: Vec<(String, String)> = files
            .iter()
            .filter(|(p, _)| p.starts_with("charts/_lib/"))
            .cloned()
            .collect();
        let mut by_chart: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut stacks = BTreeMap::new();
        for (path, text) in &files {
            let parts: Vec<&str> = path.split('/').collect();
            match parts.as_slice() {
                ["charts", chart, ..] if !chart.starts_with('_') && parts.len() > 2 => {
                    by_chart
                        .entry((*chart).to_owned())
                        .or_default()
                        .push((path.clone(), text.clone()));
                }
                ["stacks", file] if file.ends_with(".yaml") => {
                    let stack: Stack = parse_yaml(
                        path,
                        text,
                        "a stack has `releases:`, each with name, chart, namespace and optional needs, values, secrets, wait",
                    )?;
                    stacks.insert(file.trim_end_matches(".yaml").to_owned(), stack);
                }
                _ => {}
            }
        }
        let mut charts = BTreeMap::new();
        for (name, chart_files) in by_chart {
            charts.insert(name.clone(), load_chart(&name, &chart_files, &lib)?);
        }
        Ok(Self {
            charts,
            stacks,
            files: digests,
        })
    }

    pub fn chart(&self, release: &str, name: &str) -> Result<&Chart, ChartError> {
        self.charts
            .get(name)
            .ok_or_else(|| ChartError::UnknownChart {
                release: release.to_owned(),
                chart: name.to_owned(),
                available: self.charts.keys().cloned().collect(),
            })
    }

    pub fn stack(&self, name: &str) -> Result<&Stack, ChartError> {
        self.stacks
            .get(name)
            .ok_or_else(|| ChartError::UnknownStack {
                stack: name.to_owned(),
                available: self.stacks.keys().cloned().collect(),
            })
    }

    /// Every CRD any chart ships, by (group, kind): for validating custom
    /// resources before the cluster has the CRD.
    pub fn crds(&self) -> BTreeMap<(String, String), &Value> {
        let mut out = BTreeMap::new();
        for c in self.charts.values() {
            for (_, crd) in &c.crds {
                let group = crd
                    .pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let kind = crd
                    .pointer("/spec/names/kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                out.insert((group, kind), crd);
            }
        }
        out
    }
}

fn load_chart(
    name: &str,
    files: &[(String, String)],
    lib: &[(String, String)],
) -> Result<Chart, ChartError> {
    let dir = format!("charts/{name}");
    let get = |rel: &str| {
        files
            .iter()
            .find(|(p, _)| *p == format!("{dir}/{rel}"))
            .map(|(_, t)| t.as_str())
    };
    let meta_file = format!("{dir}/Chart.yaml");
    let meta: ChartMeta = parse_yaml(
        &meta_file,
        get("Chart.yaml").ok_or_else(|| ChartError::Read {
            path: meta_file.clone(),
            message: "missing".into(),
        })?,
        "Chart.yaml has name, version and optional appVersion, kubeVersion, description",
    )?;
    if meta.name != name {
        return Err(ChartError::Parse {
            file: meta_file,
            message: format!("name is `{}` but the folder is `{name}`", meta.name),
            hint: "make them the same".into(),
        });
    }
    let values = match get("values.yaml") {
        Some(t) if !t.trim().is_empty() => parse_yaml(
            &format!("{dir}/values.yaml"),
            t,
            "values.yaml is a YAML map",
        )?,
        _ => Value::Object(Default::default()),
    };
    let schema = get("values.schema.json")
        .map(|t| {
            serde_json::from_str(t).map_err(|e| ChartError::Parse {
                file: format!("{dir}/values.schema.json"),
                message: e.to_string(),
                hint: "a JSON Schema document".into(),
            })
        })
        .transpose()?;
    let mut crds = Vec::new();
    let mut templates = Vec::new();
    let mut sources = lib.to_vec();
    for (path, text) in files {
        let rel = &path[dir.len() + 1..];
        if rel.starts_with("crds/") {
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(text).map_err(|e| ChartError::Parse {
                    file: path.clone(),
                    message: e.to_string(),
                    hint: "crds/ holds plain YAML CustomResourceDefinitions".into(),
                })?;
            crds.extend(
                docs.into_iter()
                    .filter(|d| !d.is_null())
                    .map(|d| (path.clone(), d)),
            );
        } else if let Some(file) = rel.strip_prefix("templates/") {
            sources.push((path.clone(), text.clone()));
            if !file.starts_with('_') && (file.ends_with(".yaml") || file.ends_with(".yml")) {
                templates.push(path.clone());
            }
        }
    }
    templates.sort();
    let tera = super::engine::compile(&sources)?;
    Ok(Chart {
        meta,
        dir,
        values,
        schema,
        templates,
        crds,
        tera,
    })
}
