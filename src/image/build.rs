//! Assembling a container image from its recipe, without a daemon: a base
//! layer of Debian packages, a layer with the binary and any shared library
//! it needs that the base lacks, a layer with the user; then the config and
//! the manifest. Every blob goes to the cache's blob store; layers are cached
//! by what they are made of (`layers/<key>.json`), so a rebuild with the same
//! binary reads two small files and hashes the binary.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::cache::{self, Blobs};
use super::layer::{Entry, Layer, Tree};
use super::oci::{self, Config, Descriptor, History, Manifest, RootFs, RunConfig};
use super::{ImageError, Recipe, debian};

/// Bumped when the way layers are made changes, so old cache entries are not reused.
const FORMAT: &str = "layers-v1";

/// A built image, its blobs in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Built {
    pub repository: String,
    pub tag: String,
    /// The manifest's digest: what charts reference.
    pub digest: String,
    pub manifest: Manifest,
    /// The manifest as pushed (its digest is `digest`).
    #[serde(skip)]
    pub manifest_bytes: Vec<u8>,
    /// The Debian packages of the base layer, `name=version`.
    pub packages: Vec<String>,
}

impl Built {
    /// Every blob of the image: the config, then the layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.manifest.config).chain(self.manifest.layers.iter())
    }
}

#[derive(Serialize, Deserialize)]
struct CachedLayer {
    digest: String,
    diff_id: String,
    size: u64,
}

/// A layer from the cache when its key is known, else built by `make` and remembered.
fn cached_layer(
    root: &Path,
    blobs: &Blobs,
    key: &str,
    make: impl FnOnce() -> Result<Tree, ImageError>,
) -> Result<CachedLayer, ImageError> {
    let index = root
        .join("layers")
        .join(crate::core::digest::sha256_hex(format!("{FORMAT}\n{key}").as_bytes()) + ".json");
    if let Ok(text) = std::fs::read(&index)
        && let Ok(c) = serde_json::from_slice::<CachedLayer>(&text)
        && blobs.has(&c.digest)
    {
        return Ok(c);
    }
    let Layer { bytes, digest, diff_id } = make()?.layer()?;
    blobs.put(&bytes)?;
    let c = CachedLayer { digest, diff_id, size: bytes.len() as u64 };
    let json = serde_json::to_vec(&c).unwrap_or_default();
    cache::write_atomic(&index, &json)?;
    Ok(c)
}

/// The sha256 of a file, remembered by its identity (device, inode, size,
/// modification time) so that planning does not hash a large binary again
/// until it changes, as make and cargo trust modification times.
fn file_digest(root: &Path, path: &Path) -> Result<String, ImageError> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).map_err(ImageError::io(path))?;
    let id = format!("{} {} {} {}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec());
    let memo = root
        .join("digests")
        .join(crate::core::digest::sha256_hex(format!("{}\n{id}", path.display()).as_bytes()));
    if let Ok(d) = std::fs::read_to_string(&memo)
        && d.starts_with("sha256:")
    {
        return Ok(d);
    }
    let bytes = std::fs::read(path).map_err(ImageError::io(path))?;
    let d = crate::core::digest::sha256(&bytes);
    cache::write_atomic(&memo, d.as_bytes())?;
    Ok(d)
}

