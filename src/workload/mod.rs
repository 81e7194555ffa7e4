//! The conversion workload: Sentinel-2 EOPF Zarr (v2) → cloud-optimised GeoZarr
//! (Zarr v3, sharded, multiscale) → S3 → STAC registration → storage tier.
//!
//! Layers, each with one job: `io` (read and write objects: folder, HTTP, S3),
//! `eopf` (the source product: metadata, chunk decoding), `geo` (CRS and
//! transforms), `zarr3` (output metadata and the streaming shard writer),
//! `convert` (the pipeline), `synth` (synthetic products for tests and
//! benchmarks), `stac` (items, collections, registration), `tier` (storage class).

pub mod convert;
pub mod convert_s1;
pub mod eopf;
pub mod floor;
pub mod gcp;
pub mod geo;
pub mod glob;

pub mod io;
pub mod source;
pub mod stac;

pub mod synth;
pub mod synth_s1;
pub mod tier;
pub mod warp;
pub mod webhook;

pub mod zarr3;

/// What went wrong in the workload, with the path or URL it concerns.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The source does not exist (exit code 2: the workflow does not retry it).
    #[error(
        "source not found: {0}\n  hint: check the STAC item URL, Zarr URL or path; a product must have a consolidated `.zmetadata`"
    )]
    SourceNotFound(String),
    #[error("{path}: {msg}")]
    Product { path: String, msg: String },
    #[error(
        "corrupt chunk {path}: {msg}\n  hint: the source object is damaged or truncated; re-stage the product and rerun (the output is not marked complete)"
    )]
    Corrupt { path: String, msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("S3 {what}: {msg}")]
    S3 { what: String, msg: String },
    #[error("HTTP {what}: {msg}")]
    Http { what: String, msg: String },
    #[error("STAC API {what}: HTTP {status}: {body}")]
    Stac {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Usage(String),
}

impl WorkloadError {
    pub fn product(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::Product {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
    /// Process exit code: 2 = source missing (not worth retrying), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::SourceNotFound(_) => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = WorkloadError> = std::result::Result<T, E>;
