//! One image layer, built reproducibly: entries sorted by path, every parent
//! directory present, owners numeric, one fixed modification time, no
//! extended attributes, gzip without a name or time in its header. The same
//! tree always gives the same bytes, so the same digest.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::ImageError;

/// The modification time of every entry (2000-01-01T00:00:00Z): fixed, so
/// rebuilding from the same inputs changes nothing; not 0, which some tools
/// treat as "unset".
pub const MTIME: u64 = 946_684_800;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32, uid: u64, gid: u64 },
    File { mode: u32, uid: u64, gid: u64, data: Vec<u8> },
    Symlink { target: String },
    Hardlink { target: String },
}

/// A filesystem tree by path (relative, without a leading `/`).
#[derive(Debug, Default, Clone)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

/// A finished layer: its gzip bytes, their digest and the digest of the
/// uncompressed tar (the config's `diff_id`).
#[derive(Debug, Clone)]
pub struct Layer {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
}

fn clean(path: &str) -> String {
    path.trim_start_matches("./").trim_matches('/').to_owned()
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) an entry; its parent directories are made when the
    /// layer is written, if not given.
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let p = clean(path);
        if !p.is_empty() {
            self.entries.insert(p, entry);
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) {
        self.insert(path, Entry::Dir { mode, uid: 0, gid: 0 });
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.insert(path, Entry::File { mode, uid: 0, gid: 0, data });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Entry::Symlink { target: target.to_owned() });
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&clean(path))
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(&clean(path))
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tar + gzip of this tree.
    pub fn layer(&self) -> Result<Layer, ImageError> {
        let mut all = self.entries.clone();
        for path in self.entries.keys() {
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                all.entry(p.to_owned())
                    .or_insert(Entry::Dir { mode: 0o755, uid: 0, gid: 0 });
                parent = p;
            }
        }
        let gz = GzEncoder::new(Vec::new(), Compression::default());
        let mut tee = Tee { inner: gz, hash: Sha256::new() };
        {
            let mut b = tar::Builder::new(&mut tee);
            b.mode(tar::HeaderMode::Deterministic);
            for (path, e) in &all {
                append(&mut b, path, e)?;
            }
            b.finish().map_err(ImageError::io(path_of(&all)))?;
        }
        let diff_id = format!("sha256:{}", crate::core::digest::hex(tee.hash.finalize()));
        let bytes = tee.inner.finish().map_err(ImageError::io("gzip"))?;
        Ok(Layer {
            digest: crate::core::digest::sha256(&bytes),
            bytes,
            diff_id,
        })
    }
}

fn path_of(all: &BTreeMap<String, Entry>) -> String {
    all.keys().next().cloned().unwrap_or_else(|| "layer".into())
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

fn append<W: Write>(b: &mut tar::Builder<W>, path: &str, e: &Entry) -> Result<(), ImageError> {
    let io = |p: &str| ImageError::io(p.to_owned());
    match e {
        Entry::Dir { mode, uid, gid } => {
            let mut h = header(tar::EntryType::Directory, *mode, *uid, *gid, 0);
            b.append_data(&mut h, format!("{path}/"), std::io::empty())
                .map_err(io(path))
        }
        Entry::File { mode, uid, gid, data } => {
            let mut h = header(tar::EntryType::Regular, *mode, *uid, *gid, data.len() as u64);
            b.append_data(&mut h, path, data.as_slice()).map_err(io(path))
        }
        Entry::Symlink { target } => {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
            b.append_link(&mut h, path, target).map_err(io(path))
        }
        Entry::Hardlink { target } => {
            let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0);
            b.append_link(&mut h, path, target).map_err(io(path))
        }
    }
}

/// Writes through to `inner` while hashing what passes (the uncompressed tar).
struct Tee<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let mut t = Tree::new();
        t.file("usr/local/bin/tool", 0o755, b"#!/bin/true\n".to_vec());
        t.symlink("bin", "usr/bin");
        t.file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/false\n".to_vec());
        t
    }

    #[test]
    fn same_tree_same_digest_and_parents_present() {
        let a = tree().layer().unwrap();
        let b = tree().layer().unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.bytes, b.bytes);
        assert_ne!(a.digest, a.diff_id);
        let mut names = Vec::new();
        let gz = flate2::read::GzDecoder::new(a.bytes.as_slice());
        for e in tar::Archive::new(gz).entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), MTIME);
            names.push(e.path().unwrap().display().to_string());
        }
        assert_eq!(
            names,
            ["bin", "etc/", "etc/passwd", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/tool"]
        );
        let mut t = tree();
        t.file("etc/group", 0o644, b"root:x:0:\n".to_vec());
        assert_ne!(t.layer().unwrap().digest, a.digest);
    }
}
