//! Sentinel-1 GRD conversion without a lab: a synthetic product whose `grd`
//! values encode their own position (1 + line + 2·pixel) and whose GCPs are
//! sampled from an exact swath → `workload convert` (the real binary) → read
//! back with zarrs (an independent Zarr v3 reader). Checked against the exact
//! geometry, not against our own model: shape and transform, values at the
//! GCPs' positions, no data outside the swath, nodata-aware pyramid means;
//! and bad input (no GCPs, mismatched polarisations, a truncated chunk).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::provisioner as run;

use provisioner::workload::gcp::Swath;
use provisioner::workload::geo::Utm;
use provisioner::workload::synth_s1::{S1Size, group_name, swath};
use serde_json::Value;
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

const ID: &str = "S1A_IW_GRDH_1SDV_20251008T052417_20251008T052442_061325_07A5C1_3F1B";

fn synth(dir: &Path, size: &str) -> PathBuf {
    let p = dir.join(format!("{ID}.zarr"));
    let (code, _, err) = run(&[
        "workload", "synth", "--product", "s1-grd", "--size", size, "--ramp", "--out",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    p
}

fn convert(src: &Path, dest: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec![
        "workload", "convert", "--source", src.to_str().unwrap(), "--dest",
        dest.to_str().unwrap(), "--collection", "c", "-o", "json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    (code, serde_json::from_str(&out).unwrap_or(Value::Null), err)
}

fn open(store: &Path, path: &str) -> Array<FilesystemStore> {
    let s = Arc::new(FilesystemStore::new(store).unwrap());
    Array::open(s, path).unwrap_or_else(|e| panic!("zarrs cannot open {path}: {e}"))
}

fn read<T: zarrs::array::ElementOwned>(store: &Path, path: &str) -> (Vec<T>, Vec<u64>) {
    let a = open(store, path);
    let shape = a.shape().to_vec();
    let v = a
        .retrieve_array_subset(&ArraySubset::new_with_shape(shape.clone()))
        .unwrap_or_else(|e| panic!("zarrs cannot read {path}: {e}"));
    (v, shape)
}

fn attrs(store: &Path, group: &str) -> Value {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(store.join(group).join("zarr.json")).unwrap()).unwrap();
    doc["attributes"].clone()
}

/// The exact (line, pixel) the swath images at (lon, lat): Newton's method on
/// the swath itself (not on the converter's GCP model).
fn exact_inverse(s: &Swath, lon: f64, lat: f64, start: (f64, f64)) -> (f64, f64) {
    let (mut l, mut p) = start;
    for _ in 0..50 {
        let (x, y) = s.lonlat(l, p);
        let (xl, yl) = s.lonlat(l + 0.5, p);
        let (xp, yp) = s.lonlat(l, p + 0.5);
        let (a, b, c, d) = ((xl - x) / 0.5, (xp - x) / 0.5, (yl - y) / 0.5, (yp - y) / 0.5);
        let det = a * d - b * c;
        let (fx, fy) = (x - lon, y - lat);
        let (dl, dp) = ((d * fx - b * fy) / det, (a * fy - c * fx) / det);
        l -= dl;
        p -= dp;
        if dl.abs() < 1e-7 && dp.abs() < 1e-7 {
            break;
        }
    }
    (l, p)
}

struct Level {
    grd: Vec<u16>,
    h: usize,
    w: usize,
    /// rasterio order: a, b, c, d, e, f.
    t: [f64; 6],
}

fn level(store: &Path, group: &str) -> Level {
    let (grd, shape) = read::<u16>(store, &format!("/{group}/grd"));
    let t: Vec<f64> = attrs(store, group)["spatial:transform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    Level { grd, h: shape[0] as usize, w: shape[1] as usize, t: t.try_into().unwrap() }
}

/// For every GCP inside the output: the output pixel holding it, whose centre's
/// exact source position gives the ramp value it must hold. Returns (checked, worst |error|).
fn check_gcps(
    lv: &Level,
    s: &Swath,
    size: &S1Size,
    gcps: &[(f64, f64, f64, f64)],
    to_grid: &dyn Fn(f64, f64) -> (f64, f64),
    to_lonlat: &dyn Fn(f64, f64) -> (f64, f64),
) -> (usize, f64) {
    let (mut n, mut worst) = (0, 0.0f64);
    for &(line, pixel, lon, lat) in gcps {
        let (x, y) = to_grid(lon, lat);
        let col = ((x - lv.t[2]) / lv.t[0]).floor();
        let row = ((y - lv.t[5]) / lv.t[4]).floor();
        if col < 0.0 || row < 0.0 || col >= lv.w as f64 || row >= lv.h as f64 {
            continue;
        }
        let (cx, cy) = (lv.t[2] + (col + 0.5) * lv.t[0], lv.t[5] + (row + 0.5) * lv.t[4]);
        let (clon, clat) = to_lonlat(cx, cy);
        let (l, p) = exact_inverse(s, clon, clat, (line, pixel));
        // Only centres inside the image by a pixel: the edge is where clamping starts.
        if l < 0.0 || p < 0.0 || l > (size.lines - 2) as f64 || p > (size.pixels - 2) as f64 {
            continue;
        }
        let v = f64::from(lv.grd[row as usize * lv.w + col as usize]);
        worst = worst.max((v - (1.0 + l + 2.0 * p)).abs());
        n += 1;
    }
    (n, worst)
}

fn gcps(src: &Path, group: &str) -> Vec<(f64, f64, f64, f64)> {
    let (lat, _) = read::<f64>(src, &format!("/{group}/conditions/gcp/latitude"));
    let (lon, _) = read::<f64>(src, &format!("/{group}/conditions/gcp/longitude"));
    let (lines, _) = read::<u32>(src, &format!("/{group}/conditions/gcp/line"));
    let (pixels, _) = read::<u32>(src, &format!("/{group}/conditions/gcp/pixel"));
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        for (j, p) in pixels.iter().enumerate() {
            let k = i * pixels.len() + j;
            out.push((f64::from(*l), f64::from(*p), lon[k], lat[k]));
        }
    }
    out
}

#[test]
fn s1_grd_converts_georeferenced_and_reads_back_with_zarrs() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), "small");
    let size = S1Size::from_name("small").unwrap();
    let s = swath(&size);
    let dest = dir.path().join("out");
    let (code, report, err) = convert(&src, &dest, &[]);
    assert_eq!(code, 0, "{err}");
    let store = dest.join(format!("c/{ID}.zarr"));
    assert_eq!(report["product_type"], "S01SIWGRH");
    assert_eq!(report["epsg"], 4326);
    // 2 polarisations × 4 × 3 chunks of 512 × 1024, each fetched once.
    assert_eq!(report["source_chunks"], 24);
    assert_eq!(report["source_chunk_reads"], report["source_chunks"], "{report}");
    // The bounds are the swath's (its corners), not the tile-padded grid's.
    let corners: Vec<(f64, f64)> = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]
        .iter()
        .map(|(a, b)| s.lonlat(a * (size.lines - 1) as f64, b * (size.pixels - 1) as f64))
        .collect();
    let want = [
        corners.iter().map(|c| c.0).fold(f64::MAX, f64::min),
        corners.iter().map(|c| c.1).fold(f64::MAX, f64::min),
        corners.iter().map(|c| c.0).fold(f64::MIN, f64::max),
        corners.iter().map(|c| c.1).fold(f64::MIN, f64::max),
    ];
    for (i, w) in want.iter().enumerate() {
        let got = report["bbox_4326"][i].as_f64().unwrap();
        assert!((got - w).abs() < 0.01, "bbox[{i}] {got} vs the swath's {w}");
    }

    let vv = group_name(ID, "VV");
    let ms = attrs(&store, &format!("{vv}/measurements"));
    let layout = ms["multiscales"]["layout"].as_array().unwrap();
    let names: Vec<&str> = layout.iter().map(|l| l["asset"].as_str().unwrap()).collect();
    assert_eq!(names, ["r100m", "r200m", "r400m"], "levels named by ground spacing");
    assert_eq!(layout[1]["derived_from"], "r100m");
    assert_eq!(ms["proj:code"], "EPSG:4326");

    // The native level: transform consistent with its x/y, square pixels, whole tiles.
    let native = format!("{vv}/measurements/r100m");
    let lv = level(&store, &native);
    assert_eq!(lv.t[0], -lv.t[4], "square pixels");
    assert!(lv.h.is_multiple_of(256) && lv.w.is_multiple_of(256), "{}×{}", lv.h, lv.w);
    let (x, _) = read::<f64>(&store, &format!("/{native}/x"));
    let (y, _) = read::<f64>(&store, &format!("/{native}/y"));
    assert!((x[0] - (lv.t[2] + lv.t[0] / 2.0)).abs() < 1e-9 && (y[3] - (lv.t[5] + 3.5 * lv.t[4])).abs() < 1e-9);
    let sr = open(&store, &format!("/{native}/spatial_ref"));
    let sr_attrs = sr.attributes();
    assert!(sr_attrs["crs_wkt"].as_str().unwrap().contains(r#"AUTHORITY["EPSG","4326"]"#));
    assert_eq!(sr_attrs["grid_mapping_name"], "latitude_longitude");

    // Values at the GCPs, against the exact swath.
    let g = gcps(&src, &vv);
    let (n, worst) = check_gcps(&lv, &s, &size, &g, &|lon, lat| (lon, lat), &|x, y| (x, y));
    println!("EPSG:4326: {n} of {} GCPs inside the image checked, worst |DN − truth| = {worst:.3}", g.len());
    // Rounding (0.5 DN) plus, at 3 DN per pixel, the model's error (≤ 1.04 m = 0.01 px of
    // 100 m) and the 64-px lattice's (≤ 0.05 px here: this product's pixels are 10× the real
    // ones, so its swath bends 10× more per pixel; 1e-3 px on the real geometry).
    assert!(n >= 150, "most GCPs checked: {n}");
    assert!(worst <= 0.75, "{worst}");

    // No data outside the swath; data everywhere inside it (sampled every 7th pixel).
    let (mut outside, mut inside) = (0, 0);
    for row in (0..lv.h).step_by(7) {
        for col in (0..lv.w).step_by(7) {
            let lon = lv.t[2] + (col as f64 + 0.5) * lv.t[0];
            let lat = lv.t[5] + (row as f64 + 0.5) * lv.t[4];
            let (l, p) = exact_inverse(&s, lon, lat, (size.lines as f64 / 2.0, size.pixels as f64 / 2.0));
            let v = lv.grd[row * lv.w + col];
            let (lmax, pmax) = (size.lines as f64 - 0.5, size.pixels as f64 - 0.5);
            if l < -0.51 || p < -0.51 || l > lmax + 0.01 || p > pmax + 0.01 {
                assert_eq!(v, 0, "no data outside the swath at ({row}, {col}): line {l:.2}, pixel {p:.2}");
                outside += 1;
            } else if l > 0.6 && p > 0.6 && l < lmax - 1.1 && p < pmax - 1.1 {
                assert_ne!(v, 0, "data inside the swath at ({row}, {col})");
                inside += 1;
            }
        }
    }
    assert!(outside > 1000 && inside > 1000, "{outside} outside, {inside} inside");

    // The pyramid: each level the 2 × 2 mean of the level below over pixels with data.
    let mut below = lv;
    for name in ["r200m", "r400m"] {
        let up = level(&store, &format!("{vv}/measurements/{name}"));
        assert_eq!((up.h, up.w), (below.h.div_ceil(2), below.w.div_ceil(2)));
        assert!((up.t[0] - 2.0 * below.t[0]).abs() < 1e-15 && up.t[2] == below.t[2] && up.t[5] == below.t[5]);
        for r in 0..up.h {
            for c in 0..up.w {
                let vals: Vec<u32> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .filter(|(dy, dx)| 2 * r + dy < below.h && 2 * c + dx < below.w)
                    .map(|(dy, dx)| u32::from(below.grd[(2 * r + dy) * below.w + 2 * c + dx]))
                    .filter(|v| *v != 0)
                    .collect();
                let want = if vals.is_empty() {
                    0
                } else {
                    let n = vals.len() as u32;
                    ((vals.iter().sum::<u32>() + n / 2) / n).max(1) as u16
                };
                assert_eq!(up.grd[r * up.w + c], want, "{name} ({r}, {c})");
            }
        }
        below = up;
    }

    // Conditions and quality copied, values unchanged.
    let (src_inc, _) = read::<f64>(&src, &format!("/{vv}/conditions/gcp/incidence_angle"));
    let (out_inc, _) = read::<f64>(&store, &format!("/{vv}/conditions/gcp/incidence_angle"));
    assert_eq!(src_inc, out_inc);
    let (cal, _) = read::<f32>(&store, &format!("/{vv}/quality/calibration/sigma_nought"));
    assert_eq!(cal.len(), 27 * 653);

    // UTM by option: metres, the zone of the scene, the same values at the GCPs.
    let dest_utm = dir.path().join("utm");
    let (code, report, err) = convert(&src, &dest_utm, &["--crs", "utm"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["epsg"], 32632);
    let store = dest_utm.join(format!("c/{ID}.zarr"));
    let lv = level(&store, &native);
    assert!(lv.t[0] > 70.0 && lv.t[0] < 160.0, "{} m pixels", lv.t[0]);
    let z = Utm { zone: 32, north: true };
    let (n, worst) = check_gcps(&lv, &s, &size, &g, &|lon, lat| z.from_lonlat(lon, lat), &|x, y| z.to_lonlat(x, y));
    println!("EPSG:32632: {n} GCPs checked, worst |DN − truth| = {worst:.3}");
    assert!(n >= 150 && worst <= 0.75, "{n} {worst}");
}

#[test]
fn bad_s1_products_fail_clearly_and_leave_no_complete_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), "tiny");
    let dest = dir.path().join("out");
    let store = dest.join(format!("c/{ID}.zarr"));
    let vv = group_name(ID, "VV");
    let vh = group_name(ID, "VH");
    let zmeta = src.join(".zmetadata");
    let text = std::fs::read_to_string(&zmeta).unwrap();

    // A truncated chunk is named; nothing complete is left; the rerun after repair converges.
    let chunk = src.join(format!("{vv}/measurements/grd/1.1"));
    let good = std::fs::read(&chunk).unwrap();
    std::fs::write(&chunk, &good[..good.len() / 3]).unwrap();
    let (code, _, err) = convert(&src, &dest, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("corrupt chunk") && err.contains(&format!("{vv}/measurements/grd/1.1")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!store.join("zarr.json").exists(), "a failed conversion must not look complete");
    std::fs::write(&chunk, &good).unwrap();
    let (code, _, err) = convert(&src, &dest, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(store.join("zarr.json").exists());

    // No GCPs in any polarisation.
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["metadata"].as_object_mut().unwrap().retain(|k, _| !k.contains("/conditions/gcp"));
    std::fs::write(&zmeta, doc.to_string()).unwrap();
    let (code, _, err) = convert(&src, &dest, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("conditions/gcp") && err.contains("ground control points"), "{err}");
    // Refused before writing anything: the previous complete output is untouched.
    let root = std::fs::read(store.join("zarr.json")).unwrap();

    assert_eq!(std::fs::read(store.join("zarr.json")).unwrap(), root);

    // GCPs missing in VH only: VV's serve both (as the reference does).
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["metadata"].as_object_mut().unwrap().retain(|k, _| !k.starts_with(&format!("{vh}/conditions/gcp")));
    std::fs::write(&zmeta, doc.to_string()).unwrap();
    let (code, _, err) = convert(&src, &dest, &[]);
    assert_eq!(code, 0, "{err}");

    // A GCP array missing from a group that has the others.
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["metadata"].as_object_mut().unwrap().remove(&format!("{vv}/conditions/gcp/line/.zarray"));
    std::fs::write(&zmeta, doc.to_string()).unwrap();
    let (code, _, err) = convert(&src, &dest, &[]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{vv}/conditions/gcp")) && err.contains("`line` is missing"), "{err}");

    // Polarisations of different shapes.
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["metadata"][format!("{vh}/measurements/grd/.zarray")]["shape"] = serde_json::json!([300, 522]);
    std::fs::write(&zmeta, doc.to_string()).unwrap();
    let (code, _, err) = convert(&src, &dest, &[]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{vh}/measurements/grd")) && err.contains("differs"), "{err}");

    // A CRS that is not one.
    std::fs::write(&zmeta, &text).unwrap();
    let (code, _, err) = convert(&src, &dest, &["--crs", "EPSG:3857"]);
    assert_eq!(code, 1);
    assert!(err.contains("EPSG:3857") || err.contains("3857"), "{err}");
}
