//! The conversion workload end to end against the lab's real services:
//! synthetic product → convert (to moto S3, storage class set at write time) →
//! collection + register in stac-fastapi-pgstac → `/search` finds it → the
//! item's own xyz link renders a PNG with data in TiTiler → xarray/rioxarray
//! verify every level (CRS, transform, values) → tier → clean. And the same
//! conversion into s3s-fs, which checks SigV4 signatures.

mod common;

use std::path::Path;
use std::process::Command;

use common::{lab_var, provisioner as bin};
use serde_json::Value;

fn ok_json(args: &[&str]) -> Value {
    let (code, out, err) = bin(args);
    assert_eq!(code, 0, "provisioner {args:?} failed:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn python(script: &str, args: &[&str]) -> (bool, String) {
    let py = lab_var("LAB_PY_READERS", "eo");
    let out = Command::new(py)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/support")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}


async fn bucket(endpoint: &str, name: &str, ak: &str, sk: &str) -> aws_sdk_s3::Client {
    let loc = provisioner::env::model::S3Location {
        bucket: name.into(),
        prefix: String::new(),
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        path_style: true,
        access_key: Some(provisioner::env::secret::SecretRef::Env(ak.into())),
        secret_key: Some(provisioner::env::secret::SecretRef::Env(sk.into())),
        create: false,
        force_destroy: false,
    };
    common::client_with_bucket(&loc, name).await
}

/// The EO lab as a workload test uses it: service URLs, a runtime, a fresh
/// bucket on moto and a collection name, both unique to this process.
struct EoLab {
    s3: String,
    stac: String,
    titiler: String,
    rt: tokio::runtime::Runtime,
    bucket_name: String,
    collection: String,
    s3c: aws_sdk_s3::Client,
}

impl EoLab {
    fn new(bucket_prefix: &str, collection_prefix: &str) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let s3 = lab_var("S3_ENDPOINT_URL", "s3");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let tag = std::process::id();
        let bucket_name = format!("{bucket_prefix}-{tag}");
        let s3c = rt.block_on(bucket(&s3, &bucket_name, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"));
        Self {
            stac: lab_var("STAC_API_URL", "eo"),
            titiler: lab_var("TITILER_URL", "eo"),
            collection: format!("{collection_prefix}-{tag}"),
            s3,
            rt,
            bucket_name,
            s3c,
        }
    }
}

#[test]
#[ignore = "lab: needs `tests/lab/up.sh s3 s3s eo` (moto, s3s-fs, STAC API, TiTiler)"]
fn convert_register_render_verify_tier_clean() {
    let EoLab { s3, stac, titiler, rt, bucket_name, collection, s3c } = EoLab::new("workload", "s2-l2a-lab");

    let dir = tempfile::tempdir().unwrap();
    let id = "S2A_MSIL2A_20251008T100041_N0511_R122_T32TQM_20251008T122613";
    let src = dir.path().join(format!("{id}.zarr"));
    ok_json(&[
        "workload",
        "synth",
        "--out",
        src.to_str().unwrap(),
        "--size",
        "small",
        "--chunking",
        "real",
        "-o",
        "json",
    ]);
    let dest = format!("s3://{bucket_name}/converted");
    let src_s = src.to_str().unwrap();

    // Convert straight to S3, the target class set on every PUT.
    let rep = ok_json(&[
        "workload",
        "convert",
        "--source",
        src_s,
        "--dest",
        &dest,
        "--collection",
        &collection,
        "--s3-endpoint",
        &s3,
        "--storage-class",
        "STANDARD_IA",
        "-o",
        "json",
    ]);
    let store = format!("{dest}/{collection}/{id}.zarr");
    assert_eq!(rep["output"], store);
    let objects = rt
        .block_on(provisioner::workload::io::list(
            &s3c,
            &bucket_name,
            &format!("converted/{collection}/{id}.zarr/"),
        ))
        .unwrap();
    assert_eq!(
        objects.len() as u64,
        rep["objects"].as_u64().unwrap(),
        "every written object is listed"
    );
    assert!(
        objects.iter().all(|(_, class, _)| class == "STANDARD_IA"),
        "storage class set at write time"
    );

    // Independent readers: xarray + rioxarray + zarr-python over S3.
    let (ok, log) = python(
        "verify_geozarr.py",
        &[
            "--source",
            src_s,
            "--output",
            &store,
            "--level-sample",
            "256",
        ],
    );
    assert!(ok, "xarray/rioxarray verification failed:\n{log}");

    // Collection, registration, search.
    let (code, _, err) = bin(&[
        "collections",
        "create",
        &collection,
        "--stac-api-url",
        &stac,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = bin(&[
        "collections",
        "create",
        &collection,
        "--stac-api-url",
        &stac,
    ]);
    assert!(
        code == 1 && err.contains("already exists"),
        "a second create says so: {err}"
    );
    let (code, _, err) = bin(&[
        "collections",
        "update",
        &collection,
        "--title",
        "Lab S2 L2A",
        "--stac-api-url",
        &stac,
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, body, _) = common::http_get(&format!("{stac}/collections/{collection}"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["title"],
        "Lab S2 L2A"
    );
    let reg = |extra: &[&str]| {
        let mut args = vec![
            "workload",
            "register",
            "--source",
            src_s,
            "--dest",
            &dest,
            "--collection",
            &collection,
            "--stac-api-url",
            &stac,
        ];
        args.extend_from_slice(&[
            "--raster-api-url",
            &titiler,
            "--raster-flavor",
            "xarray",
            "--s3-endpoint",
            &s3,
            "-o",
            "json",
        ]);
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    assert_eq!(reg(&[])["result"], "created");
    assert_eq!(
        reg(&[])["result"],
        "replaced",
        "re-registration is idempotent"
    );
    let (st, body, _) = common::http_get(&format!("{stac}/search?collections={collection}&ids={id}"));
    assert_eq!(st, 200);
    let found: Value = serde_json::from_slice(&body).unwrap();
    let item = &found["features"][0];
    assert_eq!(item["id"], id, "the item is found by /search: {found}");
    assert_eq!(
        item["assets"]["reflectance"]["type"],
        "application/vnd.zarr; version=3; profile=multiscales"
    );
    assert_eq!(
        item["assets"]["reflectance"]["alternate"]["s3"]["storage:scheme"]["tier"],
        "STANDARD_IA"
    );
    assert!(
        item["properties"]["expires"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // TiTiler renders the converted reflectance (the PNG is decoded and must hold data) ...
    let (ok, log) = python(
        "check_titiler.py",
        &[
            "--url",
            &store,
            "--group",
            "measurements/reflectance/r10m",
            "--variable",
            "b04",
        ],
    );
    assert!(ok, "TiTiler did not render the reflectance:\n{log}");
    // ... and so does the item's own xyz link, at the tile holding the item's centre.
    common::assert_item_tile_renders(item);

    // Tier: a filtered dry run changes nothing; the full run moves every object and records it.
    let item_url = format!("{stac}/collections/{collection}/items/{id}");
    let dry = ok_json(&[
        "workload",
        "tier",
        "--item-url",
        &item_url,
        "--storage-class",
        "EXPRESS_ONEZONE",
        "--include",
        "*/r60m/*",
        "--dry-run",
        "--s3-endpoint",
        &s3,
        "-o",
        "json",
    ]);
    assert!(
        dry["selected"].as_u64().unwrap() > 0 && dry["selected"].as_u64() < dry["listed"].as_u64(),
        "{dry}"
    );
    let still = rt
        .block_on(provisioner::workload::io::list(
            &s3c,
            &bucket_name,
            &format!("converted/{collection}/{id}.zarr/"),
        ))
        .unwrap();
    assert!(
        still.iter().all(|(_, c, _)| c == "STANDARD_IA"),
        "dry run changed nothing"
    );
    let full = ok_json(&[
        "workload",
        "tier",
        "--item-url",
        &item_url,
        "--storage-class",
        "EXPRESS_ONEZONE",
        "--s3-endpoint",
        &s3,
        "-o",
        "json",
    ]);
    assert_eq!(full["changed"], full["listed"], "{full}");
    let after = rt
        .block_on(provisioner::workload::io::list(
            &s3c,
            &bucket_name,
            &format!("converted/{collection}/{id}.zarr/"),
        ))
        .unwrap();
    assert!(after.iter().all(|(_, c, _)| c == "EXPRESS_ONEZONE"));
    let (_, body, _) = common::http_get(&item_url);
    let item: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        item["assets"]["reflectance"]["alternate"]["s3"]["storage:scheme"]["tier"],
        "EXPRESS_ONEZONE"
    );
    assert_eq!(
        item["properties"]["storage:schemes"]["s3"]["storage_class"],
        "EXPRESS_ONEZONE",
        "the storage extension's scheme follows the tier"
    );

    // Clean: data first, then the items.
    let clean = ok_json(&[
        "collections",
        "clean",
        &collection,
        "--delete-data",
        "--stac-api-url",
        &stac,
        "--s3-endpoint",
        &s3,
        "-o",
        "json",
    ]);
    assert_eq!(clean["items_deleted"], 1);
    let left = rt
        .block_on(provisioner::workload::io::list(
            &s3c,
            &bucket_name,
            "converted/",
        ))
        .unwrap();
    assert!(left.is_empty(), "{} objects left", left.len());
    let (st, _, _) = common::http_get(&item_url);
    assert_eq!(st, 404);
}

#[test]
#[ignore = "lab: needs `tests/lab/up.sh s3s` (s3s-fs checks SigV4 signatures)"]
fn converts_into_a_signature_checking_s3() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let endpoint = lab_var("S3S_ENDPOINT_URL", "s3s");
    let ak = lab_var("S3S_ACCESS_KEY", "s3s");
    let sk = lab_var("S3S_SECRET_KEY", "s3s");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket_name = format!("workload-strict-{}", std::process::id());
    let s3c = rt.block_on(bucket(
        &endpoint,
        &bucket_name,
        "S3S_ACCESS_KEY",
        "S3S_SECRET_KEY",
    ));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("S2A_STRICT.zarr");
    ok_json(&[
        "workload",
        "synth",
        "--out",
        src.to_str().unwrap(),
        "--size",
        "tiny",
        "-o",
        "json",
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args([
            "workload",
            "convert",
            "--source",
            src.to_str().unwrap(),
            "--dest",
            &format!("s3://{bucket_name}/x"),
            "--collection",
            "c",
            "--s3-endpoint",
            &endpoint,
            "-o",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", &ak)
        .env("AWS_SECRET_ACCESS_KEY", &sk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects = rt
        .block_on(provisioner::workload::io::list(
            &s3c,
            &bucket_name,
            "x/c/S2A_STRICT.zarr/",
        ))
        .unwrap();
    assert_eq!(objects.len() as u64, rep["objects"].as_u64().unwrap());
    assert!(
        objects
            .iter()
            .any(|(k, _, _)| k.ends_with("S2A_STRICT.zarr/zarr.json")),
        "root written last and present"
    );
}

/// A static file server (Python's http.server: a real HTTP server, no S3 API)
/// on a free port; killed on drop.
struct FileServer(std::process::Child, u16);

impl FileServer {
    fn start(dir: &Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 is needed for the HTTP source test (the lab installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http.server said: {line}"));
        Self(child, port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "lab: needs python3 for a static HTTP server (installed with the lab)"]
fn converts_from_a_stac_item_url_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let id = "S2A_MSIL2A_HTTP";
    let product = dir.path().join("products").join(format!("{id}.zarr"));
    ok_json(&[
        "workload",
        "synth",
        "--out",
        product.to_str().unwrap(),
        "--size",
        "tiny",
        "-o",
        "json",
    ]);
    let server = FileServer::start(dir.path());
    let base = format!("http://127.0.0.1:{}", server.1);
    // A STAC item whose product asset is the Zarr over HTTP (the EODC shape).
    std::fs::create_dir_all(dir.path().join("collections/s2/items")).unwrap();
    let item = serde_json::json!({"type": "Feature", "id": id, "assets": {"product": {"href": format!("{base}/products/{id}.zarr")}}});
    std::fs::write(
        dir.path().join(format!("collections/s2/items/{id}.json")),
        item.to_string(),
    )
    .unwrap();

    let dest = dir.path().join("out");
    let item_url = format!("{base}/collections/s2/items/{id}.json");
    let rep = ok_json(&[
        "workload",
        "convert",
        "--source",
        &item_url,
        "--dest",
        dest.to_str().unwrap(),
        "--collection",
        "c",
        "-o",
        "json",
    ]);
    assert_eq!(
        rep["output"],
        dest.join(format!("c/{id}.zarr")).display().to_string()
    );

    // Same bytes as converting the local copy.
    let local = dir.path().join("local");
    ok_json(&[
        "workload",
        "convert",
        "--source",
        product.to_str().unwrap(),
        "--dest",
        local.to_str().unwrap(),
        "--collection",
        "c",
        "-o",
        "json",
    ]);
    let a = std::fs::read(dest.join(format!(
        "c/{id}.zarr/measurements/reflectance/r10m/b04/c/0/0"
    )))
    .unwrap();
    let b = std::fs::read(local.join(format!(
        "c/{id}.zarr/measurements/reflectance/r10m/b04/c/0/0"
    )))
    .unwrap();
    assert_eq!(a, b, "HTTP and local sources give the same shard");

    // A missing item is exit 2 (not retried), named.
    let (code, _, err) = bin(&[
        "workload",
        "convert",
        "--source",
        &format!("{base}/collections/s2/items/NOPE.json"),
        "--dest",
        dest.to_str().unwrap(),
        "--collection",
        "c",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NOPE.json"), "{err}");
}

/// Sentinel-1 GRD end to end: convert into the lab S3 with a storage class,
/// xarray + rioxarray read every level (CRS, transform, values at the GCPs,
/// no data outside the swath, pyramid means), register the item, validate it
/// against the JSON schemas of the STAC extensions it declares, `/search`
/// finds it, TiTiler renders VV (directly and through the item's xyz link).
#[test]
#[ignore = "lab: needs `tests/lab/up.sh s3 eo` (moto, STAC API, TiTiler, the readers venv)"]
fn sentinel1_convert_verify_register_validate_render() {
    let EoLab { s3, stac, titiler, rt, bucket_name, collection, s3c } = EoLab::new("workload-s1", "s1-grd-lab");

    let dir = tempfile::tempdir().unwrap();
    let id = "S1A_IW_GRDH_1SDV_20251008T052417_20251008T052442_061325_07A5C1_3F1B";
    let src = dir.path().join(format!("{id}.zarr"));
    let src_s = src.to_str().unwrap();
    ok_json(&["workload", "synth", "--product", "s1-grd", "--size", "small", "--out", src_s, "-o", "json"]);
    let dest = format!("s3://{bucket_name}/converted");
    let rep = ok_json(&[
        "workload", "convert", "--source", src_s, "--dest", &dest, "--collection", &collection,
        "--s3-endpoint", &s3, "--storage-class", "STANDARD_IA", "-o", "json",
    ]);
    assert_eq!(rep["product_type"], "S01SIWGRH");
    assert_eq!(rep["source_chunk_reads"], rep["source_chunks"], "every grd chunk fetched once: {rep}");
    let store = format!("{dest}/{collection}/{id}.zarr");
    let objects = rt
        .block_on(provisioner::workload::io::list(&s3c, &bucket_name, &format!("converted/{collection}/{id}.zarr/")))
        .unwrap();
    assert_eq!(objects.len() as u64, rep["objects"].as_u64().unwrap());
    assert!(objects.iter().all(|(_, class, _)| class == "STANDARD_IA"), "storage class set at write time");

    // Independent readers over S3: every level, CRS, transform, values.
    let (ok, log) = python("verify_geozarr_s1.py", &["--source", src_s, "--output", &store]);
    assert!(ok, "xarray/rioxarray verification failed:\n{log}");

    // Register, find, validate.
    let (code, _, err) = bin(&["collections", "create", &collection, "--stac-api-url", &stac, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let reg = ok_json(&[
        "workload", "register", "--source", src_s, "--dest", &dest, "--collection", &collection,
        "--stac-api-url", &stac, "--raster-api-url", &titiler, "--raster-flavor", "xarray",
        "--s3-endpoint", &s3, "-o", "json",
    ]);
    assert_eq!(reg["result"], "created");
    let (st, body, _) = common::http_get(&format!("{stac}/search?collections={collection}&ids={id}"));
    assert_eq!(st, 200);
    let found: Value = serde_json::from_slice(&body).unwrap();
    let item = &found["features"][0];
    assert_eq!(item["id"], id, "the item is found by /search: {found}");
    for (key, pol) in [("vv", "VV"), ("vh", "VH")] {
        let a = &item["assets"][key];
        assert_eq!(a["type"], "application/vnd.zarr; version=3; profile=multiscales", "{a}");
        assert_eq!(a["sar:polarizations"], serde_json::json!([pol]));
        assert_eq!(a["alternate"]["s3"]["storage:scheme"]["tier"], "STANDARD_IA");
        assert!(a["href"].as_str().unwrap().ends_with(&format!("_{pol}/measurements")), "{a}");
    }
    assert_eq!(item["properties"]["proj:code"], "EPSG:4326");
    assert_eq!(item["properties"]["sar:instrument_mode"], "IW");
    let exts: Vec<&str> = item["stac_extensions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(exts.iter().any(|e| e.contains("/sar/")) && exts.iter().any(|e| e.contains("/sat/")), "{exts:?}");
    let item_file = dir.path().join("item.json");
    std::fs::write(&item_file, serde_json::to_vec(item).unwrap()).unwrap();
    // Every declared extension's schema is validated except alternate-assets: no package in
    // the registries this machine reaches ships it (the others come from pystac-ext-* sources).
    let (ok, log) = python(
        "validate_stac.py",
        &[
            item_file.to_str().unwrap(),
            "--allow-missing",
            "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
        ],
    );
    println!("{log}");
    assert!(ok, "the item does not validate against the schemas it declares:\n{log}");

    // TiTiler renders VV at its native level, and through the item's own xyz link.
    let vv = format!("{}/measurements/r100m", provisioner::workload::synth_s1::group_name(id, "VV"));
    let (ok, log) = python("check_titiler.py", &["--url", &store, "--group", &vv, "--variable", "grd", "--rescale", "0,400"]);
    assert!(ok, "TiTiler did not render VV:\n{log}");
    common::assert_item_tile_renders(item);

    let clean = ok_json(&[
        "collections", "clean", &collection, "--delete-data", "--stac-api-url", &stac, "--s3-endpoint", &s3, "-o", "json",
    ]);
    assert_eq!(clean["items_deleted"], 1);
    let left = rt.block_on(provisioner::workload::io::list(&s3c, &bucket_name, "converted/")).unwrap();
    assert!(left.is_empty(), "{} objects left", left.len());
}
