//! Charts: Helm-shaped folders rendered with Tera, grouped into stacks.
//!
//! A chart is `charts/<name>/` with `Chart.yaml`, `values.yaml`, an optional
//! `values.schema.json`, `templates/*.yaml` (each rendered to zero or more
//! Kubernetes objects; files starting with `_` hold components only) and
//! `crds/*.yaml` (applied first, not templated). `charts/_lib/` holds the
//! components every chart shares (names, labels, selectors). A stack
//! (`stacks/<name>.yaml`) lists releases: a chart, a namespace, the releases
//! it needs, values and the environment secrets it receives.
//!
//! Rendering is pure and deterministic: the same chart files, values,
//! capabilities and release give byte-identical objects. Secret values never
//! enter a render: a chart sees `Secrets.<name>` as a placeholder token that
//! may only appear in a Secret's `stringData`, and the deploy engine puts the
//! value in at apply time, in memory.

pub mod capabilities;
pub mod catalog;
pub mod engine;
pub mod object;
pub mod schema;
pub mod values;

pub use capabilities::Capabilities;
pub use catalog::{Catalog, Chart, Stack, StackRelease};
pub use engine::{Rendered, render};
pub use object::{Object, ObjectId};

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{file}: {message}\n  hint: {hint}")]
    Parse {
        file: String,
        message: String,
        hint: String,
    },
    #[error("{file}: {key}: {message}\n  hint: {hint}")]
    Values {
        file: String,
        key: String,
        message: String,
        hint: String,
    },
    #[error("{0}")]
    Template(String),
    #[error("release `{release}` uses chart `{chart}`, which does not exist; charts: {}", available.join(", "))]
    UnknownChart {
        release: String,
        chart: String,
        available: Vec<String>,
    },
    #[error("stack `{stack}` does not exist; stacks: {}", available.join(", "))]
    UnknownStack {
        stack: String,
        available: Vec<String>,
    },
    #[error("--set names release `{release}`, which the selected stacks do not declare; releases: {}", available.join(", "))]
    UnknownRelease {
        release: String,
        available: Vec<String>,
    },
    #[error("release `{release}` needs `{needs}`, which no selected stack declares")]
    UnknownNeed { release: String, needs: String },
    #[error("{template}: rendered YAML is not a Kubernetes object: {message}")]
    Manifest { template: String, message: String },
    #[error("{object} (from {template}): {message}\n  hint: {hint}")]
    Invalid {
        object: String,
        template: String,
        message: String,
        hint: String,
    },
    #[error("chart `{chart}` needs Kubernetes {constraint}, the target is {version}")]
    KubeVersion {
        chart: String,
        constraint: String,
        version: String,
    },
}
