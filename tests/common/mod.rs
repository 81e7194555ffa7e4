//! Shared by the tests: running the binary, and where the lab's services are.
//! A lab test that does not find its lab fails loudly; it never skips.

#![allow(dead_code)]

use provisioner::env::model::S3Location;
use provisioner::env::secret::SecretRef;

/// Run the provisioner binary (without an ambient `AWS_ENDPOINT_URL`):
/// exit code, stdout, stderr.
pub fn provisioner(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub fn lab_var(name: &str, component: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "lab not running: ${name} is unset. Start it with `bash tests/lab/up.sh {component}` and \
             `source /var/tmp/provisioner-lab/env.sh`, or run the whole suite with `bash tests/run.sh`"
        )
    })
}

/// The S3 servers of the lab: moto (the reference) and s3s-fs (strict SigV4).
pub fn s3_servers() -> Vec<(&'static str, S3Location)> {
    let loc = |endpoint: String, ak: &str, sk: &str| S3Location {
        bucket: String::new(),
        prefix: String::new(),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        path_style: true,
        access_key: Some(SecretRef::Env(ak.into())),
        secret_key: Some(SecretRef::Env(sk.into())),
        create: false,
        force_destroy: false,
    };
    lab_var("AWS_ACCESS_KEY_ID", "s3");
    lab_var("S3S_ACCESS_KEY", "s3s");
    vec![
        (
            "moto",
            loc(
                lab_var("S3_ENDPOINT_URL", "s3"),
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
            ),
        ),
        (
            "s3s-fs",
            loc(
                lab_var("S3S_ENDPOINT_URL", "s3s"),
                "S3S_ACCESS_KEY",
                "S3S_SECRET_KEY",
            ),
        ),
    ]
}

/// moto alone (it keeps storage classes and tags; s3s-fs ignores both).
pub fn s3_servers_moto() -> (&'static str, S3Location) {
    let l = S3Location {
        bucket: String::new(),
        prefix: String::new(),
        endpoint: Some(lab_var("S3_ENDPOINT_URL", "s3")),
        region: "us-east-1".into(),
        path_style: true,
        access_key: Some(SecretRef::Env("AWS_ACCESS_KEY_ID".into())),
        secret_key: Some(SecretRef::Env("AWS_SECRET_ACCESS_KEY".into())),
        create: false,
        force_destroy: false,
    };
    ("moto", l)
}

pub async fn client_with_bucket(loc: &S3Location, bucket: &str) -> aws_sdk_s3::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let c = provisioner::s3::client(loc, "test").await.unwrap();
    match c.create_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e) => {
            let (_, code) = provisioner::s3::status_and_code(&e);
            assert!(
                matches!(
                    code.as_deref(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ),
                "create bucket {bucket}: {e:?}"
            );
        }
    }
    c
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// The lab's kubectl v1.20 (`LAB_CLUSTER_KUBE_BIN`) with `kubeconfig`.
#[allow(dead_code)] // not every test file talks to a cluster
pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    let bin = std::env::var("LAB_CLUSTER_KUBE_BIN")
        .map(|b| format!("{b}/kubectl"))
        .unwrap_or_else(|_| "kubectl".into());
    std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Poll `f` every 2 s until it holds; fail naming `what` after `secs`.
#[allow(dead_code)]
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(secs),
            "{what}: not after {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// A command's exit status, stdout and stderr, for assertion messages.
#[allow(dead_code)]
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// GET `url`: (status, body, content type).
pub fn http_get(url: &str) -> (u16, Vec<u8>, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::get(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, r.bytes().await.unwrap().to_vec(), ct)
    })
}

/// The item's own `xyz` link renders a PNG with data at zoom 12, at the tile
/// holding the centre of the item's bbox. Returns the tile's URL.
pub fn assert_item_tile_renders(item: &serde_json::Value) -> String {
    let xyz = item["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "xyz")
        .unwrap_or_else(|| panic!("no xyz link: {item}"))["href"]
        .as_str()
        .unwrap()
        .to_string();
    let b: Vec<f64> = item["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (lon, lat, z) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, 12);
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n) as u32;
    let y = ((1.0
        - (lat.to_radians().tan() + 1.0 / lat.to_radians().cos()).ln() / std::f64::consts::PI)
        / 2.0
        * n) as u32;
    let url = xyz
        .replace("{z}", &z.to_string())
        .replace("{x}", &x.to_string())
        .replace("{y}", &y.to_string());
    let (st, png, ct) = http_get(&url);
    assert_eq!(
        (st, ct.as_str()),
        (200, "image/png"),
        "{url}: {}",
        String::from_utf8_lossy(&png)
    );
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 1000,
        "{url} gave {} bytes",
        png.len()
    );
    url
}

/// The openstack CLI as the lab's demo user (the project the lab environments
/// work in), its JSON answer.
pub fn openstack_json(args: &[&str]) -> serde_json::Value {
    let cli = std::env::var("LAB_OS_CLI").unwrap_or_else(|_| "openstack".into());
    let out = std::process::Command::new(cli)
        .env("OS_CLOUD", "lab-demo")
        .args(args)
        .args(["-f", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "openstack {args:?}: {}", output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}