/// Shared libraries the binary loads (ldd), as host paths; the loader included.
fn libraries(binary: &Path) -> Result<Vec<String>, ImageError> {
    let out = Command::new("ldd").arg(binary).output().map_err(|e| ImageError::Tool {
        tool: "ldd".into(),
        message: format!("cannot run: {e}"),
        hint: "install libc-bin".into(),
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || !out.status.success() {
        return Ok(Vec::new());
    }
    let mut libs: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once("=> ") {
                Some((_, rest)) => rest.split_whitespace().next().filter(|p| p.starts_with('/')),
                None => l.split_whitespace().next().filter(|p| p.starts_with('/')),
            }
            .map(str::to_owned)
        })
        .collect();
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// Where a host library sits in a merged-/usr image.
fn in_image(host_path: &str) -> String {
    let p = host_path.trim_start_matches('/');
    match p.split('/').next() {
        Some("lib" | "lib64" | "bin" | "sbin") => format!("usr/{p}"),
        _ => p.to_owned(),
    }
}

/// Build the image `recipe` describes; `project_root` resolves a binary path.
pub fn build(recipe: &Recipe, project_root: &Path) -> Result<Built, ImageError> {
    let root = cache::root();
    let blobs = Blobs::new(&root);
    let packages = debian::resolve(&recipe.base.packages, &root)?;
    let pinned: Vec<String> = packages.iter().map(debian::Package::pinned).collect();

    let base_key = format!("base\n{}\nexclude {}", pinned.join("\n"), recipe.base.exclude.join(","));
    let base = cached_layer(&root, &blobs, &base_key, || {
        let debs = debian::fetch(&packages, &root)?;
        debian::unpack(&debs, &recipe.base.exclude)
    })?;

    let binary = recipe.binary_path(project_root)?;
    let binary_digest = file_digest(&root, &binary)?;
    let libs = libraries(&binary)?;
    // The base's paths decide which libraries the binary layer must carry.
    let bin_key = format!(
        "binary {} -> {}\nlibs {}\nbase {}",
        binary_digest,
        recipe.binary.to,
        libs.join(","),
        base.digest
    );
    let bin = cached_layer(&root, &blobs, &bin_key, || {
        let tree = debian::unpack(&debian::fetch(&packages, &root)?, &recipe.base.exclude)?;
        let bytes = std::fs::read(&binary).map_err(ImageError::io(&binary))?;
        if crate::core::digest::sha256(&bytes) != binary_digest {
            return Err(ImageError::Tool {
                tool: binary.display().to_string(),
                message: "changed while the image was being built".into(),
                hint: "build again once it is written".into(),
            });
        }
        let mut t = Tree::new();
        t.file(&recipe.binary.to, 0o755, bytes);
        for lib in &libs {
            let at = in_image(lib);
            if !tree.contains(&at) {
                tracing::warn!(library = %lib, "not in the base packages; copied from this machine");
                let data = std::fs::read(lib).map_err(ImageError::io(lib))?;
                t.file(&at, 0o755, data);
            }
        }
        Ok(t)
    })?;

    let user = user_layer(recipe)?;
    blobs.put(&user.bytes)?;
    let user = CachedLayer {
        size: user.bytes.len() as u64,
        digest: user.digest,
        diff_id: user.diff_id,
    };

    let layers = [&base, &user, &bin];
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into(),
    ];
    env.extend(recipe.env.iter().map(|(k, v)| format!("{k}={v}")));
    let config = Config {
        architecture: oci::host_architecture().into(),
        os: "linux".into(),
        config: RunConfig {
            user: format!("{0}:{0}", recipe.user.uid),
            entrypoint: recipe.entrypoint.clone(),
            cmd: recipe.cmd.clone(),
            env,
            working_dir: recipe.workdir.clone(),
            labels: recipe.labels.clone(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        },
        history: vec![
            History { created_by: format!("provisioner: debian packages {}", pinned.join(" ")) },
            History { created_by: format!("provisioner: user {} ({})", recipe.user.name, recipe.user.uid) },
            History { created_by: format!("provisioner: {} and its libraries", recipe.binary.to) },
        ],
    };
    // Plain data serialises; an error here would be a bug in the types above.
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let config_digest = blobs.put(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: oci::MANIFEST.into(),
        config: Descriptor {
            media_type: oci::CONFIG.into(),
            digest: config_digest,
            size: config_bytes.len() as u64,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: oci::LAYER_GZIP.into(),
                digest: l.digest.clone(),
                size: l.size,
            })
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    Ok(Built {
        repository: recipe.repository.clone(),
        tag: recipe.tag.clone(),
        digest: crate::core::digest::sha256(&manifest_bytes),
        manifest,
        manifest_bytes,
        packages: pinned,
    })
}

/// `/etc/passwd`, `/etc/group`, the user's home and a world-writable `/tmp`.
fn user_layer(recipe: &Recipe) -> Result<Layer, ImageError> {
    let u = &recipe.user;
    let mut t = Tree::new();
    t.file(
        "etc/passwd",
        0o644,
        format!("root:x:0:0:root:/root:/usr/sbin/nologin\n{0}:x:{1}:{1}:{0}:/home/{0}:/usr/sbin/nologin\n", u.name, u.uid).into_bytes(),
    );
    t.file("etc/group", 0o644, format!("root:x:0:\n{0}:x:{1}:\n", u.name, u.uid).into_bytes());
    t.insert(
        &format!("home/{}", u.name),
        Entry::Dir { mode: 0o750, uid: u.uid.into(), gid: u.uid.into() },
    );
    t.dir("tmp", 0o1777);
    t.layer()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_libraries_map_into_merged_usr() {
        assert_eq!(in_image("/lib/x86_64-linux-gnu/libc.so.6"), "usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(in_image("/usr/lib/x86_64-linux-gnu/libssl.so.3"), "usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert_eq!(in_image("/lib64/ld-linux-x86-64.so.2"), "usr/lib64/ld-linux-x86-64.so.2");
    }

    #[test]
    fn ldd_names_the_loader_and_libc() {
        let libs = libraries(Path::new("/bin/ls")).unwrap();
        assert!(libs.iter().any(|l| l.contains("libc.so")), "{libs:?}");
        assert!(libs.iter().any(|l| l.contains("ld-linux")), "{libs:?}");
    }
}
