//! Container images the environment builds itself (`workload.image: {build:
//! images/geozarr}`), against the lab's real OCI registry (Debian's
//! docker-registry: TLS with the lab CA, htpasswd) and the kube lab
//! (tests/lab/up.sh eo registry kube):
//!
//! - `image push` uploads every blob once; a rerun plans and uploads nothing
//!   (the registry's access log); the digest is the same when computed again
//!   from an empty cache (Debian packages downloaded again, layers rebuilt);
//! - a changed binary gives a new digest and uploads only its layer and the
//!   config;
//! - skopeo, an independent client, reads the pushed manifest, config and
//!   layers (entrypoint, user, OCI media types, the binary itself);
//! - a wrong password fails naming the registry and the user, nothing else;
//! - `deploy` pushes the image, the charts run it by digest with a generated
//!   pull secret, and a Job pulling it from the registry runs the
//!   WorkflowTemplate's own convert and register steps on a synthetic product:
//!   the STAC API finds the item, TiTiler renders it.
//!
//! The image cache is shared by the tests (target/test-state/image-cache) so
//! reruns are fast; the reproducibility test uses an empty one of its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use common::lab_var;
use common::output_text as text;
use serde_json::{Value, json};
use sha2::Digest as _;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, test only
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One at a time: the tests count requests in the registry's access log.
static SERIAL: Mutex<()> = Mutex::new(());

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shared_cache() -> PathBuf {
    repo_root().join("target/test-state/image-cache")
}

