//! A container image recipe (`images/<name>/image.yaml`): the Debian packages
//! of the base layer, the binary and where it goes, the user, entrypoint,
//! environment and labels. Unknown fields are refused with the file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ImageError;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Repository under the environment's registry, e.g. `eo/geozarr`.
    pub repository: String,
    /// A tag pushed along with the manifest, for people; charts use the digest.
    #[serde(default = "default_tag")]
    pub tag: String,
    pub base: Base,
    pub binary: Binary,
    #[serde(default)]
    pub user: User,
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default = "default_workdir")]
    pub workdir: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_tag() -> String {
    "latest".into()
}
fn default_workdir() -> String {
    "/tmp".into()
}

/// The base layer: Debian packages unpacked (not installed: no maintainer
/// scripts run), as distroless images do. `name` takes apt's candidate
/// version; `name=version` pins one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Base {
    pub packages: Vec<String>,
    /// Paths (prefixes) left out of the layer: documentation, manuals.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
}

fn default_exclude() -> Vec<String> {
    ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale"]
        .map(String::from)
        .to_vec()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    /// `self` (the running provisioner: its `workload` commands are the
    /// converter) or a path relative to the project root.
    pub from: String,
    /// Where it goes in the image.
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub uid: u32,
}

impl Default for User {
    fn default() -> Self {
        Self {
            name: "app".into(),
            uid: 65532,
        }
    }
}

impl Recipe {
    /// Read recipe folder `dir` (a checkout's, else the built-in one) and check its `image.yaml`.
    pub fn load(dir: &str) -> Result<Self, ImageError> {
        let file = format!("{dir}/image.yaml");
        let files = super::recipe_files(dir)?;
        let text = files.get("image.yaml").ok_or_else(|| {
            ImageError::recipe(&file, "(file)", "missing", "a container image folder holds image.yaml")
        })?;
        Self::parse(&file, &String::from_utf8_lossy(text))
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, ImageError> {
        let r: Recipe = serde_saphyr::from_str(text).map_err(|e| {
            ImageError::recipe(file, "(document)", e.to_string(), "fields: repository, tag, base.packages, binary.{from,to}, user, entrypoint, cmd, workdir, env, labels")
        })?;
        let bad = |field: &str, message: String, hint: &str| ImageError::recipe(file, field, message, hint);
        if r.uid_is_root() {
            return Err(bad("user.uid", "0 is root".into(), "run as a non-root user, e.g. 65532"));
        }
        if !r.repository.split('/').all(valid_component) {
            return Err(bad(
                "repository",
                format!("`{}` is not a repository name", r.repository),
                "lowercase letters, digits and . _ - between slashes, e.g. eo/geozarr",
            ));
        }
        if !r.binary.to.starts_with('/') {
            return Err(bad("binary.to", "must be an absolute path".into(), "e.g. /usr/local/bin/provisioner"));
        }
        if r.entrypoint.is_empty() {
            return Err(bad("entrypoint", "is empty".into(), "e.g. [/usr/local/bin/provisioner]"));
        }
        if r.base.packages.is_empty() {
            return Err(bad("base.packages", "is empty".into(), "at least libc6"));
        }
        Ok(r)
    }

    fn uid_is_root(&self) -> bool {
        self.user.uid == 0
    }

    /// The binary to put in the image.
    pub fn binary_path(&self, project_root: &Path) -> Result<PathBuf, ImageError> {
        if self.binary.from == "self" {
            return std::env::current_exe().map_err(ImageError::io("/proc/self/exe"));
        }
        Ok(project_root.join(&self.binary.from))
    }
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "repository: eo/geozarr\nbase: {packages: [libc6]}\nbinary: {from: self, to: /usr/local/bin/p}\nentrypoint: [/usr/local/bin/p]\n";

    #[test]
    fn parses_and_refuses_with_the_field() {
        let r = Recipe::parse("image.yaml", OK).unwrap();
        assert_eq!(r.user.uid, 65532);
        assert_eq!(r.tag, "latest");
        let e = Recipe::parse("image.yaml", &OK.replace("eo/geozarr", "EO/Geo")).unwrap_err();
        assert!(e.to_string().contains("image.yaml: repository"), "{e}");
        let e = Recipe::parse("image.yaml", &format!("{OK}user: {{name: r, uid: 0}}\n")).unwrap_err();
        assert!(e.to_string().contains("user.uid"), "{e}");
        let e = Recipe::parse("image.yaml", &format!("{OK}colour: red\n")).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
