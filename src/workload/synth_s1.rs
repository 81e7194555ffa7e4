//! Synthetic Sentinel-1 IW GRD products (EOPF Zarr v2) for tests and
//! benchmarks: one root group per polarisation (`…_VV`, `…_VH`), each with
//! `measurements/grd` (u2 amplitude in (azimuth_time, ground_range), chunked
//! like real products), its coordinates, `conditions/gcp` on a 10 × 21 line ×
//! pixel grid sampled from an exact side-looking swath (`gcp::Swath`, so
//! tests know the true position of every pixel), the other condition groups
//! and the quality groups, all tiny; `stac_discovery` with product type
//! `S01SIWGRH` and the `sar:*` / `sat:*` properties. Encoded as the real ones
//! (blosc-zstd level 3, bit shuffle), consolidated `.zmetadata` written last.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::gcp::{Swath, spread};
use super::geo::Utm;
use super::io::Sink;
use super::synth::{Data, Gen, Report, Scene, Spec, f8, write_store};
use super::{Result, WorkloadError};

/// The product type EOPF gives IW GRD (high resolution) products.
pub const PRODUCT_TYPE: &str = "S01SIWGRH";
pub const POLARISATIONS: [&str; 2] = ["VV", "VH"];
pub const DEFAULT_ID: &str = "S1A_IW_GRDH_1SDV_20251008T052417_20251008T052442_061325_07A5C1_3F1B";

/// Size of the `grd` arrays and their chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct S1Size {
    pub lines: u64,
    pub pixels: u64,
    pub chunk_lines: u64,
    pub chunk_pixels: u64,
}

impl S1Size {
    /// full: the real array (16677 × 26064, chunks 2048 × 4096); small and
    /// tiny: a tenth and a fiftieth per side, over the same ground.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "full" => Self { lines: 16677, pixels: 26064, chunk_lines: 2048, chunk_pixels: 4096 },
            "small" => Self { lines: 1668, pixels: 2607, chunk_lines: 512, chunk_pixels: 1024 },
            "tiny" => Self { lines: 334, pixels: 522, chunk_lines: 128, chunk_pixels: 256 },
            other => {
                return Err(WorkloadError::Usage(format!(
                    "--size `{other}` for s1-grd: use full, small or tiny"
                )));
            }
        })
    }
}

/// The swath the product images: a descending pass over the Alps, 250 km
/// across and ~167 km along, whatever the array size (pixel spacing scales).
pub fn swath(size: &S1Size) -> Swath {
    Swath {
        start: (11.9, 47.9),
        heading: 191.0,
        az: 166_770.0 / size.lines as f64,
        rg: 260_640.0 / size.pixels as f64,
    }
}

/// The GCP grid's rows (lines) and columns (pixels), as real products space them.
pub fn gcp_axes(size: &S1Size) -> (Vec<u64>, Vec<u64>) {
    (spread(size.lines, 10), spread(size.pixels, 21))
}

fn dims(names: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("_ARRAY_DIMENSIONS".into(), json!(names));
    m
}

fn small(path: String, dtype: &'static str, shape: Vec<u64>, raw: Vec<u8>, dim_names: &[&str]) -> Spec {
    Spec {
        path,
        dtype,
        chunks: shape.clone(),
        shape,
        fill: Value::Null,
        compress: true,
        attrs: dims(dim_names),
        data: Data::Raw(raw),
    }
}

fn i8s(vals: impl Iterator<Item = i64>) -> Vec<u8> {
    vals.flat_map(i64::to_le_bytes).collect()
}
fn u4s(vals: impl Iterator<Item = u64>) -> Vec<u8> {
    vals.flat_map(|v| (v as u32).to_le_bytes()).collect()
}
fn f4s(vals: impl Iterator<Item = f64>) -> Vec<u8> {
    vals.flat_map(|v| (v as f32).to_le_bytes()).collect()
}

pub fn group_name(id: &str, pol: &str) -> String {
    let stem = id.replace("S1A_IW_GRDH_1SDV", "S01SIWGRD");
    format!("{stem}_{pol}")
}