/// Prints how long the test took, passed or not.
struct Timed(&'static str, Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        eprintln!("{}: {:.1} s", self.0, self.1.elapsed().as_secs_f64());
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

// ---------------------------------------------------------------- the lab registry

struct Registry {
    /// host:port, as image references name it
    host: String,
    url: String,
    user: String,
    password_file: String,
    ca: String,
    cert_dir: String,
    log: PathBuf,
}

impl Registry {
    fn from_lab() -> Self {
        Registry {
            host: lab_var("LAB_REGISTRY", "registry"),
            url: lab_var("LAB_REGISTRY_URL", "registry"),
            user: lab_var("LAB_REGISTRY_USER", "registry"),
            password_file: lab_var("LAB_REGISTRY_PASSWORD_FILE", "registry"),
            ca: lab_var("LAB_REGISTRY_CA", "registry"),
            cert_dir: lab_var("LAB_REGISTRY_CERT_DIR", "registry"),
            log: PathBuf::from(lab_var("LAB_REGISTRY_LOG", "registry")),
        }
    }

    fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The environment's `registry:` section, the password read from `password_file`.
    fn yaml(&self, password_file: &str) -> String {
        format!(
            "registry:\n  url: {}\n  username: {}\n  password: {{file: {password_file}}}\n  ca_file: {}\n",
            self.url, self.user, self.ca
        )
    }

    /// Where the access log ends now.
    fn mark(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// The access-log requests written since `mark`.
    fn requests_since(&self, mark: u64) -> Vec<Access> {
        // The registry writes a request's line once it has answered it.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let bytes = std::fs::read(&self.log).unwrap();
        let from = (mark as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..])
            .lines()
            .filter_map(Access::parse)
            .collect()
    }

    /// skopeo with the lab CA and credentials.
    fn skopeo(&self, args: &[&str]) -> Output {
        let creds = format!("{}:{}", self.user, self.password());
        let (verb, rest) = args.split_first().unwrap();
        Command::new("skopeo")
            .arg(verb)
            .args(["--cert-dir", &self.cert_dir, "--creds", &creds])
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .expect("skopeo (installed by tests/lab/up.sh registry)")
    }

    /// The raw manifest of `repo@digest`, read by skopeo; its bytes hash to `digest`.
    fn manifest(&self, repo: &str, digest: &str) -> Value {
        let o = self.skopeo(&[
            "inspect",
            "--raw",
            &format!("docker://{}/{repo}@{digest}", self.host),
        ]);
        assert!(o.status.success(), "skopeo inspect --raw: {}", text(&o));
        assert_eq!(
            sha256(&o.stdout),
            digest,
            "the manifest the registry serves hashes to its digest"
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

/// One line of the registry's access log (Apache combined format).
#[derive(Debug)]
struct Access {
    client: String,
    method: String,
    path: String,
    status: u16,
}

impl Access {
    fn parse(line: &str) -> Option<Self> {
        let client = line.split_whitespace().next()?.to_owned();
        let (_, rest) = line.split_once('"')?;
        let (request, after) = rest.split_once('"')?;
        let mut r = request.split(' ');
        let method = r.next()?.to_owned();
        let path = r.next()?.to_owned();
        if !matches!(
            method.as_str(),
            "GET" | "HEAD" | "POST" | "PATCH" | "PUT" | "DELETE"
        ) || !path.starts_with("/v2/")
        {
            return None;
        }
        let status = after.split_whitespace().next()?.parse().ok()?;
        Some(Access {
            client,
            method,
            path,
            status,
        })
    }

    /// A request of a blob upload (POST, PATCH…, PUT) into `repo`.
    fn is_upload(&self, repo: &str) -> bool {
        matches!(self.method.as_str(), "POST" | "PATCH" | "PUT")
            && self.path.starts_with(&format!("/v2/{repo}/blobs/uploads/"))
    }

    /// The digest a finishing PUT names (`?…&digest=sha256%3A…`).
    fn put_digest(&self) -> Option<String> {
        if self.method != "PUT" {
            return None;
        }
        let (_, q) = self.path.split_once('?')?;
        q.split('&')
            .find_map(|kv| kv.strip_prefix("digest="))
            .map(|d| d.replace("%3A", ":").replace("%3a", ":"))
    }
}

struct Uploads {
    requests: usize,
    /// POSTs: one per blob upload started
    started: usize,
    /// digests of the uploads the registry completed (PUT …?digest=, 201)
    completed: BTreeSet<String>,
}

fn uploads(requests: &[Access], repo: &str) -> Uploads {
    let ups: Vec<&Access> = requests.iter().filter(|a| a.is_upload(repo)).collect();
    Uploads {
        requests: ups.len(),
        started: ups.iter().filter(|a| a.method == "POST").count(),
        completed: ups
            .iter()
            .filter(|a| a.status == 201)
            .filter_map(|a| a.put_digest())
            .collect(),
    }
}

/// Config and layer digests of a manifest.
fn blob_digests(manifest: &Value) -> Vec<String> {
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------- environments

/// An environment of its own (extends environments/lab.yaml) with a state dir,
/// run from `cwd` (where recipe folders and relative binaries are resolved).
struct Env {
    dir: PathBuf,
    name: String,
    cwd: PathBuf,
    cache: PathBuf,
    state: PathBuf,
}

impl Env {
    fn new(tag: &str, body: &str) -> Self {
        let dir = repo_root()
            .join("target/test-state")
            .join(common::unique(tag));
        std::fs::create_dir_all(dir.join("envs")).unwrap();
        let e = Env {
            name: tag.to_owned(),
            cwd: repo_root().to_owned(),
            cache: shared_cache(),
            state: dir.join("state"),
            dir,
        };
        e.write(body);
        e
    }

    fn write(&self, body: &str) {
        let text = format!(
            "extends: {}/environments/lab.yaml\n{body}",
            repo_root().display()
        );
        std::fs::write(self.dir.join(format!("envs/{}.yaml", self.name)), text).unwrap();
    }

    /// A project root of its own under the test's dir, holding a copy of
    /// images/geozarr with `edit` applied to its image.yaml.
    fn project(&mut self, edit: impl FnOnce(String) -> String) -> PathBuf {
        let root = self.dir.join("project");
        std::fs::create_dir_all(root.join("images/geozarr")).unwrap();
        let recipe =
            std::fs::read_to_string(repo_root().join("images/geozarr/image.yaml")).unwrap();
        std::fs::write(root.join("images/geozarr/image.yaml"), edit(recipe)).unwrap();
        self.cwd = root.clone();
        root
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        c.current_dir(&self.cwd)
            .arg("--environments")
            .arg(self.dir.join("envs"))
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env("PROVISIONER_STATE_KEY", KEY)
            .env("PROVISIONER_CACHE", &self.cache)
            .env_remove("RUST_LOG")
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null());
        if self.cwd != repo_root() {
            // charts and stacks from the checkout
            c.arg("--charts").arg(repo_root());
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `image push ENV --auto-approve --output json`, timed.
    fn push(&self) -> (Output, f64) {
        let t0 = Instant::now();
        let o = self.run(&[
            "image",
            "push",
            &self.name,
            "--auto-approve",
            "--output",
            "json",
        ]);
        (o, t0.elapsed().as_secs_f64())
    }

    fn state_file(&self) -> PathBuf {
        self.state.join(format!("{}.state.json", self.name))
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.state_file()).unwrap()).unwrap()
    }

    /// The recorded image (status ready), its digest well formed.
    fn image(&self) -> Value {
        let st = self.state();
        let r = st["resources"]["container_image.geozarr"].clone();
        assert_eq!(r["status"], "ready", "{st}");
        let d = r["attrs"]["digest"].as_str().unwrap();
        assert!(
            d.len() == 71
                && d.starts_with("sha256:")
                && d[7..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{d}"
        );
        r
    }
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The planned change of `container_image.geozarr` and its `digest` field.
fn planned_image(plan: &Value) -> (Value, String) {
    let c = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "container_image.geozarr")
        .unwrap_or_else(|| panic!("no container_image.geozarr in the plan: {plan}"))
        .clone();
    let d = c["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "digest")
        .unwrap_or_else(|| panic!("no digest field: {c}"))["after"]
        .as_str()
        .unwrap()
        .to_owned();
    (c, d)
}

fn image_yaml() -> &'static str {
    "workload:\n  image: {build: images/geozarr}\n"
}

// ---------------------------------------------------------------- 1. push, no-op, reproducible

#[test]
#[ignore = "lab: needs tests/lab/up.sh eo registry kube"]
fn push_uploads_each_blob_once_and_the_digest_is_reproducible_from_scratch() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _timed = Timed(
        "push_uploads_each_blob_once_and_the_digest_is_reproducible_from_scratch",
        Instant::now(),
    );
    let reg = Registry::from_lab();
    let mut env = Env::new(
        "lab-img-push",
        &format!("{}{}", reg.yaml(&reg.password_file), image_yaml()),
    );
    // A repository new to the registry: every blob is really uploaded once.
    let repo = format!("lab-tests/{}", common::unique("geozarr"));
    env.project(|r| r.replace("repository: eo/geozarr", &format!("repository: {repo}")));

    let mark = reg.mark();
    let (o, secs) = env.push();
    assert!(o.status.success(), "image push: {}", text(&o));
    let out = json_out(&o);
    assert_eq!(out["summary"]["create"], 1, "{out}");
    let img = env.image();
    let digest = img["attrs"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(img["attrs"]["repository"], repo.as_str());
    assert_eq!(img["attrs"]["registry"], reg.host.as_str());
    assert_eq!(img["attrs"]["tag"], "latest");
    assert_eq!(img["id"], format!("{}/{repo}@{digest}", reg.host), "{img}");
    assert_eq!(img["outputs"]["uploaded_blobs"], 4, "{img}");
    assert_eq!(img["outputs"]["skipped_blobs"], 0, "{img}");
    let manifest = reg.manifest(&repo, &digest);
    let blobs = blob_digests(&manifest);
    let up = uploads(&reg.requests_since(mark), &repo);
    assert_eq!(up.started, 4, "one upload per blob (config + 3 layers)");
    assert_eq!(
        up.completed,
        blobs.iter().cloned().collect::<BTreeSet<_>>(),
        "the registry completed exactly the manifest's blobs"
    );
    // the tag points at the same manifest
    let o = reg.skopeo(&["inspect", &format!("docker://{}/{repo}:latest", reg.host)]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json_out(&o)["Digest"], digest.as_str());
    let sizes: Vec<u64> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect();
    eprintln!(
        "first push: {secs:.1} s, {digest}, {} upload requests for 4 blobs, layers {sizes:?} bytes",
        up.requests
    );

    // A rerun: nothing planned, nothing uploaded.
    let mark = reg.mark();
    let (o, secs) = env.push();
    assert!(o.status.success(), "second image push: {}", text(&o));
    let out = json_out(&o);
    assert_eq!(
        (
            out["summary"]["create"].as_u64(),
            out["summary"]["update"].as_u64()
        ),
        (Some(0), Some(0)),
        "{out}"
    );
    let reqs = reg.requests_since(mark);
    assert_eq!(
        uploads(&reqs, &repo).requests,
        0,
        "a no-op push uploads nothing"
    );
    let writes: Vec<&Access> = reqs
        .iter()
        .filter(|a| {
            a.path.starts_with(&format!("/v2/{repo}/")) && a.method != "GET" && a.method != "HEAD"
        })
        .collect();
    assert!(writes.is_empty(), "a no-op push writes nothing: {writes:?}");
    assert_eq!(env.image()["attrs"]["digest"], digest.as_str());
    let plan = env.run(&["plan", &env.name, "--target", "container_image"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "nothing to change: {}",
        text(&plan)
    );
    eprintln!("second push: {secs:.1} s, 0 upload requests");

    // From scratch: an empty cache (packages downloaded again, every layer
    // rebuilt) and no state plan the very same digest.
    let fresh = Env {
        dir: env.dir.clone(),
        name: env.name.clone(),
        cwd: env.cwd.clone(),
        cache: env.dir.join("fresh-cache"),
        state: env.dir.join("fresh-state"),
    };
    let t0 = Instant::now();
    let o = fresh.run(&[
        "plan",
        &fresh.name,
        "--target",
        "container_image",
        "--output",
        "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a create is planned: {}",
        text(&o)
    );
    let plan = json_out(&o);
    assert_eq!(plan["environment"], fresh.name.as_str());
    let (change, again) = planned_image(&plan);
    assert_eq!(change["action"], "create", "{change}");
    assert_eq!(change["layer"], "images", "{change}");
    assert_eq!(again, digest, "the same digest from an empty cache");
    let debs = std::fs::read_dir(fresh.cache.join("debs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "deb")
        })
        .count();
    assert_eq!(
        debs,
        img["attrs"]["packages"].as_array().unwrap().len(),
        "every package of the recipe was downloaded again"
    );
    for b in &blobs {
        let p = fresh.cache.join("blobs/sha256").join(&b[7..]);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(&sha256(&bytes), b, "{} rebuilt byte for byte", p.display());
    }
    eprintln!(
        "from an empty cache: {:.1} s, {debs} packages, the same {digest}",
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&fresh.cache);
}

// ---------------------------------------------------------------- 2. a changed binary

#[test]
#[ignore = "lab: needs tests/lab/up.sh eo registry kube"]
fn a_changed_binary_uploads_only_its_layer_and_the_config() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _timed = Timed(
        "a_changed_binary_uploads_only_its_layer_and_the_config",
        Instant::now(),
    );
    let reg = Registry::from_lab();
    let mut env = Env::new(
        "lab-img-change",
        &format!("{}{}", reg.yaml(&reg.password_file), image_yaml()),
    );
    let repo = format!("lab-tests/{}", common::unique("geozarr-change"));
    // `binary.from`: a copy of this binary, relative to the project root (the current dir)
    let root = env.project(|r| {
        r.replace("repository: eo/geozarr", &format!("repository: {repo}"))
            .replace("from: self", "from: bin/provisioner")
    });
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let bin = root.join("bin/provisioner");
    std::fs::copy(env!("CARGO_BIN_EXE_provisioner"), &bin).unwrap();

    let (o, _) = env.push();
    assert!(o.status.success(), "image push: {}", text(&o));
    let first = env.image();
    let d1 = first["attrs"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(first["outputs"]["uploaded_blobs"], 4, "{first}");
    let m1 = reg.manifest(&repo, &d1);

    // Bytes appended to the binary (unique to this run: a layer no registry has).
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&bin).unwrap();
        writeln!(f, "\nlab_images: changed binary {}", common::unique("bin")).unwrap();
    }
    let o = env.run(&[
        "plan",
        &env.name,
        "--target",
        "container_image",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let (change, d2) = planned_image(&json_out(&o));
    assert_eq!(
        change["action"], "update",
        "a new digest is pushed over the old: {change}"
    );
    let before = change["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "digest")
        .unwrap()["before"]
        .clone();
    assert_eq!(before, d1.as_str(), "{change}");
    assert_ne!(d2, d1);

    let mark = reg.mark();
    let (o, secs) = env.push();
    assert!(
        o.status.success(),
        "image push of the changed binary: {}",
        text(&o)
    );
    let second = env.image();
    assert_eq!(
        second["attrs"]["digest"],
        d2.as_str(),
        "the planned digest was pushed"
    );
    assert_eq!(second["outputs"]["uploaded_blobs"], 2, "{second}");
    assert_eq!(second["outputs"]["skipped_blobs"], 2, "{second}");
    let m2 = reg.manifest(&repo, &d2);
    let (l1, l2) = (
        m1["layers"].as_array().unwrap(),
        m2["layers"].as_array().unwrap(),
    );
    assert_eq!(l2.len(), 3);
    assert_eq!(
        l2[0], l1[0],
        "the base layer (Debian packages) is unchanged"
    );
    assert_eq!(l2[1], l1[1], "the user layer is unchanged");
    assert_ne!(l2[2]["digest"], l1[2]["digest"], "the binary layer changed");
    assert_ne!(
        m2["config"]["digest"], m1["config"]["digest"],
        "the config (diff_ids) changed"
    );
    let up = uploads(&reg.requests_since(mark), &repo);
    let want: BTreeSet<String> = [&m2["config"]["digest"], &l2[2]["digest"]]
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(up.started, 2, "exactly 2 blob uploads");
    assert_eq!(
        up.completed, want,
        "the binary layer and the config, nothing else"
    );
    eprintln!(
        "changed binary: {d1} -> {d2} in {secs:.1} s; uploaded the binary layer ({} bytes) and the config ({} bytes) in {} requests; base ({} bytes) and user layers skipped",
        l2[2]["size"], m2["config"]["size"], up.requests, l2[0]["size"]
    );
}

// ---------------------------------------------------------------- 3. skopeo reads it

/// path → (mode, bytes) of the regular files and symlink targets of a tar+gzip layer.
fn layer_files(bytes: &[u8]) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap();
        let mut data = Vec::new();
        match e.header().entry_type() {
            tar::EntryType::Regular => {
                e.read_to_end(&mut data).unwrap();
            }
            tar::EntryType::Symlink => {
                data = e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .display()
                    .to_string()
                    .into_bytes();
            }
            _ => {}
        }
        out.insert(path.trim_start_matches("./").to_owned(), (mode, data));
    }
    out
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh eo registry kube"]
fn skopeo_reads_the_pushed_manifest_config_and_layers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _timed = Timed(
        "skopeo_reads_the_pushed_manifest_config_and_layers",
        Instant::now(),
    );
    let reg = Registry::from_lab();
    // The shipped recipe, from the checkout, as `deploy` pushes it.
    let env = Env::new(
        "lab-img-inspect",
        &format!("{}{}", reg.yaml(&reg.password_file), image_yaml()),
    );
    let (o, secs) = env.push();
    assert!(o.status.success(), "image push: {}", text(&o));
    let img = env.image();
    let digest = img["attrs"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(img["attrs"]["repository"], "eo/geozarr");
    let reference = format!("docker://{}/eo/geozarr@{digest}", reg.host);
    eprintln!("push: {secs:.1} s, {reference}");

    let o = reg.skopeo(&["inspect", &reference]);
    assert!(o.status.success(), "skopeo inspect: {}", text(&o));
    let info = json_out(&o);
    assert_eq!(info["Digest"], digest.as_str(), "{info}");
    assert_eq!(info["Os"], "linux", "{info}");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    assert_eq!(info["Architecture"], arch, "{info}");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3, "{info}");
    assert_eq!(
        info["Labels"]["org.opencontainers.image.title"], "geozarr converter",
        "{info}"
    );

    let o = reg.skopeo(&["inspect", "--config", &reference]);
    assert!(o.status.success(), "skopeo inspect --config: {}", text(&o));
    let config = json_out(&o);
    let c = &config["config"];
    assert_eq!(
        c["Entrypoint"],
        json!(["/usr/local/bin/provisioner"]),
        "{config}"
    );
    assert_eq!(c["User"], "65532:65532", "{config}");
    assert_eq!(c["WorkingDir"], "/tmp", "{config}");
    let envs: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        envs.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{envs:?}"
    );
    assert!(envs.contains(&"HOME=/home/geozarr"), "{envs:?}");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        3,
        "{config}"
    );

    let manifest = reg.manifest("eo/geozarr", &digest); // skopeo inspect --raw
    assert_eq!(manifest["schemaVersion"], 2, "{manifest}");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG, "{manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{manifest}");
    for l in layers {
        assert_eq!(l["mediaType"], OCI_LAYER, "{manifest}");
    }

    // The blobs themselves, copied out by skopeo: each hashes to its digest,
    // and the layers hold what the recipe says.
    let layout = env.dir.join("oci");
    let creds = format!("{}:{}", reg.user, reg.password());
    let o = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-cert-dir",
            &reg.cert_dir,
            "--src-creds",
            &creds,
        ])
        .arg(&reference)
        .arg(format!("oci:{}:x", layout.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo copy: {}", text(&o));
    let blob = |d: &Value| {
        let d = d.as_str().unwrap();
        let bytes = std::fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap();
        assert_eq!(sha256(&bytes), d);
        bytes
    };
    let base = layer_files(&blob(&layers[0]["digest"]));
    let user = layer_files(&blob(&layers[1]["digest"]));
    let top = layer_files(&blob(&layers[2]["digest"]));
    let (mode, exe) = top.get("usr/local/bin/provisioner").unwrap_or_else(|| {
        panic!(
            "no binary in the top layer: {:?}",
            top.keys().collect::<Vec<_>>()
        )
    });
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        sha256(exe),
        sha256(&std::fs::read(env!("CARGO_BIN_EXE_provisioner")).unwrap()),
        "the image runs this very binary"
    );
    let passwd = String::from_utf8_lossy(&user["etc/passwd"].1).into_owned();
    assert!(passwd.contains("geozarr:x:65532:65532:"), "{passwd}");
    assert!(
        base.keys()
            .any(|p| p.starts_with("usr/lib/") && p.ends_with("/libc.so.6")),
        "libc in the base layer"
    );
    assert!(
        base.get("etc/ssl/certs/ca-certificates.crt")
            .is_some_and(|(_, b)| b.starts_with(b"-----BEGIN CERTIFICATE-----")),
        "the CA bundle in the base layer"
    );
    assert!(
        !base.keys().any(|p| p.starts_with("usr/share/doc/")),
        "docs left out"
    );

    // Without credentials the registry refuses.
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--no-creds",
            "--cert-dir",
            &reg.cert_dir,
            &reference,
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "read without credentials: {}",
        text(&o)
    );
    eprintln!(
        "skopeo: {} files in the base layer, {} in the user layer, {} in the top layer",
        base.len(),
        user.len(),
        top.len()
    );
}

// ---------------------------------------------------------------- 4. a wrong password

#[test]
#[ignore = "lab: needs tests/lab/up.sh eo registry kube"]
fn a_wrong_password_fails_naming_the_registry_and_the_user_and_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _timed = Timed(
        "a_wrong_password_fails_naming_the_registry_and_the_user_and_changes_nothing",
        Instant::now(),
    );
    let reg = Registry::from_lab();
    let env = Env::new(
        "lab-img-badpw",
        &format!("{}{}", reg.yaml(&reg.password_file), image_yaml()),
    );
    let (o, _) = env.push();
    assert!(
        o.status.success(),
        "image push with the right password: {}",
        text(&o)
    );
    let before = std::fs::read(env.state_file()).unwrap();

    let wrong = format!("wrong-{}", common::unique("pw"));
    let wrong_file = env.dir.join("wrong-password");
    std::fs::write(&wrong_file, format!("{wrong}\n")).unwrap();
    env.write(&format!(
        "{}{}",
        reg.yaml(wrong_file.to_str().unwrap()),
        image_yaml()
    ));

    let check = |o: &Output, what: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what}: {}", text(o));
        assert_ne!(
            o.status.code(),
            Some(3),
            "{what}: refused credentials are not retried later: {}",
            text(o)
        );
        assert!(
            err.contains(&reg.host),
            "{what}: the registry is named: {err}"
        );
        assert!(
            err.contains(&format!("`{}`", reg.user)),
            "{what}: the user is named: {err}"
        );
        for noise in [
            "<html",
            "<!DOCTYPE",
            "{\"errors\"",
            "UNAUTHORIZED",
            "WWW-Authenticate",
        ] {
            assert!(
                !err.contains(noise),
                "{what}: no HTTP body noise ({noise}): {err}"
            );
        }
        assert!(
            !err.contains(&wrong),
            "{what}: the password is never printed"
        );
        assert!(!err.contains(&reg.password()), "{what}: nor the right one");
        eprintln!("{what}: exit {:?}: {}", o.status.code(), err.trim());
    };
    // With the image recorded: refreshing it is refused; the state is untouched.
    let (o, _) = env.push();
    check(&o, "recorded image");
    assert_eq!(
        std::fs::read(env.state_file()).unwrap(),
        before,
        "state unchanged"
    );
    // Nothing recorded yet: the push is refused before anything is uploaded.
    let fresh = Env {
        dir: env.dir.clone(),
        name: env.name.clone(),
        cwd: env.cwd.clone(),
        cache: env.cache.clone(),
        state: env.dir.join("fresh-state"),
    };
    let mark = reg.mark();
    let (o, _) = fresh.push();
    check(&o, "new image");
    let recorded = std::fs::read(fresh.state_file())
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|s| s["resources"].as_object().map_or(0, |m| m.len()));
    assert!(
        matches!(recorded, None | Some(0)),
        "nothing recorded: {recorded:?}"
    );
    let up = uploads(&reg.requests_since(mark), "eo/geozarr");
    assert_eq!(up.requests, 0, "nothing uploaded");
}

