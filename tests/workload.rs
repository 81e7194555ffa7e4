//! The conversion workload without a lab: synthetic product → `workload convert`
//! (the real binary) → read back with zarrs, an independent Zarr v3 reader that
//! checks our shard index, CRC32C and codec chains as it decodes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    c.env_remove("AWS_ENDPOINT_URL");
    c
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn synth(dir: &Path, name: &str, product: &str, size: &str, chunking: &str) -> PathBuf {
    let p = dir.join(format!("{name}.zarr"));
    let (code, _, err) = run(&[
        "workload",
        "synth",
        "--out",
        p.to_str().unwrap(),
        "--product",
        product,
        "--size",
        size,
        "--chunking",
        chunking,
    ]);
    assert_eq!(code, 0, "{err}");
    p
}

fn convert(src: &Path, dest: &Path) -> (i32, Value, String) {
    let (code, out, err) = run(&[
        "workload",
        "convert",
        "--source",
        src.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--collection",
        "c",
        "-o",
        "json",
    ]);
    (code, serde_json::from_str(&out).unwrap_or(Value::Null), err)
}

fn read_f32(store: &Path, path: &str) -> (Vec<f32>, Vec<u64>) {
    let s = Arc::new(FilesystemStore::new(store).unwrap());
    let a = Array::open(s, path).unwrap_or_else(|e| panic!("zarrs cannot open {path}: {e}"));
    let shape = a.shape().to_vec();
    let v: Vec<f32> = a
        .retrieve_array_subset(&ArraySubset::new_with_shape(shape.clone()))
        .unwrap_or_else(|e| panic!("zarrs cannot read {path}: {e}"));
    (v, shape)
}

fn read_u16_v2(store: &Path, path: &str) -> Vec<u16> {
    let s = Arc::new(FilesystemStore::new(store).unwrap());
    let a = Array::open(s, path).unwrap();
    a.retrieve_array_subset(&ArraySubset::new_with_shape(a.shape().to_vec()))
        .unwrap()
}

fn nanmean(src: &[f32], w: usize, f: usize) -> Vec<f32> {
    let h = src.len() / w;
    let (h2, w2) = (h / f, w / f);
    let mut out = Vec::with_capacity(h2 * w2);
    for j in 0..h2 {
        for i in 0..w2 {
            let vals: Vec<f64> = (0..f)
                .flat_map(|dy| (0..f).map(move |dx| (dy, dx)))
                .map(|(dy, dx)| src[(j * f + dy) * w + i * f + dx])
                .filter(|v| !v.is_nan())
                .map(f64::from)
                .collect();
            out.push(if vals.is_empty() {
                f32::NAN
            } else {
                (vals.iter().sum::<f64>() / vals.len() as f64) as f32
            });
        }
    }
    out
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-6 * x.abs().max(1e-6))
}

#[test]
fn l2a_converts_and_reads_back_with_zarrs() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), "S2A_MSIL2A_TEST", "l2a", "tiny", "small");
    let dest = dir.path().join("out");
    let (code, report, err) = convert(&src, &dest);
    assert_eq!(code, 0, "{err}");
    let store = dest.join("c/S2A_MSIL2A_TEST.zarr");
    assert_eq!(report["output"], store.display().to_string());

    // Values: DN·1e-4 − 0.1 in float32, NaN where DN == 0.
    let dn = read_u16_v2(&src, "/measurements/reflectance/r10m/b04");
    let (b04, shape) = read_f32(&store, "/measurements/reflectance/r10m/b04");
    assert_eq!(shape, [366, 366]);
    assert!(dn.contains(&0), "the synthetic product has a no-data wedge");
    let expect: Vec<f32> = dn
        .iter()
        .map(|&d| {
            if d == 0 {
                f32::NAN
            } else {
                (f64::from(d) * 0.0001 - 0.1) as f32
            }
        })
        .collect();
    assert!(same(&b04, &expect), "r10m b04 differs from DN*scale+offset");

    // b08 injected at r20m/r60m from r10m; pyramid levels are means of the level below.
    let (b08_10, _) = read_f32(&store, "/measurements/reflectance/r10m/b08");
    let (b08_20, _) = read_f32(&store, "/measurements/reflectance/r20m/b08");
    let (b08_60, _) = read_f32(&store, "/measurements/reflectance/r60m/b08");
    assert!(same(&b08_20, &nanmean(&b08_10, 366, 2)));
    assert!(same(&b08_60, &nanmean(&b08_10, 366, 6)));
    let mut below = read_f32(&store, "/measurements/reflectance/r60m/b02");
    for (level, f) in [("r120m", 2usize), ("r360m", 3), ("r720m", 2)] {
        let (v, shape) = read_f32(&store, &format!("/measurements/reflectance/{level}/b02"));
        assert!(
            same(&v, &nanmean(&below.0, below.1[1] as usize, f)),
            "{level} is not the mean of the level below"
        );
        below = (v, shape);
    }
    assert_eq!(below.1, [5, 5], "r720m of a 366² product: 61 → 30 → 10 → 5");

    // Layout and metadata.
    let root: Value =
        serde_json::from_slice(&std::fs::read(store.join("zarr.json")).unwrap()).unwrap();
    let meta = root["consolidated_metadata"]["metadata"]
        .as_object()
        .unwrap();
    assert!(
        meta.keys().all(|k| !k.contains("quicklook")),
        "quicklooks are dropped"
    );
    assert!(
        meta.contains_key("conditions/geometry/angle")
            && meta.contains_key("quality/atmosphere/r10m/aot")
    );
    let r10 = &meta["measurements/reflectance/r10m"]["attributes"];
    assert_eq!(
        r10["spatial:transform"],
        serde_json::json!([10.0, 0.0, 699960.0, 0.0, -10.0, 4700040.0]),
        "edge-based transform"
    );
    assert_eq!(
        r10["spatial:bbox"],
        serde_json::json!([699960.0, 4696380.0, 703620.0, 4700040.0])
    );
    let layout = meta["measurements/reflectance"]["attributes"]["multiscales"]["layout"]
        .as_array()
        .unwrap();
    let assets: Vec<&str> = layout
        .iter()
        .map(|e| e["asset"].as_str().unwrap())
        .collect();
    assert_eq!(assets, ["r10m", "r20m", "r60m", "r120m", "r360m", "r720m"]);
    assert_eq!(
        meta["measurements/reflectance/r60m/spatial_ref"]["attributes"]["grid_mapping_name"],
        "transverse_mercator"
    );
    let bbox = root["attributes"]["spatial:bbox"].as_array().unwrap();
    // The real T32TQM product's STAC bbox tops out at 42.426911995973605°N, its NW
    // corner (699960, 4700040); our densified reprojection must agree.
    assert!(
        (bbox[3].as_f64().unwrap() - 42.426_911_995_973_605).abs() < 1e-6,
        "root bbox in EPSG:4326: {bbox:?}"
    );
    assert!(
        (bbox[0].as_f64().unwrap() - 11.4294).abs() < 1e-3,
        "root bbox in EPSG:4326: {bbox:?}"
    );

    // Copied arrays keep their values (strings included).
    let s = Arc::new(FilesystemStore::new(&store).unwrap());
    let aot = Array::open(s.clone(), "/quality/atmosphere/r60m/aot").unwrap();
    let got: Vec<u16> = aot
        .retrieve_array_subset(&ArraySubset::new_with_shape(aot.shape().to_vec()))
        .unwrap();
    assert_eq!(got, read_u16_v2(&src, "/quality/atmosphere/r60m/aot"));
}