fn stac_discovery(id: &str, size: &S1Size) -> Value {
    let s = swath(size);
    let corners: Vec<Value> = [(0.0, 0.0), (0.0, size.pixels as f64 - 1.0), (size.lines as f64 - 1.0, size.pixels as f64 - 1.0), (size.lines as f64 - 1.0, 0.0), (0.0, 0.0)]
        .iter()
        .map(|(l, p)| {
            let (x, y) = s.lonlat(*l, *p);
            json!([x, y])
        })
        .collect();
    let xs: Vec<f64> = corners.iter().filter_map(|c| c[0].as_f64()).collect();
    let ys: Vec<f64> = corners.iter().filter_map(|c| c[1].as_f64()).collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": id,
        "bbox": [min(&xs), min(&ys), max(&xs), max(&ys)],
        "geometry": {"type": "Polygon", "coordinates": [corners]},
        "properties": {
            "datetime": "2025-10-08T05:24:29.500000Z",
            "start_datetime": "2025-10-08T05:24:17.000000Z",
            "end_datetime": "2025-10-08T05:24:42.000000Z",
            "platform": "sentinel-1a",
            "constellation": "sentinel-1",
            "instruments": ["c-sar"],
            "product:type": PRODUCT_TYPE,
            "sar:instrument_mode": "IW",
            "sar:frequency_band": "C",
            "sar:center_frequency": 5.405,
            "sar:polarizations": POLARISATIONS,
            "sar:product_type": "GRD",
            "sar:resolution_range": 20.0,
            "sar:resolution_azimuth": 22.0,
            "sar:pixel_spacing_range": 10.0,
            "sar:pixel_spacing_azimuth": 10.0,
            "sar:looks_range": 5,
            "sar:looks_azimuth": 1,
            "sat:orbit_state": "descending",
            "sat:relative_orbit": 117,
            "sat:absolute_orbit": 61325,
            "processing:level": "L1",
        }
    })
}