// ---------------------------------------------------------------- 5. deploy + a Job pulling it

fn kubectl(args: &[&str]) -> Output {
    let bin = std::env::var("LAB_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn kget(args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let o = kubectl(&a);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}


/// The WorkflowTemplate's container of step `name`.
fn step_container(wt: &Value, name: &str) -> Value {
    wt["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no template {name}"))["container"]
        .clone()
}

/// Argo's `{{workflow.parameters.x}}` / `{{inputs.parameters.x}}` replaced by `params`.
fn substitute(args: &Value, params: &BTreeMap<String, String>) -> Vec<String> {
    args.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut s = a.as_str().unwrap().to_owned();
            for (k, v) in params {
                s = s
                    .replace(&format!("{{{{workflow.parameters.{k}}}}}"), v)
                    .replace(&format!("{{{{inputs.parameters.{k}}}}}"), v);
            }
            assert!(!s.contains("{{"), "an Argo parameter left in {s}");
            s
        })
        .collect()
}

/// The environment and what it made; destroyed on drop (LAB_IMAGES_KEEP=1 keeps it).
struct Deployed(Env);

impl Drop for Deployed {
    fn drop(&mut self) {
        if std::env::var_os("LAB_IMAGES_KEEP").is_some() || !self.0.state_file().exists() {
            return;
        }
        let o = self
            .0
            .run(&["destroy", &self.0.name, "--auto-approve", "--refresh=false"]);
        if !o.status.success() {
            eprintln!("cleanup: destroy failed: {}", text(&o));
        }
    }
}

