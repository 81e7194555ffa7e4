//! Synthetic EOPF Sentinel-2 products for tests and benchmarks: the real L2A /
//! L1C hierarchy, dtypes, attributes and Zarr v2 encoding (blosc-zstd level 3
//! with bit shuffle, consolidated `.zmetadata`), filled with deterministic
//! pixels that compress like real scenes: smooth terrain plus 7 bits of noise
//! in the reflectance, a no-data wedge (DN 0) along the swath edge, mostly-zero
//! masks. `.zmetadata` is written last: a product without it is incomplete.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::eopf::{Dtype, ProductType, grid_indices};
use super::geo::Utm;
use super::io::Sink;
use super::zarr3::{Encoder, to_vec};
use super::{Result, WorkloadError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Chunking {
    /// r10m 1830², r20m 915², r60m 305² (Jan 2025 L1C samples): many small chunks.
    Small,
    /// r10m 5490², everything else one chunk per array (2025 L2A products).
    Real,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub product: ProductType,
    /// Edge of the r10m grid in pixels (10980 for a real tile); a multiple of 6.
    pub size: u64,
    pub chunking: Chunking,
    pub id: String,
}

impl Options {
    pub fn size_from(name: &str) -> Result<u64> {
        let n = match name {
            "full" => 10980,
            "small" => 1830,
            "tiny" => 366,
            other => other.parse().map_err(|_| {
                WorkloadError::Usage(format!(
                    "--size `{other}`: use full, small, tiny or a pixel count"
                ))
            })?,
        };
        check_size(n)
    }
    pub fn default_id(p: ProductType) -> &'static str {
        match p {
            ProductType::L2A => "S2A_MSIL2A_20251008T100041_N0511_R122_T32TQM_20251008T122613",
            ProductType::L1C => "S2B_MSIL1C_20250113T103309_N0511_R108_T32TLQ_20250113T122458",
            ProductType::S1Grd => super::synth_s1::DEFAULT_ID,
        }
    }
}