/// Every array of one polarisation's group.
fn specs(root: &str, pol: u32, o: &S1Options) -> Vec<Spec> {
    let size = &o.size;
    let mut out = Vec::new();
    let m = format!("{root}/measurements");
    out.push(Spec {
        path: format!("{m}/grd"),
        dtype: "<u2",
        shape: vec![size.lines, size.pixels],
        chunks: vec![size.chunk_lines, size.chunk_pixels],
        fill: Value::Null,
        compress: true,
        attrs: {
            let mut a = dims(&["azimuth_time", "ground_range"]);
            a.insert("long_name".into(), json!("measurement digital number"));
            // As real products: xarray then reads line/pixel as coordinates.
            a.insert("coordinates".into(), json!("line pixel"));
            a
        },
        data: Data::Pixels { kind: if o.ramp { Gen::Ramp } else { Gen::Sar(pol) }, res: 10 },
    });
    // 2025-10-08T05:24:17Z in ns, one line every 1.5 ms (the azimuth time interval).
    let t0: i64 = 1_759_901_057_000_000_000;
    out.push(small(format!("{m}/azimuth_time"), "<i8", vec![size.lines], i8s((0..size.lines as i64).map(|l| t0 + l * 1_500_000)), &["azimuth_time"]));
    out.push(small(format!("{m}/ground_range"), "<f8", vec![size.pixels], f8((0..size.pixels).map(|p| p as f64 * swath(size).rg)), &["ground_range"]));
    out.push(small(format!("{m}/line"), "<i8", vec![size.lines], i8s(0..size.lines as i64), &["azimuth_time"]));
    out.push(small(format!("{m}/pixel"), "<i8", vec![size.pixels], i8s(0..size.pixels as i64), &["ground_range"]));

    let c = format!("{root}/conditions");
    let s = swath(size);
    let (lines, pixels) = gcp_axes(size);
    let n = (lines.len() * pixels.len()) as u64;
    let shape = vec![lines.len() as u64, pixels.len() as u64];
    let at = |f: &dyn Fn(u64, u64, (f64, f64)) -> f64| -> Vec<u8> {
        f8(lines.iter().flat_map(|&l| pixels.iter().map(move |&p| (l, p))).map(|(l, p)| f(l, p, s.lonlat(l as f64, p as f64))))
    };
    let gd = ["azimuth_time", "ground_range"];
    let incidence = |p: u64| 30.7 + 15.3 * p as f64 / (size.pixels - 1) as f64;
    let grids: [(&str, Vec<u8>); 5] = [
        ("longitude", at(&|_, _, ll| ll.0)),
        ("latitude", at(&|_, _, ll| ll.1)),
        ("height", at(&|l, p, _| 400.0 + ((l + p) % 97) as f64)),
        ("incidence_angle", at(&|_, p, _| incidence(p))),
        ("elevation_angle", at(&|_, p, _| incidence(p) - 3.4)),
    ];
    for (name, raw) in grids {
        let mut spec = small(format!("{c}/gcp/{name}"), "<f8", shape.clone(), raw, &gd);
        spec.attrs.insert("coordinates".into(), json!("line pixel"));
        out.push(spec);
    }
    out.push(small(format!("{c}/gcp/line"), "<u4", vec![lines.len() as u64], u4s(lines.iter().copied()), &["azimuth_time"]));
    out.push(small(format!("{c}/gcp/pixel"), "<u4", vec![pixels.len() as u64], u4s(pixels.iter().copied()), &["ground_range"]));
    for g in ["antenna_pattern", "attitude", "azimuth_fm_rate", "coordinate_conversion", "doppler_centroid", "orbit", "reference_replica", "replica", "terrain_height"] {
        out.push(small(format!("{c}/{g}/azimuth_time"), "<i8", vec![11], i8s((0..11).map(|i| t0 + i * 2_500_000_000)), &["azimuth_time"]));
        out.push(small(format!("{c}/{g}/values"), "<f8", vec![11], f8((0..11).map(|i| f64::from(i) * 0.5 + n as f64 * 1e-3)), &["azimuth_time"]));
    }
    let q = format!("{root}/quality");
    let cal = vec![27, 653];
    let cal_vals = |k: f64| f4s((0..27 * 653).map(move |i| k * (1.0 + (i % 653) as f64 / 653.0)));
    for (name, k) in [("sigma_nought", 520.0), ("beta_nought", 475.0), ("gamma", 610.0), ("dn", 1.0)] {
        out.push(small(format!("{q}/calibration/{name}"), "<f4", cal.clone(), cal_vals(k), &["azimuth_time", "ground_range"]));
    }
    for g in ["noise", "noise_azimuth", "noise_range"] {
        out.push(small(format!("{q}/{g}/noise_lut"), "<f4", vec![27, 40], f4s((0..27 * 40).map(|i| 10.0 + (i % 40) as f64)), &["azimuth_time", "ground_range"]));
    }
    out
}

#[derive(Debug, Clone)]
pub struct S1Options {
    pub size: S1Size,
    pub id: String,
    /// `grd` = 1 + line + 2·pixel instead of SAR amplitudes (checks a warp:
    /// every value says where it came from).
    pub ramp: bool,
}