#[test]
#[ignore = "lab: needs tests/lab/up.sh eo registry kube"]
fn deploy_runs_the_pushed_image_by_digest_and_a_job_converts_and_registers_with_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _timed = Timed(
        "deploy_runs_the_pushed_image_by_digest_and_a_job_converts_and_registers_with_it",
        Instant::now(),
    );
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let reg = Registry::from_lab();
    lab_var("KUBECONFIG", "kube");
    let s3 = lab_var("S3_ENDPOINT_URL", "s3");
    let stac = lab_var("STAC_API_URL", "eo");
    lab_var("TITILER_URL", "eo");
    // the host's S3, STAC API and TiTiler relayed on the kube gateway, for pods
    let kube_s3 = lab_var("LAB_KUBE_S3_URL", "kube");
    let kube_stac = lab_var("LAB_KUBE_STAC_URL", "kube");
    let kube_titiler = lab_var("LAB_KUBE_TITILER_URL", "kube");
    let node_ips = lab_var("LAB_KUBE_NODE_IPS", "kube");
    // The stack's namespaces are shared with the other data-platform tests: none may be
    // in use; one still terminating (an earlier run's destroy) is waited for.
    let t0 = Instant::now();
    for ns in ["geozarr", "argo", "stac", "spark"] {
        while let Some(n) = kget(&["namespace", ns]) {
            assert!(
                n["status"]["phase"] == "Terminating" && t0.elapsed().as_secs() < 180,
                "namespace {ns} is in use ({}, environment {}): another deploy of the data platform is on the kube lab",
                n["status"]["phase"],
                n["metadata"]["labels"]["provisioner.io/environment"]
            );
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }

    let bucket = common::unique("lab-images");
    let collection = common::unique("lab-images-s2");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3c = rt.block_on(async {
        let loc = provisioner::env::model::S3Location {
            bucket: bucket.clone(),
            endpoint: Some(s3.clone()),
            ..common::s3_servers_moto().1
        };
        common::client_with_bucket(&loc, &bucket).await
    });
    let body = format!(
        "{}stacks: [data-platform]
workload:
  image: {{build: images/geozarr}}
  s3:
    bucket: {bucket}
    endpoint: {kube_s3}
    access_key: {{env: AWS_ACCESS_KEY_ID}}
    secret_key: {{env: AWS_SECRET_ACCESS_KEY}}
  stac_api_url: {kube_stac}
  titiler_url: {kube_titiler}
  collections: [{collection}]
releases:
  geozarr-pipeline:
    defaults: {{rasterFlavor: xarray}}   # the lab's TiTiler is titiler.xarray
  argo-events-webhook:
    receiver: {{imagePullPolicy: Always}}   # pulled from the registry with the pull secret
",
        reg.yaml(&reg.password_file)
    );
    let env = Deployed(Env::new("lab-img-deploy", &body));
    let env = &env.0;

    // deploy: the image is pushed first, the charts run it by digest.
    let deploy_mark = reg.mark();
    let t0 = Instant::now();
    let o = env.run(&["deploy", &env.name, "--auto-approve", "--output", "json"]);
    assert!(o.status.success(), "deploy: {}", text(&o));
    eprintln!("deploy: {:.1} s", t0.elapsed().as_secs_f64());
    let out = json_out(&o);
    let report = &out["report"];
    assert!(
        [&report["created"], &report["adopted"]].iter().any(|l| l
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "container_image.geozarr"))),
        "deploy pushes the image: {out}"
    );
    // pushed before the release that runs it is applied
    let err = String::from_utf8_lossy(&o.stderr);
    let at = |what: &str| {
        err.find(what)
            .unwrap_or_else(|| panic!("no `{what}` in the log:\n{err}"))
    };
    assert!(
        at("address=container_image.geozarr") < at("creating address=release.geozarr-pipeline"),
        "the image is pushed first:\n{err}"
    );
    let img = env.image();
    let digest = img["attrs"]["digest"].as_str().unwrap().to_owned();
    let image = format!("{}/eo/geozarr@{digest}", reg.host);
    assert_eq!(img["outputs"]["reference"], image.as_str(), "{img}");
    reg.manifest("eo/geozarr", &digest); // in the registry

    for ns in ["geozarr", "argo"] {
        let s = kget(&["secret", "provisioner-registry", "-n", ns])
            .unwrap_or_else(|| panic!("no Secret provisioner-registry in {ns}"));
        assert_eq!(s["type"], "kubernetes.io/dockerconfigjson", "{ns}");
        let b64 = s["data"][".dockerconfigjson"].as_str().unwrap();
        use base64::Engine as _;
        let cfg: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        let auth = &cfg["auths"][reg.host.as_str()];
        let user_pass = auth["auth"]
            .as_str()
            .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .or_else(|| {
                Some(format!(
                    "{}:{}",
                    auth["username"].as_str()?,
                    auth["password"].as_str()?
                ))
            });
        assert!(
            user_pass == Some(format!("{}:{}", reg.user, reg.password())),
            "{ns}: the Secret holds the registry's credentials for {} (keys: {:?})",
            reg.host,
            cfg["auths"]
                .as_object()
                .map(|m| m.keys().collect::<Vec<_>>())
        );
    }
    let wt = kget(&["workflowtemplate", "geozarr-pipeline", "-n", "geozarr"])
        .expect("the WorkflowTemplate");
    assert_eq!(
        wt["spec"]["imagePullSecrets"],
        json!([{"name": "provisioner-registry"}]),
        "{wt}"
    );
    let convert = step_container(&wt, "convert");
    let register = step_container(&wt, "register");
    for c in [&convert, &register, &step_container(&wt, "tier")] {
        assert_eq!(
            c["image"],
            image.as_str(),
            "every step runs the pushed digest"
        );
    }
    let webhook = kget(&["deployment", "argo-events-webhook-receiver", "-n", "argo"])
        .expect("the webhook receiver");
    let pod = &webhook["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], image.as_str(), "{pod}");
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "provisioner-registry"}]),
        "{pod}"
    );

    // A synthetic product in the lab's S3, where pods reach it through the relay.
    let id = "S2A_MSIL2A_20251008T100041_N0511_R122_T32TQM_20251008T122613";
    let source = format!("s3://{bucket}/products/{id}.zarr");
    let o = env.run(&[
        "workload",
        "synth",
        "--out",
        &source,
        "--size",
        "small",
        "--chunking",
        "real",
        "--s3-endpoint",
        &s3,
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "synth: {}", text(&o));
    let o = env.run(&[
        "collections",
        "create",
        &collection,
        "--stac-api-url",
        &stac,
    ]);
    assert!(o.status.success(), "collections create: {}", text(&o));

    // The template's own parameters, with the ones a submit gives.
    let mut params: BTreeMap<String, String> = wt["spec"]["arguments"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                p["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    params.insert("source_url".into(), source.clone());
    params.insert("collection".into(), collection.clone());
    assert_eq!(params["dest"], format!("s3://{bucket}"));
    assert_eq!(params["stac_api_url"], kube_stac);
    let container = |name: &str, c: &Value| {
        json!({
            "name": name,
            "image": image,
            "imagePullPolicy": "Always",
            "command": c["command"],
            "args": substitute(&c["args"], &params),
            "env": c["env"],
            "securityContext": c["securityContext"],
            "volumeMounts": c["volumeMounts"],
        })
    };
    let job_name = common::unique("geozarr").replace('_', "-");
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "namespace": "geozarr"},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 900,
            "template": {"spec": {
                "restartPolicy": "Never",
                "imagePullSecrets": [{"name": "provisioner-registry"}],
                "securityContext": wt["spec"]["securityContext"],
                "volumes": wt["spec"]["volumes"],
                // convert, then register: the WorkflowTemplate's first two steps
                "initContainers": [container("convert", &convert)],
                "containers": [container("register", &register)],
            }},
        },
    });
    let f = env.dir.join("job.json");
    std::fs::write(&f, serde_json::to_vec_pretty(&job).unwrap()).unwrap();
    let mark = reg.mark();
    let o = kubectl(&["apply", "-f", f.to_str().unwrap()]);
    assert!(o.status.success(), "kubectl apply: {}", text(&o));
    let t0 = Instant::now();
    let mut done = None;
    while t0.elapsed().as_secs() < 600 {
        let j = kget(&["job", &job_name, "-n", "geozarr"]).unwrap();
        if j["status"]["succeeded"].as_u64() == Some(1) || j["status"]["failed"].as_u64() >= Some(1)
        {
            done = Some(j);
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let logs = |c: &str| {
        let o = kubectl(&["logs", "-n", "geozarr", &format!("job/{job_name}"), "-c", c]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    let pods = kget(&[
        "pods",
        "-n",
        "geozarr",
        "-l",
        &format!("job-name={job_name}"),
    ])
    .unwrap();
    let j = done.unwrap_or_else(|| {
        panic!(
            "the Job did not finish in 600 s; pods: {}",
            pods["items"][0]["status"]
        )
    });
    assert_eq!(
        j["status"]["succeeded"],
        1,
        "the Job failed: {}\npod: {}\nconvert:\n{}\nregister:\n{}",
        j["status"],
        pods["items"][0]["status"],
        logs("convert"),
        logs("register")
    );
    let job_secs = {
        let t = |k: &str| {
            chrono::DateTime::parse_from_rfc3339(j["status"][k].as_str().unwrap()).unwrap()
        };
        (t("completionTime") - t("startTime")).num_seconds()
    };
    // The worker pulled this digest from the registry with the pull secret.
    let st = &pods["items"][0]["status"];
    for c in st["initContainerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .chain(st["containerStatuses"].as_array().unwrap())
    {
        assert!(
            c["imageID"].as_str().is_some_and(|i| i.ends_with(&digest)),
            "{} ran {}",
            c["name"],
            c["imageID"]
        );
    }
    // imagePullPolicy Always: the worker resolves the digest at the registry for each
    // container (HEAD or GET of the manifest), answered 200 only with the secret's
    // credentials (every request of this registry needs them).
    let by_worker = |a: &&Access| node_ips.split_whitespace().any(|ip| ip == a.client);
    let manifest_path = format!("/v2/eo/geozarr/manifests/{digest}");
    let reqs = reg.requests_since(mark);
    let resolved = reqs
        .iter()
        .filter(by_worker)
        .filter(|a| a.path == manifest_path && a.status == 200)
        .count();
    assert!(
        resolved >= 2,
        "the kube worker resolved {manifest_path} {resolved} times with credentials (want one per container)"
    );
    // The image's blobs a worker fetched since the deploy (none when it had them from an
    // earlier run of the same binary).
    let blobs = blob_digests(&reg.manifest("eo/geozarr", &digest));
    let fetched = reg
        .requests_since(deploy_mark)
        .iter()
        .filter(by_worker)
        .filter(|a| a.method == "GET" && a.status == 200)
        .filter(|a| {
            blobs
                .iter()
                .any(|b| a.path == format!("/v2/eo/geozarr/blobs/{b}"))
        })
        .count();
    let register_out = logs("register");
    assert!(
        register_out.contains("\"item_url\""),
        "register's outcome: {register_out}"
    );

    // The converted store is in the bucket; the STAC API finds the item.
    let objects = rt
        .block_on(provisioner::workload::io::list(
            &s3c,
            &bucket,
            &format!("{collection}/{id}.zarr/"),
        ))
        .unwrap();
    assert!(
        objects
            .iter()
            .any(|(k, _, _)| k.ends_with(&format!("{id}.zarr/zarr.json"))),
        "{} objects, no root zarr.json",
        objects.len()
    );
    let (st, body, _) = common::http_get(&format!("{stac}/search?collections={collection}&ids={id}"));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let found: Value = serde_json::from_slice(&body).unwrap();
    let item = &found["features"][0];
    assert_eq!(item["id"], id, "the item is found by /search: {found}");
    assert_eq!(item["collection"], collection.as_str());
    assert_eq!(
        item["assets"]["reflectance"]["type"],
        "application/vnd.zarr; version=3; profile=multiscales",
        "{item}"
    );

    // TiTiler renders the tile at the item's centre through the item's own xyz link.
    let tile = common::assert_item_tile_renders(item);
    assert!(tile.starts_with(&kube_titiler), "{tile}");

    // The webhook receiver (argo namespace) pulls the same image with its own copy of the secret.
    common::wait_until("the webhook receiver available", 180, || {
        kget(&["deployment", "argo-events-webhook-receiver", "-n", "argo"])
            .is_some_and(|d| d["status"]["availableReplicas"].as_u64() >= Some(1))
    });

    eprintln!(
        "Job (convert + register in {image}): {job_secs} s; the worker resolved the digest {resolved} times, fetched {fetched} of its {} blobs; {} objects written; tile rendered: {tile}",
        blobs.len(),
        objects.len(),
    );
    let o = env.run(&[
        "collections",
        "clean",
        &collection,
        "--delete-data",
        "--stac-api-url",
        &stac,
        "--s3-endpoint",
        &s3,
    ]);
    if !o.status.success() {
        eprintln!("cleanup: collections clean: {}", text(&o));
    }
}