/// The r10m edge must divide into the r20m and r60m grids and leave a pyramid.
fn check_size(n: u64) -> Result<u64> {
    if n < 72 || !n.is_multiple_of(6) {
        return Err(WorkloadError::Usage(format!(
            "--size {n}: the r10m edge must be a multiple of 6 and at least 72"
        )));
    }
    Ok(n)
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub path: String,
    /// `stac_discovery.properties.product:type` of what was written.
    pub product_type: String,
    pub size: u64,
    pub objects: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Pixel generators. Values are functions of the ground position, so the
/// resolutions of one band look alike.
#[derive(Debug, Clone, Copy)]
pub(super) enum Gen {
    Reflectance(u32),
    Aot,
    Wvp,
    QualityMask,
    Detector,
    Scl,
    Probability(u32),
    Tci,
    Zero,
    /// Sentinel-1 GRD amplitude (DN) of polarisation 0 (VV) or 1 (VH):
    /// backscatter following the terrain, times exponential speckle.
    Sar(u32),
    /// 1 + row + 2·col (capped at u16::MAX): a value that says where it was
    /// read, for checking a warp.
    Ramp,
}

pub(super) struct Spec {
    pub(super) path: String,
    pub(super) dtype: &'static str,
    pub(super) shape: Vec<u64>,
    pub(super) chunks: Vec<u64>,
    pub(super) fill: Value,
    pub(super) compress: bool,
    pub(super) attrs: Map<String, Value>,
    pub(super) data: Data,
}

pub(super) enum Data {
    Pixels { kind: Gen, res: u64 },
    Raw(Vec<u8>),
}

pub(super) struct Scene {
    pub(super) utm: Utm,
    pub(super) x0: f64,
    pub(super) y0: f64,
    /// Ground extent of the tile in metres.
    pub(super) extent: f64,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Scene {
    fn terrain(gx: f64, gy: f64) -> f64 {
        900.0 * (gx / 5300.0).sin()
            + 700.0 * (gy / 7100.0).cos()
            + (gx / 1900.0 + 0.5).sin() * 400.0 * (gy / 2300.0).sin()
    }
    fn nodata(&self, gx: f64, gy: f64) -> bool {
        gx + 0.4 * gy < 0.12 * self.extent
    }
    /// One pixel; (row, col) at `res` metres; `plane` for 3-D arrays.
    fn value(&self, g: Gen, res: u64, plane: u64, row: u64, col: u64) -> u64 {
        let r = res as f64;
        let (gx, gy) = ((col as f64 + 0.5) * r, (row as f64 + 0.5) * r);
        let t = Self::terrain(gx, gy);
        let h = mix((row << 32) ^ col ^ (res << 56) ^ (plane << 48));
        let nod = self.nodata(gx, gy);
        match g {
            Gen::Reflectance(b) => {
                if nod {
                    0
                } else {
                    (3000.0 + 180.0 * f64::from(b) + t) as u64 + (h & 0x7F)
                }
            }
            Gen::Aot => (120.0 + t / 40.0) as u64 + (h & 3),
            Gen::Wvp => (1800.0 + t / 4.0) as u64 + (h & 7),
            Gen::QualityMask => {
                if nod {
                    32
                } else if h & 0xFFFF == 0 {
                    8
                } else {
                    0
                }
            }
            Gen::Detector => {
                if nod {
                    0
                } else {
                    1 + ((gx + 0.2 * gy) / (self.extent / 11.5)) as u64 % 12
                }
            }
            Gen::Scl => {
                if nod {
                    0
                } else {
                    [4u64, 5, 4, 6, 8, 9, 3, 4, 7, 10, 11, 5]
                        [((t + 2000.0) / 340.0).clamp(0.0, 11.0) as usize]
                }
            }
            Gen::Probability(s) => (((t + 2000.0) / 40.0) as u64 + u64::from(s) * 7) % 101,
            Gen::Tci => {
                if nod {
                    0
                } else {
                    (((3000.0 + 200.0 * plane as f64 + t) / 25.0) as u64).min(255)
                }
            }
            Gen::Zero => 0,
            Gen::Sar(pol) => {
                let sigma = 0.03 + 0.2 * ((t + 2000.0) / 4000.0).clamp(0.0, 1.0);
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let amp = (sigma * -u.ln()).sqrt() * if pol == 0 { 520.0 } else { 210.0 };
                (amp as u64).min(u64::from(u16::MAX))
            }
            Gen::Ramp => (1 + row + 2 * col).min(u64::from(u16::MAX)),
        }
    }
}

const L2A_WL: [(&str, f64); 12] = [
    ("b01", 442.7),
    ("b02", 492.7),
    ("b03", 559.8),
    ("b04", 664.6),
    ("b05", 704.1),
    ("b06", 740.5),
    ("b07", 782.8),
    ("b08", 832.8),
    ("b8a", 864.7),
    ("b09", 945.1),
    ("b11", 1613.7),
    ("b12", 2202.4),
];
const L1C_WL: [(&str, f64); 13] = [
    ("b01", 442.3),
    ("b02", 492.3),
    ("b03", 559.0),
    ("b04", 665.0),
    ("b05", 703.8),
    ("b06", 739.1),
    ("b07", 779.7),
    ("b08", 833.0),
    ("b8a", 864.0),
    ("b09", 943.2),
    ("b10", 1376.9),
    ("b11", 1610.4),
    ("b12", 2185.7),
];

fn band_index(b: &str) -> u32 {
    L1C_WL.iter().position(|(n, _)| *n == b).unwrap_or(0) as u32
}

/// The product's arrays: the real hierarchy at `o.size`.
fn specs(o: &Options, sc: &Scene) -> Vec<Spec> {
    let l2a = o.product == ProductType::L2A;
    let n10 = o.size;
    let res_n = |res: u64| n10 * 10 / res;
    let chunk = |res: u64, whole_in_real: bool| -> u64 {
        let n = res_n(res);
        match o.chunking {
            Chunking::Small => n.div_ceil(6),
            Chunking::Real if res == 10 && !whole_in_real => n / 2,
            Chunking::Real => n,
        }
    };
    let mut out = Vec::new();
    let wkt = sc.utm.wkt();
    let proj = |res: u64| -> Map<String, Value> {
        let n = res_n(res);
        let r = res as f64;
        let mut m = Map::new();
        m.insert(
            "proj:bbox".into(),
            json!([sc.x0, sc.y0 - sc.extent, sc.x0 + sc.extent, sc.y0]),
        );
        m.insert("proj:epsg".into(), json!(sc.utm.epsg()));
        m.insert("proj:shape".into(), json!([n, n]));
        m.insert(
            "proj:transform".into(),
            json!([r, 0.0, sc.x0, 0.0, -r, sc.y0, 0.0, 0.0, 1.0]),
        );
        m.insert("proj:wkt2".into(), json!(wkt));
        m
    };
    let dims_attr = |m: &mut Map<String, Value>, dims: &[&str]| {
        m.insert("_ARRAY_DIMENSIONS".into(), json!(dims));
    };
    let coords = |out: &mut Vec<Spec>, group: &str, res: u64| {
        let n = res_n(res);
        let r = res as f64;
        for (name, start, step) in [("x", sc.x0 + r / 2.0, r), ("y", sc.y0 - r / 2.0, -r)] {
            let raw: Vec<u8> = (0..n)
                .flat_map(|i| ((start + step * i as f64) as i64).to_le_bytes())
                .collect();
            let mut attrs = Map::new();
            dims_attr(&mut attrs, &[name]);
            out.push(Spec {
                path: format!("{group}/{name}"),
                dtype: "<i8",
                shape: vec![n],
                chunks: vec![n],
                fill: Value::Null,
                compress: true,
                attrs,
                data: Data::Raw(raw),
            });
        }
    };
    let grid2d = |out: &mut Vec<Spec>,
                  path: String,
                  dtype: &'static str,
                  res: u64,
                  whole: bool,
                  fill: Value,
                  mut attrs: Map<String, Value>,
                  kind: Gen| {
        let n = res_n(res);
        let c = chunk(res, whole);
        attrs.extend(proj(res));
        dims_attr(&mut attrs, &["y", "x"]);
        out.push(Spec {
            path,
            dtype,
            shape: vec![n, n],
            chunks: vec![c, c],
            fill,
            compress: true,
            attrs,
            data: Data::Pixels { kind, res },
        });
    };

    // measurements/reflectance
    let wl: Vec<(&str, f64)> = if l2a {
        L2A_WL.to_vec()
    } else {
        L1C_WL.to_vec()
    };
    let native: [(u64, &[&str]); 3] = [
        (10, &["b02", "b03", "b04", "b08"]),
        (20, &["b05", "b06", "b07", "b11", "b12", "b8a"]),
        (60, &["b01", "b09", "b10"]),
    ];
    let l2a_levels: [(u64, &[&str]); 3] = [
        (10, &["b02", "b03", "b04", "b08"]),
        (
            20,
            &[
                "b01", "b02", "b03", "b04", "b05", "b06", "b07", "b11", "b12", "b8a",
            ],
        ),
        (
            60,
            &[
                "b01", "b02", "b03", "b04", "b05", "b06", "b07", "b09", "b11", "b12", "b8a",
            ],
        ),
    ];
    let levels = if l2a { l2a_levels } else { native };
    for (res, bands) in levels {
        let group = format!("measurements/reflectance/r{res}m");
        for b in bands {
            let lambda = wl.iter().find(|(n, _)| n == b).map_or(0.0, |(_, l)| *l);
            let kind = if l2a { "BOA" } else { "TOA" };
            let long =
                format!("{kind} reflectance from MSI acquisition at spectral band {b} {lambda} nm");
            let mut a = Map::new();
            a.insert("add_offset".into(), json!(-0.1));
            a.insert("scale_factor".into(), json!(0.0001));
            a.insert("dtype".into(), json!("<u2"));
            a.insert("fill_value".into(), json!(0));
            a.insert("units".into(), json!("digital_counts"));
            a.insert("valid_min".into(), json!(1));
            a.insert("valid_max".into(), json!(65535));
            a.insert("long_name".into(), json!(long));
            a.insert(
                "_eopf_attrs".into(),
                json!({"add_offset": -0.1, "coordinates": ["x", "y"], "dimensions": ["y", "x"], "dtype": "<u2", "eopf_is_masked": true,
                       "eopf_target_dtype": "<f8", "fill_value": 0, "long_name": long, "scale_factor": 0.0001, "units": "digital_counts"}),
            );
            grid2d(
                &mut out,
                format!("{group}/{b}"),
                "<u2",
                res,
                false,
                json!(0),
                a,
                Gen::Reflectance(band_index(b)),
            );
        }
        coords(&mut out, &group, res);
    }

    let eopf = |keys: Value| -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("_eopf_attrs".into(), keys);
        m
    };
    // quality
    let masks_attrs = |long: &str| -> Map<String, Value> {
        let mut m = eopf(
            json!({"coordinates": ["x", "y"], "dimensions": ["y", "x"], "dtype": "<u1", "long_name": long}),
        );
        m.insert("dtype".into(), json!("<u1"));
        m.insert("long_name".into(), json!(long));
        m
    };
    for (res, bands) in native {
        let group = format!("quality/mask/r{res}m");
        for b in bands {
            let mut a =
                masks_attrs("quality mask provided in the final reference frame (ground geometry)");
            a.insert("flag_masks".into(), json!([1, 2, 4, 8, 16, 32, 64, 128]));
            a.insert(
                "flag_meanings".into(),
                json!([
                    "ANC_LOST",
                    "ANC_DEG",
                    "MSI_LOST",
                    "MSI_DEG",
                    "QT_DEFECTIVE_PIXELS",
                    "QT_NODATA_PIXELS",
                    "QT_PARTIALLY_CORRECTED_PIXELS",
                    "QT_SATURATED_PIXELS_L1A"
                ]),
            );
            grid2d(
                &mut out,
                format!("{group}/{b}"),
                "|u1",
                res,
                true,
                Value::Null,
                a,
                Gen::QualityMask,
            );
        }
        coords(&mut out, &group, res);
        let group = format!("conditions/mask/detector_footprint/r{res}m");
        for b in bands {
            let a = masks_attrs(
                "detector footprint mask provided in the final reference frame (ground geometry). 0 = no detector, 1-12 = detector 1-12",
            );
            grid2d(
                &mut out,
                format!("{group}/{b}"),
                "|u1",
                res,
                true,
                Value::Null,
                a,
                Gen::Detector,
            );
        }
        coords(&mut out, &group, res);
    }
    if l2a {
        for res in [10, 20, 60] {
            let group = format!("quality/atmosphere/r{res}m");
            for (name, kind) in [("aot", Gen::Aot), ("wvp", Gen::Wvp)] {
                grid2d(
                    &mut out,
                    format!("{group}/{name}"),
                    "<u2",
                    res,
                    true,
                    Value::Null,
                    eopf(json!({"coordinates": ["x", "y"], "dimensions": ["y", "x"]})),
                    kind,
                );
            }
            coords(&mut out, &group, res);
        }
        let group = "quality/probability/r20m";
        for (i, name) in ["cld", "snw"].iter().enumerate() {
            let mut a = eopf(json!({"coordinates": ["x", "y", "band"], "dimensions": ["y", "x"]}));
            a.insert("coordinates".into(), json!("band"));
            grid2d(
                &mut out,
                format!("{group}/{name}"),
                "|u1",
                20,
                true,
                Value::Null,
                a,
                Gen::Probability(i as u32),
            );
        }
        let mut a = Map::new();
        dims_attr(&mut a, &[]);
        out.push(Spec {
            path: format!("{group}/band"),
            dtype: "<i8",
            shape: vec![],
            chunks: vec![],
            fill: Value::Null,
            compress: false,
            attrs: a,
            data: Data::Raw(1i64.to_le_bytes().to_vec()),
        });
        coords(&mut out, group, 20);
        for res in [20, 60] {
            let group = format!("conditions/mask/l2a_classification/r{res}m");
            grid2d(
                &mut out,
                format!("{group}/scl"),
                "|u1",
                res,
                true,
                Value::Null,
                eopf(json!({"coordinates": ["x", "y"], "dimensions": ["y", "x"]})),
                Gen::Scl,
            );
            coords(&mut out, &group, res);
        }
    }
    let group = "conditions/mask/l1c_classification/r60m";
    let mut a = masks_attrs(
        "cloud classification mask provided in the final reference frame (ground geometry)",
    );
    a.insert("flag_masks".into(), json!([1, 2, 4]));
    a.insert(
        "flag_meanings".into(),
        json!(["OPAQUE", "CIRRUS", "SNOW_ICE"]),
    );
    grid2d(
        &mut out,
        format!("{group}/b00"),
        "|u1",
        60,
        true,
        Value::Null,
        a,
        Gen::Zero,
    );
    coords(&mut out, group, 60);

    // quicklooks (dropped by the converter, but present in real products)
    let ql_levels: &[u64] = if l2a { &[10, 20, 60] } else { &[10] };
    for res in ql_levels {
        let group = format!(
            "quality/{}_quicklook/r{res}m",
            if l2a { "l2a" } else { "l1c" }
        );
        let n = res_n(*res);
        let c = chunk(*res, true);
        let mut a = proj(*res);
        dims_attr(&mut a, &["band", "y", "x"]);
        a.insert("long_name".into(), json!("TCI: True Color Image"));
        out.push(Spec {
            path: format!("{group}/tci"),
            dtype: "|u1",
            shape: vec![3, n, n],
            chunks: vec![if l2a { 3 } else { 1 }, c, c],
            fill: Value::Null,
            compress: true,
            attrs: a,
            data: Data::Pixels {
                kind: Gen::Tci,
                res: *res,
            },
        });
        let mut a = Map::new();
        dims_attr(&mut a, &["band"]);
        out.push(Spec {
            path: format!("{group}/band"),
            dtype: "<i8",
            shape: vec![3],
            chunks: vec![3],
            fill: Value::Null,
            compress: true,
            attrs: a,
            data: Data::Raw([1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        coords(&mut out, &group, *res);
    }

    geometry(&mut out, sc, l2a);
    meteorology(&mut out);
    out
}

pub(super) fn f8(vals: impl Iterator<Item = f64>) -> Vec<u8> {
    vals.flat_map(f64::to_le_bytes).collect()
}

fn utf32(words: &[&str], n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for w in words {
        let mut cps: Vec<u32> = w.chars().map(u32::from).collect();
        cps.resize(n, 0);
        out.extend(cps.iter().flat_map(|c| c.to_le_bytes()));
    }
    out
}

fn geometry(out: &mut Vec<Spec>, sc: &Scene, l2a: bool) {
    let g = "conditions/geometry";
    let arr = |path: &str,
               dtype: &'static str,
               shape: Vec<u64>,
               chunks: Vec<u64>,
               fill: Value,
               dims: &[&str],
               data: Vec<u8>| {
        let mut attrs = Map::new();
        attrs.insert("_ARRAY_DIMENSIONS".into(), json!(dims));
        if dtype == "<f8" && shape.len() > 1 {
            attrs.insert("_eopf_attrs".into(), json!({"coordinates": ["angle", "x", "y"], "dimensions": dims, "eopf_is_masked": true, "fill_value": "NaN"}));
        }
        Spec {
            path: format!("{g}/{path}"),
            dtype,
            shape,
            chunks,
            fill,
            compress: true,
            attrs,
            data: Data::Raw(data),
        }
    };
    let bands: Vec<&str> = L1C_WL.iter().map(|(b, _)| *b).collect();
    let ndet: u64 = if l2a { 6 } else { 7 };
    out.push(arr(
        "angle",
        "<U7",
        vec![2],
        vec![2],
        Value::Null,
        &["angle"],
        utf32(&["zenith", "azimuth"], 7),
    ));
    out.push(arr(
        "band",
        "<U3",
        vec![13],
        vec![13],
        Value::Null,
        &["band"],
        utf32(&bands, 3),
    ));
    out.push(arr(
        "detector",
        "<i8",
        vec![ndet],
        vec![ndet],
        Value::Null,
        &["detector"],
        (1..=ndet as i64).flat_map(i64::to_le_bytes).collect(),
    ));
    out.push(arr(
        "mean_sun_angles",
        "<f8",
        vec![2],
        vec![2],
        json!("NaN"),
        &["angle"],
        f8([49.3, 163.6].into_iter()),
    ));
    out.push(arr(
        "mean_viewing_incidence_angles",
        "<f8",
        vec![13, 2],
        vec![13, 2],
        json!("NaN"),
        &["band", "angle"],
        f8((0..26).map(|i| 5.0 + f64::from(i) * 0.5)),
    ));
    out.push(arr(
        "sun_angles",
        "<f8",
        vec![2, 23, 23],
        vec![2, 23, 23],
        json!("NaN"),
        &["angle", "y", "x"],
        f8((0..2 * 23 * 23).map(|i| 40.0 + f64::from(i % 529) * 0.01)),
    ));
    let n = 13 * ndet * 2 * 23 * 23;
    out.push(arr(
        "viewing_incidence_angles",
        "<f8",
        vec![13, ndet, 2, 23, 23],
        vec![7, ndet.div_ceil(2), 2, 23, 23],
        json!("NaN"),
        &["band", "detector", "angle", "y", "x"],
        f8((0..n).map(|i| {
            if i % 7 == 0 {
                f64::NAN
            } else {
                3.0 + (i % 1000) as f64 * 0.01
            }
        })),
    ));
    for (name, start, step) in [("x", sc.x0, 5000.0), ("y", sc.y0, -5000.0)] {
        out.push(arr(
            name,
            "<i8",
            vec![23],
            vec![23],
            Value::Null,
            &[name],
            (0..23)
                .flat_map(|i| ((start + step * f64::from(i)) as i64).to_le_bytes())
                .collect(),
        ));
    }
}

fn meteorology(out: &mut Vec<Spec>) {
    for (group, vars) in [
        (
            "conditions/meteorology/cams",
            &[
                "aod1240", "aod469", "aod550", "aod670", "aod865", "bcaod550", "duaod550",
                "omaod550", "ssaod550", "suaod550", "z",
            ][..],
        ),
        (
            "conditions/meteorology/ecmwf",
            &["msl", "r", "tco3", "tcwv", "u10", "v10"][..],
        ),
    ] {
        for (i, v) in vars.iter().enumerate() {
            let mut a = Map::new();
            a.insert("_ARRAY_DIMENSIONS".into(), json!(["latitude", "longitude"]));
            a.insert("GRIB_shortName".into(), json!(v));
            a.insert("GRIB_gridType".into(), json!("regular_ll"));
            a.insert(
                "coordinates".into(),
                json!("isobaricInhPa number step surface time valid_time"),
            );
            a.insert("long_name".into(), json!(format!("synthetic {v}")));
            a.insert("units".into(), json!("~"));
            let data: Vec<u8> = (0..81)
                .flat_map(|k| (0.1 + i as f32 * 0.01 + k as f32 * 0.001).to_le_bytes())
                .collect();
            out.push(Spec {
                path: format!("{group}/{v}"),
                dtype: "<f4",
                shape: vec![9, 9],
                chunks: vec![9, 9],
                fill: json!("NaN"),
                compress: true,
                attrs: a,
                data: Data::Raw(data),
            });
        }
        for (name, start) in [("latitude", 42.427), ("longitude", 11.431)] {
            let mut a = Map::new();
            a.insert("_ARRAY_DIMENSIONS".into(), json!([name]));
            a.insert(
                "units".into(),
                json!(if name == "latitude" {
                    "degrees_north"
                } else {
                    "degrees_east"
                }),
            );
            a.insert("standard_name".into(), json!(name));
            out.push(Spec {
                path: format!("{group}/{name}"),
                dtype: "<f8",
                shape: vec![9],
                chunks: vec![9],
                fill: json!("NaN"),
                compress: true,
                attrs: a,
                data: Data::Raw(f8((0..9).map(|k| start - f64::from(k) * 0.128))),
            });
        }
        for (name, dtype, raw, units) in [
            (
                "isobaricInhPa",
                "<f8",
                1000f64.to_le_bytes().to_vec(),
                "hPa",
            ),
            ("number", "<i8", 0i64.to_le_bytes().to_vec(), "1"),
            ("step", "<i8", 600i64.to_le_bytes().to_vec(), "minutes"),
            ("surface", "<f8", 0f64.to_le_bytes().to_vec(), "1"),
            (
                "time",
                "<i8",
                0i64.to_le_bytes().to_vec(),
                "days since 2025-10-08 00:00:00",
            ),
            (
                "valid_time",
                "<i8",
                0i64.to_le_bytes().to_vec(),
                "days since 2025-10-08 10:03:00",
            ),
        ] {
            let mut a = Map::new();
            a.insert("_ARRAY_DIMENSIONS".into(), json!([]));
            a.insert("units".into(), json!(units));
            if name.contains("time") {
                a.insert("calendar".into(), json!("proleptic_gregorian"));
            }
            let fill = if dtype == "<f8" {
                json!("NaN")
            } else {
                Value::Null
            };
            out.push(Spec {
                path: format!("{group}/{name}"),
                dtype,
                shape: vec![],
                chunks: vec![],
                fill,
                compress: false,
                attrs: a,
                data: Data::Raw(raw),
            });
        }
    }
}

fn root_attrs(o: &Options, sc: &Scene) -> Map<String, Value> {
    let l2a = o.product == ProductType::L2A;
    let bbox = [sc.x0, sc.y0 - sc.extent, sc.x0 + sc.extent, sc.y0];
    let ll = sc.utm.bbox_lonlat(bbox);
    let corners: Vec<Value> = [
        (bbox[0], bbox[3]),
        (bbox[2], bbox[3]),
        (bbox[2], bbox[1]),
        (bbox[0], bbox[1]),
        (bbox[0], bbox[3]),
    ]
    .iter()
    .map(|(x, y)| {
        let (lon, lat) = sc.utm.to_lonlat(*x, *y);
        json!([lon, lat])
    })
    .collect();
    let start = if l2a {
        "2025-10-08T10:00:41.024000+00:00"
    } else {
        "2025-01-13T10:33:09.024000+00:00"
    };
    let ptype = if l2a { "S02MSIL2A" } else { "S02MSIL1C" };
    let bands: Vec<Value> = L1C_WL
        .iter()
        .map(|(b, l)| json!({"name": b, "center_wavelength": l}))
        .collect();
    let mut m = Map::new();
    m.insert(
        "other_metadata".into(),
        json!({"horizontal_CRS_code": format!("EPSG:{}", sc.utm.epsg()), "horizontal_CRS_name": sc.utm.name(), "mean_sensing_time": start, "eopf_category": "eoproduct"}),
    );
    m.insert(
        "stac_discovery".into(),
        json!({
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": format!("{}.SAFE", o.id),
            "bbox": ll,
            "geometry": {"type": "Polygon", "coordinates": [corners]},
            "links": [{"href": "./.zattrs.json", "rel": "self", "type": "application/json"}],
            "assets": {},
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json", "https://stac-extensions.github.io/sat/v1.0.0/schema.json"],
            "properties": {
                "datetime": null,
                "start_datetime": start,
                "end_datetime": start,
                "constellation": "sentinel-2",
                "platform": if l2a { "sentinel-2a" } else { "sentinel-2b" },
                "instrument": "msi",
                "eo:cloud_cover": if l2a { 0.003839 } else { 0.887754 },
                "product:type": ptype,
                "processing:level": if l2a { "L2A" } else { "L1C" },
                "proj:epsg": sc.utm.epsg(),
                "proj:bbox": bbox,
                "sat:relative_orbit": if l2a { 122 } else { 108 },
                "bands": bands,
                "synthetic": true
            }
        }),
    );
    m
}

/// Write a synthetic product into `sink` (a folder or an S3 prefix).
pub fn generate(sink: &dyn Sink, o: &Options) -> Result<Report> {
    let started = std::time::Instant::now();
    check_size(o.size)?;
    let sc = match o.product {
        ProductType::L2A => Scene {
            utm: Utm {
                zone: 32,
                north: true,
            },
            x0: 699_960.0,
            y0: 4_700_040.0,
            extent: o.size as f64 * 10.0,
        },
        ProductType::L1C => Scene {
            utm: Utm {
                zone: 32,
                north: true,
            },
            x0: 300_000.0,
            y0: 5_000_040.0,
            extent: o.size as f64 * 10.0,
        },
        // Its own generator: a different hierarchy and geometry.
        ProductType::S1Grd => return Err(WorkloadError::Usage("Sentinel-1 GRD products are made by synth_s1::generate".into())),
    };
    let specs = specs(o, &sc);
    let mut group_attrs = BTreeMap::new();
    group_attrs.insert(String::new(), root_attrs(o, &sc));
    write_store(sink, &specs, &sc, &group_attrs)?;
    let (objects, bytes) = sink.written();
    Ok(Report {
        path: sink.url(),
        product_type: match o.product {
            ProductType::L2A => "S02MSIL2A",
            ProductType::L1C => "S02MSIL1C",
            ProductType::S1Grd => super::synth_s1::PRODUCT_TYPE,
        }
        .to_owned(),
        size: o.size,
        objects,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Write a Zarr v2 store: every array's chunks (in parallel), the groups
/// (with `group_attrs` by path, `""` the root), the arrays' metadata, and
/// `.zmetadata` last, so a product without it is known to be incomplete.
pub(super) fn write_store(
    sink: &dyn Sink,
    specs: &[Spec],
    sc: &Scene,
    group_attrs: &BTreeMap<String, Map<String, Value>>,
) -> Result<()> {
    sink.clear()?;
    let mut meta = Map::new();
    let mut groups: Vec<String> = vec![String::new()];
    for s in specs {
        let mut p = s.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            groups.push(parent.to_string());
            p = parent;
        }
    }
    groups.sort();
    groups.dedup();
    for g in &groups {
        let key = |leaf: &str| {
            if g.is_empty() {
                leaf.to_string()
            } else {
                format!("{g}/{leaf}")
            }
        };
        meta.insert(key(".zgroup"), json!({"zarr_format": 2}));
        let attrs = Value::Object(group_attrs.get(g).cloned().unwrap_or_default());
        meta.insert(key(".zattrs"), attrs);
    }
    specs
        .par_iter()
        .try_for_each(|s| write_array(sink, sc, s))?;
    for s in specs {
        let compressor = if s.compress {
            json!({"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2, "blocksize": 0})
        } else {
            Value::Null
        };
        meta.insert(
            format!("{}/.zarray", s.path),
            json!({"zarr_format": 2, "shape": s.shape, "chunks": s.chunks, "dtype": s.dtype, "fill_value": s.fill, "order": "C",
                   "compressor": compressor, "filters": null, "dimension_separator": "."}),
        );
        meta.insert(
            format!("{}/.zattrs", s.path),
            Value::Object(s.attrs.clone()),
        );
    }
    for (k, v) in &meta {
        sink.put(k, to_vec(v)?)?;
    }
    sink.flush()?;
    sink.put(
        ".zmetadata",
        to_vec(&json!({"metadata": meta, "zarr_consolidated_format": 1}))?,
    )?;
    sink.flush()?;
    Ok(())
}

fn write_array(sink: &dyn Sink, sc: &Scene, s: &Spec) -> Result<()> {
    let item = Dtype::parse(s.dtype)
        .ok_or_else(|| WorkloadError::Usage(format!("{}: dtype {}", s.path, s.dtype)))?
        .size();
    let enc = if s.compress {
        Some(Encoder::bitshuffle(item)?)
    } else {
        None
    };
    let encode = |raw: Vec<u8>| -> Result<Vec<u8>> {
        match &enc {
            Some(e) => e.encode(&raw),
            None => Ok(raw),
        }
    };
    let key = |idx: &[u64]| -> String {
        if idx.is_empty() {
            format!("{}/0", s.path)
        } else {
            format!(
                "{}/{}",
                s.path,
                idx.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
            )
        }
    };
    match &s.data {
        Data::Raw(raw) => {
            // Small arrays: one chunk unless the spec splits them (viewing angles).
            if s.chunks == s.shape {
                sink.put(&key(&vec![0; s.shape.len()]), encode(raw.clone())?)
            } else {
                write_nd_raw(sink, s, raw, item, &encode, &key)
            }
        }
        Data::Pixels { kind, res } => {
            let (planes, h, w) = match s.shape.as_slice() {
                [p, h, w] => (*p, *h, *w),
                [h, w] => (1, *h, *w),
                _ => {
                    return Err(WorkloadError::Usage(format!(
                        "{}: pixel arrays are 2-D or 3-D",
                        s.path
                    )));
                }
            };
            let (cp, ch, cw) = match s.chunks.as_slice() {
                [p, h, w] => (*p, *h, *w),
                [h, w] => (1, *h, *w),
                _ => return Err(WorkloadError::Usage(format!("{}: bad chunks", s.path))),
            };
            let idxs = grid_indices(&[planes.div_ceil(cp), h.div_ceil(ch), w.div_ceil(cw)]);
            idxs.par_iter().try_for_each(|i| {
                let (pi, r, c) = (i[0], i[1], i[2]);
                let mut raw = Vec::with_capacity((cp * ch * cw) as usize * item);
                for p in pi * cp..(pi + 1) * cp {
                    for row in r * ch..(r + 1) * ch {
                        for col in c * cw..(c + 1) * cw {
                            let v = if p < planes && row < h && col < w {
                                sc.value(*kind, *res, p, row, col)
                            } else {
                                0
                            };
                            raw.extend_from_slice(&v.to_le_bytes()[..item]);
                        }
                    }
                }
                let idx = if s.shape.len() == 3 {
                    vec![pi, r, c]
                } else {
                    vec![r, c]
                };
                sink.put(&key(&idx), encode(raw)?)
            })
        }
    }
}

/// Split a small N-D array held in memory into its chunks (edge chunks padded with zeros).
fn write_nd_raw(
    sink: &dyn Sink,
    s: &Spec,
    raw: &[u8],
    item: usize,
    encode: &dyn Fn(Vec<u8>) -> Result<Vec<u8>>,
    key: &dyn Fn(&[u64]) -> String,
) -> Result<()> {
    let grid: Vec<u64> = s
        .shape
        .iter()
        .zip(&s.chunks)
        .map(|(a, c)| a.div_ceil(*c))
        .collect();
    let within = grid_indices(&s.chunks);
    for idx in grid_indices(&grid) {
        let mut out = Vec::with_capacity(within.len() * item);
        for pos in &within {
            let global: Vec<u64> = idx
                .iter()
                .zip(pos)
                .zip(&s.chunks)
                .map(|((i, p), c)| i * c + p)
                .collect();
            if global.iter().zip(&s.shape).all(|(g, sh)| g < sh) {
                let flat = global
                    .iter()
                    .zip(&s.shape)
                    .fold(0u64, |acc, (g, sh)| acc * sh + g) as usize;
                out.extend_from_slice(&raw[flat * item..(flat + 1) * item]);
            } else {
                out.extend(std::iter::repeat_n(0u8, item));
            }
        }
        sink.put(&key(&idx), encode(out)?)?;
    }
    Ok(())
}
