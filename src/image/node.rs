//! The node image recipe (`images/node/recipe.yaml` and the files beside it):
//! the base image and flavor of the builder server, Debian packages, files,
//! sysctls, users, units to enable and scripts, turned into one provisioning
//! script run over SSH. Its digest covers the recipe and every file of the
//! folder, so any change to what the image is made of plans a rebuild, and
//! nothing else does.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ImageError;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeRecipe {
    /// Glance image (name or ID) the builder boots from.
    pub base: String,
    /// Flavor of the builder server.
    pub flavor: String,
    /// Login user of the base image.
    #[serde(default = "default_user")]
    pub ssh_user: String,
    /// Debian packages to install.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Where packages come from: `builder` (its apt sources, as Packer does)
    /// or `host` (downloaded here, uploaded: for clouds without a mirror).
    #[serde(default)]
    pub packages_from: PackagesFrom,
    /// Files to place: absolute path → content (or `@file` under the recipe folder).
    #[serde(default)]
    pub files: BTreeMap<String, FileSpec>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub users: Vec<NodeUser>,
    /// systemd units to enable.
    #[serde(default)]
    pub units: Vec<String>,
    /// Scripts under the recipe folder, run as root in order.
    #[serde(default)]
    pub scripts: Vec<String>,
}

fn default_user() -> String {
    "debian".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PackagesFrom {
    #[default]
    Builder,
    Host,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The content, or `@name` for a file of the recipe folder.
    pub content: String,
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "0644".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeUser {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub system: bool,
}

/// A recipe with its folder's files, read once.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub recipe: NodeRecipe,
    /// Every file of the folder (relative path → bytes), the recipe included.
    pub files: BTreeMap<String, Vec<u8>>,
    /// sha256 over the files' paths and contents.
    pub digest: String,
}

impl Loaded {
    /// Read recipe folder `dir` (a checkout's, else the built-in one) and check its recipe.
    pub fn load(dir: &str) -> Result<Self, ImageError> {
        Self::from_files(dir, super::recipe_files(dir)?)
    }

    pub fn from_files(dir: &str, files: BTreeMap<String, Vec<u8>>) -> Result<Self, ImageError> {
        let name = format!("{dir}/recipe.yaml");
        let text = files
            .get("recipe.yaml")
            .ok_or_else(|| ImageError::recipe(&name, "(file)", "missing", "a node image folder holds recipe.yaml"))?;
        let text = String::from_utf8_lossy(text);
        let recipe: NodeRecipe = serde_saphyr::from_str(&text).map_err(|e| {
            ImageError::recipe(&name, "(document)", e.to_string(), "fields: base, flavor, ssh_user, packages, packages_from, files, sysctls, users, units, scripts")
        })?;
        for (path, f) in &recipe.files {
            if !path.starts_with('/') {
                return Err(ImageError::recipe(&name, &format!("files.{path}"), "not an absolute path", "e.g. /etc/motd"));
            }
            if let Some(src) = f.content.strip_prefix('@')
                && !files.contains_key(src)
            {
                return Err(ImageError::recipe(&name, &format!("files.{path}.content"), format!("`{src}` is not a file of {dir}"), "put the file beside recipe.yaml"));
            }
            if u32::from_str_radix(&f.mode, 8).is_err() {
                return Err(ImageError::recipe(&name, &format!("files.{path}.mode"), format!("`{}` is not an octal mode", f.mode), "e.g. \"0644\""));
            }
        }
        for (i, s) in recipe.scripts.iter().enumerate() {
            if !files.contains_key(s) {
                return Err(ImageError::recipe(&name, &format!("scripts[{i}]"), format!("`{s}` is not a file of {dir}"), "put the script beside recipe.yaml"));
            }
        }
        let mut h = Vec::new();
        for (p, b) in &files {
            h.extend(format!("{p}\0{}\0", b.len()).as_bytes());
            h.extend(b);
        }
        Ok(Self {
            digest: crate::core::digest::sha256(&h),
            recipe,
            files,
        })
    }

    /// The short form of the digest used in image names.
    pub fn short(&self) -> &str {
        let hex = self.digest.trim_start_matches("sha256:");
        &hex[..hex.len().min(12)]
    }

    /// The root script that provisions the builder. Uploaded files it refers
    /// to sit under `staging` on the builder. Ends by generalising the
    /// machine (cloud-init state, machine id, SSH host keys, apt lists), as
    /// a cloud image must be before it is captured.
    pub fn script(&self, staging: &str) -> String {
        let r = &self.recipe;
        let q = crate::ssh::quote::q;
        let mut s = String::from("set -eu\nexport DEBIAN_FRONTEND=noninteractive\n");
        if !r.packages.is_empty() {
            match r.packages_from {
                PackagesFrom::Builder => {
                    s += "apt-get update -q\n";
                    s += &format!(
                        "apt-get install -y -q --no-install-recommends {}\n",
                        r.packages.iter().map(|p| q(p)).collect::<Vec<_>>().join(" ")
                    );
                }
                PackagesFrom::Host => {
                    s += &format!("apt-get install -y -q --no-install-recommends {staging}/debs/*.deb\n");
                }
            }
        }
        for u in &r.users {
            let sys = if u.system { " --system" } else { "" };
            s += &format!("id -u {0} >/dev/null 2>&1 || useradd{sys} --create-home --shell /bin/bash {0}\n", q(&u.name));
            for g in &u.groups {
                s += &format!("getent group {0} >/dev/null || groupadd{sys} {0}\nusermod -aG {0} {1}\n", q(g), q(&u.name));
            }
        }
        for (i, (path, f)) in r.files.iter().enumerate() {
            s += &format!(
                "install -D -m {} {staging}/files/{i} {}\n",
                q(&f.mode),
                q(path)
            );
        }
        if !r.sysctls.is_empty() {
            s += "cat >/etc/sysctl.d/90-provisioner-node.conf <<'SYSCTL'\n";
            for (k, v) in &r.sysctls {
                s += &format!("{k} = {v}\n");
            }
            s += "SYSCTL\n";
        }
        for u in &r.units {
            s += &format!("systemctl enable {}\n", q(u));
        }
        for sc in &r.scripts {
            s += &format!("sh {staging}/{}\n", q(sc));
        }
        s += "apt-get clean\nrm -rf /var/lib/apt/lists/*\n";
        s += "if command -v cloud-init >/dev/null; then cloud-init clean --logs; fi\n";
        s += "rm -f /etc/ssh/ssh_host_*\ntruncate -s 0 /etc/machine-id\n";
        s += &format!("rm -rf {staging}\nsync\n");
        s
    }

    /// Files to upload under the staging folder: `files/<i>` in the order of
    /// the recipe's files, and the scripts by their names.
    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, f) in self.recipe.files.values().enumerate() {
            let bytes = match f.content.strip_prefix('@') {
                Some(src) => self.files.get(src).cloned().unwrap_or_default(),
                None => f.content.clone().into_bytes(),
            };
            out.push((format!("files/{i}"), bytes));
        }
        for sc in &self.recipe.scripts {
            out.push((sc.clone(), self.files.get(sc).cloned().unwrap_or_default()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(recipe: &str) -> BTreeMap<String, Vec<u8>> {
        let mut f = BTreeMap::new();
        f.insert("recipe.yaml".to_owned(), recipe.as_bytes().to_vec());
        f.insert("motd".to_owned(), b"hello\n".to_vec());
        f.insert("setup.sh".to_owned(), b"echo hi\n".to_vec());
        f
    }

    const R: &str = "base: debian-12\nflavor: m1.small\npackages: [tree]\nfiles:\n  /etc/motd: {content: '@motd'}\nsysctls: {net.ipv4.ip_forward: '1'}\nusers: [{name: ops, groups: [adm]}]\nunits: [ssh.service]\nscripts: [setup.sh]\n";

    #[test]
    fn digest_follows_every_file_and_script_says_each_step() {
        let a = Loaded::from_files("images/node", files(R)).unwrap();
        let mut f = files(R);
        f.insert("motd".into(), b"changed\n".to_vec());
        assert_ne!(a.digest, Loaded::from_files("images/node", f).unwrap().digest);
        assert_eq!(a.digest, Loaded::from_files("images/node", files(R)).unwrap().digest);
        let s = a.script("/tmp/st");
        for want in ["apt-get install -y -q --no-install-recommends tree", "install -D -m 0644 /tmp/st/files/0 /etc/motd", "net.ipv4.ip_forward = 1", "usermod -aG adm ops", "systemctl enable ssh.service", "sh /tmp/st/setup.sh", "rm -f /etc/ssh/ssh_host_*"] {
            assert!(s.contains(want), "{want} missing in\n{s}");
        }
        assert_eq!(a.uploads()[0], ("files/0".to_owned(), b"hello\n".to_vec()));
    }

    #[test]
    fn bad_recipes_name_the_field() {
        let e = Loaded::from_files("images/node", files(&R.replace("'@motd'", "'@nope'"))).unwrap_err();
        assert!(e.to_string().contains("files./etc/motd.content"), "{e}");
        let e = Loaded::from_files("images/node", files(&R.replace("[setup.sh]", "[gone.sh]"))).unwrap_err();
        assert!(e.to_string().contains("scripts[0]"), "{e}");
        let e = Loaded::from_files("images/node", files(&format!("{R}colour: red\n"))).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