#[test]
fn l1c_gets_b08_at_every_coarse_level() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), "S2B_MSIL1C_TEST", "l1c", "tiny", "real");
    let dest = dir.path().join("out");
    let (code, report, err) = convert(&src, &dest);
    assert_eq!(code, 0, "{err}");
    let vars = |lvl: usize| {
        report["levels"][lvl]["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(vars(1), ["b05", "b06", "b07", "b08", "b11", "b12", "b8a"]);
    assert_eq!(vars(2), ["b01", "b08", "b09", "b10"]);
    assert_eq!(vars(5), ["b01", "b08", "b09", "b10"]);
}

#[test]
fn bad_sources_fail_clearly_and_leave_no_complete_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), "S2A_MSIL2A_BAD", "l2a", "tiny", "small");
    let dest = dir.path().join("out");
    let store = dest.join("c/S2A_MSIL2A_BAD.zarr");

    // A missing source: exit 2 (the workflow does not retry it).
    let (code, _, err) = convert(&dir.path().join("nope.zarr"), &dest);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("source not found") && err.contains("nope.zarr"),
        "{err}"
    );

    // A truncated chunk: the error names it; no root zarr.json (the output is not complete).
    let chunk = src.join("measurements/reflectance/r20m/b05/1.2");
    let good = std::fs::read(&chunk).unwrap();
    std::fs::write(&chunk, &good[..good.len() / 2]).unwrap();
    let (code, _, err) = convert(&src, &dest);
    assert_eq!(code, 1);
    assert!(
        err.contains("corrupt chunk") && err.contains("r20m/b05/1.2"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !store.join("zarr.json").exists(),
        "an interrupted conversion must not look complete"
    );

    // The rerun after the source is repaired converges (it cleans the partial output first).
    std::fs::write(&chunk, &good).unwrap();
    let (code, _, err) = convert(&src, &dest);
    assert_eq!(code, 0, "{err}");
    assert!(store.join("zarr.json").exists());

    // A missing group and a wrong product type, named with the path.
    let zmeta_path = src.join(".zmetadata");
    let text = std::fs::read_to_string(&zmeta_path).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with("measurements/reflectance/r60m"));
    std::fs::write(&zmeta_path, doc.to_string()).unwrap();
    let (code, _, err) = convert(&src, &dest);
    assert_eq!(code, 1);
    assert!(
        err.contains("measurements/reflectance/r60m") && err.contains("missing"),
        "{err}"
    );
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["metadata"][".zattrs"]["stac_discovery"]["properties"]["product:type"] = "S03OLCEFR".into();
    std::fs::write(&zmeta_path, doc.to_string()).unwrap();
    let (code, _, err) = convert(&src, &dest);
    assert_eq!(code, 1);
    assert!(
        err.contains("S03OLCEFR") && err.contains("product:type"),
        "{err}"
    );
    // An S1 product type on an S2 layout: its polarisation groups are missing.
    doc["metadata"][".zattrs"]["stac_discovery"]["properties"]["product:type"] = "S01SIWGRH".into();
    std::fs::write(&zmeta_path, doc.to_string()).unwrap();
    let (code, _, err) = convert(&src, &dest);
    assert_eq!(code, 1);
    assert!(err.contains("no polarisation groups"), "{err}");
}