/// Write the product to `sink`.
pub fn generate(sink: &dyn Sink, o: &S1Options) -> Result<Report> {
    let started = std::time::Instant::now();
    let sd = stac_discovery(&o.id, &o.size);
    let mut group_attrs = BTreeMap::new();
    let mut root = Map::new();
    root.insert("stac_discovery".into(), sd.clone());
    root.insert("other_metadata".into(), json!({"product_type": PRODUCT_TYPE, "polarisations": POLARISATIONS}));
    group_attrs.insert(String::new(), root.clone());
    let mut all = Vec::new();
    for (i, pol) in POLARISATIONS.iter().enumerate() {
        let g = group_name(&o.id, pol);
        group_attrs.insert(g.clone(), root.clone());
        all.extend(specs(&g, i as u32, o));
    }
    // The scene only feeds the pixel generator (terrain, noise); S1 pixels are
    // addressed by (line, pixel), the UTM frame plays no part.
    let scene = Scene { utm: Utm { zone: 32, north: true }, x0: 0.0, y0: 0.0, extent: o.size.pixels as f64 * 10.0 };
    write_store(sink, &all, &scene, &group_attrs)?;
    let (objects, bytes) = sink.written();
    Ok(Report {
        path: sink.url(),
        product_type: PRODUCT_TYPE.into(),
        size: o.size.lines,
        objects,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::gcp::{GcpGrid, metres};
    use crate::workload::io::{Location, sink};

    /// A tiny product on disk: the real hierarchy, readable by zarrs, GCPs
    /// that georeference (through the model) to where the swath puts them,
    /// and amplitudes that look like SAR.
    #[test]
    fn tiny_product_has_the_hierarchy_and_gcps_that_georeference() {
        let dir = std::env::temp_dir().join(format!("s1-synth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(format!("{DEFAULT_ID}.zarr"));
        let loc = Location::parse(&path.display().to_string()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let out = rt.block_on(sink(&loc, &Default::default())).unwrap();
        let size = S1Size::from_name("tiny").unwrap();
        let r = generate(out.as_ref(), &S1Options { size, id: DEFAULT_ID.into(), ramp: false }).unwrap();
        assert_eq!(r.product_type, "S01SIWGRH");
        let meta: Value = serde_json::from_slice(&std::fs::read(path.join(".zmetadata")).unwrap()).unwrap();
        let m = &meta["metadata"];
        for pol in POLARISATIONS {
            let g = group_name(DEFAULT_ID, pol);
            assert_eq!(m[format!("{g}/.zattrs")]["stac_discovery"]["properties"]["product:type"], "S01SIWGRH");
            let grd = &m[format!("{g}/measurements/grd/.zarray")];
            assert_eq!(grd["shape"], json!([334, 522]));
            assert_eq!(grd["chunks"], json!([128, 256]));
            assert_eq!(grd["dtype"], "<u2");
            for a in ["latitude", "longitude", "height", "incidence_angle", "elevation_angle"] {
                assert_eq!(m[format!("{g}/conditions/gcp/{a}/.zarray")]["shape"], json!([10, 21]), "{a}");
            }
            assert!(m.get(format!("{g}/quality/calibration/sigma_nought/.zarray")).is_some());
            assert!(m.get(format!("{g}/conditions/orbit/.zgroup")).is_some());
        }
        // Read back with zarrs (Zarr v2 on disk): the GCPs and a chunk of grd.
        let store = std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(&path).unwrap());
        let g = group_name(DEFAULT_ID, "VV");
        let read = |p: &str| zarrs::array::Array::open(store.clone(), &format!("/{g}/{p}")).unwrap();
        fn all<T: zarrs::array::ElementOwned>(a: &zarrs::array::Array<zarrs::filesystem::FilesystemStore>) -> Vec<T> {
            a.retrieve_array_subset::<Vec<T>>(&a.subset_all()).unwrap()
        }
        let lon: Vec<f64> = all(&read("conditions/gcp/longitude"));
        let lat: Vec<f64> = all(&read("conditions/gcp/latitude"));
        let line: Vec<u32> = all(&read("conditions/gcp/line"));
        let pixel: Vec<u32> = all(&read("conditions/gcp/pixel"));
        let grid = GcpGrid::new(line.iter().map(|&v| f64::from(v)).collect(), pixel.iter().map(|&v| f64::from(v)).collect(), lon, lat).unwrap();
        let s = swath(&size);
        let e = metres(grid.lonlat(200.5, 300.5), s.lonlat(200.5, 300.5));
        assert!(e < 1.5, "the GCPs georeference pixel (200.5, 300.5) within {e} m");
        let grd = read("measurements/grd");
        let px: Vec<u16> = grd.retrieve_chunk::<Vec<u16>>(&[0, 0]).unwrap();
        let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / px.len() as f64;
        let zeros = px.iter().filter(|&&v| v == 0).count();
        assert!((50.0..400.0).contains(&mean), "VV amplitude mean {mean}");
        assert!(zeros < px.len() / 50, "speckle, not a blank image: {zeros} zeros");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_are_named() {
        assert_eq!(S1Size::from_name("full").unwrap().pixels, 26064);
        assert!(S1Size::from_name("huge").unwrap_err().to_string().contains("full, small or tiny"));
    }
}
