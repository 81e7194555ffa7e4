//! Images the environment builds itself: container images assembled as OCI
//! images without a Docker daemon and pushed with the distribution API
//! (`recipe`, `layer`, `debian`, `oci`, `registry`), and the recipe of the
//! node image the cloud layer bakes on a builder server (`node`).
//!
//! Guarantees: the same recipe and inputs give byte-identical blobs and so
//! the same digest; heavy parts (Debian packages, layers) are cached by what
//! they are made of, outside the repository; credentials never leave the
//! registry client (errors name the registry and the user, never a password).

pub mod build;
pub mod cache;
pub mod debian;
pub mod layer;
pub mod node;
pub mod oci;
pub mod recipe;
pub mod registry;

use std::path::PathBuf;

pub use build::{Built, build};
pub use recipe::Recipe;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A recipe that cannot be used as written.
    #[error("{file}: {field}: {message}\n  hint: {hint}")]
    Recipe {
        file: String,
        field: String,
        message: String,
        hint: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A host tool (apt-get, dpkg-deb, ldd) that failed or is missing.
    #[error("{tool}: {message}\n  hint: {hint}")]
    Tool {
        tool: String,
        message: String,
        hint: String,
    },
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
}

/// `host[:port]` of a registry URL, as image references name it.
pub fn registry_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The reference charts use: `host/repository@sha256:…`.
pub fn reference(registry_url: &str, built: &Built) -> String {
    format!("{}/{}@{}", registry_host(registry_url), built.repository, built.digest)
}

static EMBEDDED: include_dir::Dir<'_> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/images");

/// The files of recipe folder `dir` (`images/geozarr`): from the working
/// directory when it has the folder (a checkout), else the set built into the
/// binary. Relative path → bytes.
pub fn recipe_files(dir: &str) -> Result<std::collections::BTreeMap<String, Vec<u8>>, ImageError> {
    let mut out = std::collections::BTreeMap::new();
    let on_disk = std::path::Path::new(dir);
    if on_disk.is_dir() {
        read_tree(on_disk, on_disk, &mut out)?;
        return Ok(out);
    }
    let sub = dir.strip_prefix("images/").unwrap_or(dir);
    let Some(d) = EMBEDDED.get_dir(sub) else {
        return Err(ImageError::recipe(
            dir,
            "(folder)",
            "no such recipe folder here or built in",
            "name a folder under images/, e.g. images/geozarr",
        ));
    };
    fn walk(d: &include_dir::Dir<'_>, base: &str, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for f in d.files() {
            let rel = f.path().display().to_string();
            out.insert(rel.strip_prefix(base).unwrap_or(&rel).trim_start_matches('/').to_owned(), f.contents().to_vec());
        }
        for s in d.dirs() {
            walk(s, base, out);
        }
    }
    walk(d, sub, &mut out);
    Ok(out)
}

fn read_tree(
    root: &std::path::Path,
    dir: &std::path::Path,
    out: &mut std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<(), ImageError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(ImageError::io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(root, &p, out)?;
        } else {
            let bytes = std::fs::read(&p).map_err(ImageError::io(&p))?;
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            out.insert(rel, bytes);
        }
    }
    Ok(())
}

/// Build every container image the environment builds (cached), by recipe folder.
pub fn for_env(
    env: &crate::env::model::Environment,
) -> Result<std::collections::BTreeMap<String, Built>, ImageError> {
    let mut out = std::collections::BTreeMap::new();
    if let Some(dir) = env.workload.as_ref().and_then(|w| w.image.build_dir()) {
        out.insert(dir.to_owned(), build(&Recipe::load(dir)?, std::path::Path::new("."))?);
    }
    Ok(out)
}

impl ImageError {
    /// A recipe problem: the file, the field, what is wrong, what to do.
    pub(crate) fn recipe(file: &str, field: &str, message: impl Into<String>, hint: &str) -> Self {
        ImageError::Recipe {
            file: file.into(),
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The registry or the network failed, not the input: retry later.
    pub fn is_transient(&self) -> bool {
        matches!(self, ImageError::Registry(r) if r.is_transient())
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }
}
