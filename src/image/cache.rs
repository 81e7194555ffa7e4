//! Where built things are kept between runs, outside the repository:
//! `$PROVISIONER_CACHE`, else `$XDG_CACHE_HOME/provisioner`, else
//! `~/.cache/provisioner`. Blobs are content-addressed (`blobs/sha256/<hex>`,
//! the OCI layout's own scheme), so a cached blob is right or absent; an entry
//! is written to a temporary name and renamed, so a killed run leaves no
//! half-written blob under a real name.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ImageError;

/// The cache root (created on first write).
pub fn root() -> PathBuf {
    if let Some(p) = std::env::var_os("PROVISIONER_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("provisioner");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("provisioner")
}

/// A content-addressed blob store under `root`.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("blobs").join("sha256"),
        }
    }

    /// Path of the blob with this digest (`sha256:<hex>`).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest.trim_start_matches("sha256:"))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// Store bytes under their digest; returns it.
    pub fn put(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = crate::core::digest::sha256(bytes);
        let path = self.path(&digest);
        if !path.is_file() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(ImageError::io(path))
    }
}

/// Write `bytes` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ImageError::io(dir))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(ImageError::io(&tmp))?;
    f.write_all(bytes).map_err(ImageError::io(&tmp))?;
    f.sync_all().map_err(ImageError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ImageError::io(path))
}
