//! The base layer from Debian packages: versions resolved by apt (or pinned
//! in the recipe), `.deb` files downloaded once into the cache
//! (`debs/<name>_<version>_<arch>.deb`), their data unpacked without running
//! maintainer scripts, with Debian's merged-/usr layout (`/lib` → `usr/lib`).
//! The CA bundle `update-ca-certificates` would write is made here.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;
use super::layer::{Entry, Tree};

/// A package at a version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

impl Package {
    /// `name=version`, as apt takes it and the cache key says it.
    pub fn pinned(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
    fn file(&self) -> String {
        // apt's own file name, with the epoch's colon escaped as apt does.
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }
}

fn tool(tool: &str, message: String) -> ImageError {
    ImageError::Tool {
        tool: tool.into(),
        message,
        hint: "the base layer is made from Debian packages: build on Debian (apt-get, dpkg-deb), or pin `name=version` in base.packages and keep the cache".into(),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, ImageError> {
    let out = cmd
        .output()
        .map_err(|e| tool(what, format!("cannot run: {e}")))?;
    if !out.status.success() {
        return Err(tool(
            what,
            format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(out.stdout)
}

/// The version and architecture of each package: pinned ones as written,
/// the others apt's candidate. One apt-cache call (it takes a second to
/// load its cache), remembered in `cache` until apt's package lists change.
pub fn resolve(specs: &[String], cache: &Path) -> Result<Vec<Package>, ImageError> {
    let lists = std::fs::metadata("/var/lib/apt/lists")
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let memo = cache.join("apt").join(crate::core::digest::sha256_hex(
        format!("{}\n{lists}", specs.join(" ")).as_bytes(),
    ));
    if lists > 0
        && let Ok(text) = std::fs::read_to_string(&memo)
        && let Ok(p) = parse(specs, &text)
    {
        return Ok(p);
    }
    let text = run(
        Command::new("apt-cache").args(["show", "--no-all-versions"]).args(specs),
        "apt-cache",
    )?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let packages = parse(specs, &text)?;
    super::cache::write_atomic(&memo, text.as_bytes())?;
    Ok(packages)
}

/// The package records apt-cache printed, one per spec, in name order.
fn parse(specs: &[String], text: &str) -> Result<Vec<Package>, ImageError> {
    let mut found = std::collections::BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |f: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}: ")))
                .map(str::to_owned)
        };
        if let (Some(name), Some(version), Some(arch)) =
            (field("Package"), field("Version"), field("Architecture"))
        {
            found.insert(name.clone(), Package { name, version, arch });
        }
    }
    let mut out = Vec::new();
    for spec in specs {
        let (name, pin) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (spec.as_str(), None),
        };
        match found.get(name) {
            Some(p) if pin.is_none_or(|v| v == p.version) => out.push(p.clone()),
            _ => return Err(tool("apt-cache", format!("no version of `{spec}` known to apt"))),
        }
    }
    out.sort();
    Ok(out)
}

/// The `.deb` of each package, downloaded into `cache/debs` when missing.
pub fn fetch(packages: &[Package], cache: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let dir = cache.join("debs");
    std::fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
    let mut paths = Vec::new();
    for p in packages {
        let path = dir.join(p.file());
        if !path.is_file() {
            tracing::info!(package = %p.pinned(), "downloading");
            run(
                Command::new("apt-get")
                    .args(["download", "-q", &p.pinned()])
                    .current_dir(&dir),
                "apt-get download",
            )?;
            if !path.is_file() {
                return Err(tool(
                    "apt-get download",
                    format!("{} did not appear in {}", p.file(), dir.display()),
                ));
            }
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Top-level directories Debian's merged /usr turns into symlinks.
const MERGED: &[&str] = &["bin", "sbin", "lib", "lib64"];

fn merged_usr(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    let top = p.split('/').next().unwrap_or("");
    if MERGED.contains(&top) {
        format!("usr/{p}")
    } else {
        p.to_owned()
    }
}

/// Unpack the packages' data into one tree.
pub fn unpack(debs: &[PathBuf], exclude: &[String]) -> Result<Tree, ImageError> {
    let mut tree = Tree::new();
    for top in MERGED {
        tree.symlink(top, &format!("usr/{top}"));
        tree.dir(&format!("usr/{top}"), 0o755);
    }
    for deb in debs {
        let data = run(
            Command::new("dpkg-deb").arg("--fsys-tarfile").arg(deb),
            "dpkg-deb",
        )?;
        let mut archive = tar::Archive::new(data.as_slice());
        let entries = archive.entries().map_err(ImageError::io(deb))?;
        for e in entries {
            let mut e = e.map_err(ImageError::io(deb))?;
            let raw = e.path().map_err(ImageError::io(deb))?.display().to_string();
            let path = merged_usr(&raw);
            if path.is_empty() || exclude.iter().any(|x| path.starts_with(x.as_str())) {
                continue;
            }
            let h = e.header();
            let mode = h.mode().map_err(ImageError::io(deb))?;
            let link = || -> Result<String, ImageError> {
                Ok(e.link_name()
                    .map_err(ImageError::io(deb))?
                    .map(|l| l.display().to_string())
                    .unwrap_or_default())
            };
            let entry = match h.entry_type() {
                tar::EntryType::Directory => {
                    if MERGED.contains(&path.as_str()) {
                        continue;
                    }
                    Entry::Dir { mode, uid: 0, gid: 0 }
                }
                tar::EntryType::Symlink => Entry::Symlink { target: link()? },
                tar::EntryType::Link => Entry::Hardlink { target: merged_usr(&link()?) },
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut e, &mut data).map_err(ImageError::io(deb))?;
                    Entry::File { mode, uid: 0, gid: 0, data }
                }
                _ => continue,
            };
            tree.insert(&path, entry);
        }
    }
    ca_bundle(&mut tree);
    Ok(tree)
}

/// `/etc/ssl/certs/ca-certificates.crt` as `update-ca-certificates` makes it
/// from the ca-certificates package (every Mozilla certificate, in name order),
/// when that package is in the tree.
fn ca_bundle(tree: &mut Tree) {
    let prefix = "usr/share/ca-certificates/mozilla/";
    let pems: Vec<Vec<u8>> = tree
        .paths()
        .filter(|p| p.starts_with(prefix) && p.ends_with(".crt"))
        .filter_map(|p| match tree.get(p) {
            Some(Entry::File { data, .. }) => Some(data.clone()),
            _ => None,
        })
        .collect();
    if pems.is_empty() {
        return;
    }
    let mut bundle = Vec::new();
    for mut pem in pems {
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        bundle.extend(pem);
    }
    tree.file("etc/ssl/certs/ca-certificates.crt", 0o644, bundle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_paths() {
        assert_eq!(merged_usr("./lib/x86_64-linux-gnu/libc.so.6"), "usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(merged_usr("./lib64/ld-linux-x86-64.so.2"), "usr/lib64/ld-linux-x86-64.so.2");
        assert_eq!(merged_usr("./usr/lib/x"), "usr/lib/x");
        assert_eq!(merged_usr("./etc/ld.so.conf"), "etc/ld.so.conf");
        assert_eq!(merged_usr("./library/x"), "library/x");
    }
}
