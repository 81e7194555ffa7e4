//! EOPF → GeoZarr. `convert` dispatches on the product type; this file is the
//! Sentinel-2 pipeline (S2-optimised layout) and the pieces both pipelines
//! share: level metadata, multiscales, CF grid mapping, copied groups. The
//! Sentinel-1 pipeline is `convert_s1`.
//!
//! Order of work, chosen so each source chunk is read once and memory stays at
//! about one full-resolution band: r10m bands one by one (b08 also yields the
//! r20m/r60m b08 means), then r20m, then r60m (kept: it seeds the pyramid),
//! r120m/r360m/r720m from the level below, then every other leaf group copied,
//! then group metadata, consolidated metadata and, last, the root `zarr.json`.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Instant;

use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::eopf::{ArrayV2, Dtype, Product, ProductType, fill_f64, parent};
use super::geo::{Crs, Transform, Utm};
use super::io::Sink;
use super::zarr3::{
    self, NAN_FILL_ATTR, Tree, array_json, blosc_codec, bytes_codec, chunk_key, inner_chunk,
    shard_dim,
};
use super::{Result, WorkloadError};

pub const REFLECTANCE: &str = "measurements/reflectance";

/// Source levels and the pyramid above them: (name, factor from the level it derives from, that level).
const SOURCE_LEVELS: [(&str, u64); 3] = [("r10m", 1), ("r20m", 2), ("r60m", 6)];
const PYRAMID: [(&str, u64, &str); 3] = [
    ("r120m", 2, "r60m"),
    ("r360m", 3, "r120m"),
    ("r720m", 2, "r360m"),
];

#[derive(Debug, Clone)]
pub struct Options {
    /// Target inner chunk edge (the reference's `spatial_chunk`, 256 in production).
    pub spatial_chunk: u64,
    /// Output CRS of a Sentinel-1 product: `EPSG:4326` (default, like the
    /// reference), `utm` (the zone of the footprint's centre) or `EPSG:326zz/327zz`.
    /// Sentinel-2 keeps its own UTM grid.
    pub crs: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            spatial_chunk: 256,
            crs: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LevelReport {
    pub level: String,
    pub shape: [u64; 2],
    pub inner_chunk: u64,
    pub variables: Vec<String>,
    pub transform: [f64; 6],
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub output: String,
    pub product_type: String,
    pub epsg: u32,
    pub levels: Vec<LevelReport>,
    pub copied_arrays: usize,
    /// Chunks of the source's data arrays (S2: reflectance bands, S1: `grd`),
    /// and the fetches the conversion made of them: equal when every chunk was
    /// read once. (Small arrays may be read twice: S1's GCPs, for the model and
    /// for the copy.)
    pub source_chunks: u64,
    pub source_chunk_reads: u64,
    pub objects: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub bbox_4326: [f64; 4],
}

/// Per band of a source level: its name, the band if kept for the pyramid, and
/// the r20m/r60m b08 means taken from it.
type BandResult = (String, Option<Band>, Vec<(&'static str, Band)>);

/// A full-resolution float32 level variable kept for the next level.
struct Band {
    data: Vec<f32>,
    h: u64,
    w: u64,
}

/// One level of a multiscale group, as its metadata describes it.
pub(super) struct Level {
    pub(super) name: String,
    /// The level it is averaged from (None: the native level).
    pub(super) parent: Option<String>,
    pub(super) t: Transform,
    pub(super) h: u64,
    pub(super) w: u64,
    pub(super) vars: Vec<String>,
}

/// Convert any supported product: Sentinel-2 L1C/L2A or Sentinel-1 GRD.
pub fn convert(p: &Product, sink: &dyn Sink, opts: &Options, bar: &ProgressBar) -> Result<Report> {
    match p.product_type {
        ProductType::S1Grd => super::convert_s1::convert(p, sink, opts, bar),
        ProductType::L1C | ProductType::L2A => convert_s2(p, sink, opts, bar),
    }
}

/// The arrays a conversion reads every chunk of (for the codec floor).
pub fn read_plan(p: &Product) -> Vec<&ArrayV2> {
    let mut arrays = data_arrays(p);
    for g in copy_plan(p) {
        arrays.extend(p.arrays_in(&g));
    }
    arrays
}

/// The data arrays: what is resampled, and nearly all the bytes read.
pub fn data_arrays(p: &Product) -> Vec<&ArrayV2> {
    match p.product_type {
        ProductType::S1Grd => p
            .arrays
            .values()
            .filter(|a| super::convert_s1::is_grd(a))
            .collect(),
        _ => p
            .arrays
            .values()
            .filter(|a| a.path.starts_with(REFLECTANCE) && is_band(a))
            .collect(),
    }
}

/// How many chunks the data arrays have.
pub(super) fn source_chunks(p: &Product) -> u64 {
    data_arrays(p)
        .iter()
        .map(|a| a.grid().iter().product::<u64>())
        .sum()
}

fn convert_s2(p: &Product, sink: &dyn Sink, opts: &Options, bar: &ProgressBar) -> Result<Report> {
    let started = Instant::now();
    if let Some(c) = opts.crs.as_deref()
        && Crs::from_code(c).ok().map(Crs::epsg) != p.epsg
    {
        return Err(WorkloadError::Usage(format!(
            "--crs {c}: a Sentinel-2 product keeps its own grid (EPSG:{}); --crs is for Sentinel-1",
            p.epsg.unwrap_or(0)
        )));
    }
    let epsg = p.epsg.ok_or_else(|| {
        WorkloadError::product(p.reader.describe(".zattrs"), "no CRS found for the Sentinel-2 grids")
    })?;
    let utm = Crs::Utm(Utm::from_epsg(epsg)?);
    let removed = sink.clear()?;
    if removed > 0 {
        tracing::info!(output = %sink.url(), "removed the previous output");
    }
    let tree = Tree::default();
    let copies = copy_plan(p);
    let steps = SOURCE_LEVELS.len() + PYRAMID.len() + copies.len();
    bar.set_length(steps as u64);

    let mut levels: Vec<Level> = Vec::new();
    let mut injected: BTreeMap<&str, Band> = BTreeMap::new();
    let mut kept: BTreeMap<String, Band> = BTreeMap::new();
    for (name, factor) in SOURCE_LEVELS {
        let group = format!("{REFLECTANCE}/{name}");
        bar.set_message(group.clone());
        let t0 = Instant::now();
        let x = p.coord(&format!("{group}/x"))?;
        let y = p.coord(&format!("{group}/y"))?;
        let t = Transform::from_centres(&p.reader.describe(&group), &x, &y)?;
        let (h, w) = (y.len() as u64, x.len() as u64);
        let bands: Vec<&ArrayV2> = p
            .arrays_in(&group)
            .into_iter()
            .filter(|a| is_band(a))
            .collect();
        for b in &bands {
            if b.shape != [h, w] {
                return Err(WorkloadError::product(
                    p.reader.describe(&b.path),
                    format!(
                        "shape {:?} does not match the group's x/y ({h}×{w})",
                        b.shape
                    ),
                ));
            }
        }
        let inner = inner_chunk(h, w, opts.spatial_chunk);
        let needs_b08 = |lvl: &str| {
            p.arrays.contains_key(&format!("{REFLECTANCE}/r10m/b08"))
                && !p.arrays.contains_key(&format!("{REFLECTANCE}/{lvl}/b08"))
        };
        let keep = name == "r60m";
        let results: Vec<BandResult> = bands
            .par_iter()
            .map(|a| {
                let data = read_reflectance(p, a)?;
                let mut extra = Vec::new();
                if name == "r10m" && a.name() == "b08" {
                    for (lvl, f) in [("r20m", 2u64), ("r60m", 6)] {
                        if needs_b08(lvl) {
                            let (d, hh, ww) = coarsen_nanmean(&data, h, w, f);
                            extra.push((
                                lvl,
                                Band {
                                    data: d,
                                    h: hh,
                                    w: ww,
                                },
                            ));
                        }
                    }
                }
                write_level_var(
                    sink,
                    &tree,
                    &group,
                    a.name(),
                    &data,
                    h,
                    w,
                    inner,
                    Some(&a.attrs),
                )?;
                Ok((
                    a.name().to_string(),
                    keep.then_some(Band { data, h, w }),
                    extra,
                ))
            })
            .collect::<Result<_>>()?;
        let mut vars: Vec<String> = Vec::new();
        for (n, band, extra) in results {
            vars.push(n.clone());
            if let Some(b) = band {
                kept.insert(n, b);
            }
            for (lvl, b) in extra {
                injected.insert(lvl, b);
            }
        }
        if let Some(b) = injected.remove(name) {
            if b.h != h || b.w != w {
                return Err(WorkloadError::product(
                    p.reader.describe(&group),
                    format!(
                        "r10m b08 averaged ×{factor} is {}×{}, but the level is {h}×{w}",
                        b.h, b.w
                    ),
                ));
            }
            let attrs = p
                .arrays
                .get(&format!("{REFLECTANCE}/r10m/b08"))
                .map(|a| &a.attrs);
            write_level_var(sink, &tree, &group, "b08", &b.data, h, w, inner, attrs)?;
            vars.push("b08".into());
            if keep {
                kept.insert("b08".into(), b);
            }
        }
        vars.sort();
        write_coords_source(p, sink, &tree, &group)?;
        write_level_meta(sink, &tree, &group, utm, &t, h, w)?;
        tracing::info!(
            level = name,
            variables = vars.len(),
            seconds = t0.elapsed().as_secs_f64(),
            "level written"
        );
        levels.push(Level {
            name: name.into(),
            parent: (name != "r10m").then(|| "r10m".to_string()),
            t,
            h,
            w,
            vars,
        });
        bar.inc(1);
    }

    // The pyramid: each level from the one below, kept in memory (r60m is 12 × 13 MB at full size).
    // Its variables are r60m's; they keep their source attributes (b08: r10m's).
    let attrs_src: BTreeMap<String, Map<String, Value>> = kept
        .keys()
        .map(|n| {
            let a = p
                .arrays
                .get(&format!("{REFLECTANCE}/r60m/{n}"))
                .or_else(|| p.arrays.get(&format!("{REFLECTANCE}/r10m/{n}")));
            (n.clone(), a.map(|a| a.attrs.clone()).unwrap_or_default())
        })
        .collect();
    for (name, f, from) in PYRAMID {
        let t0 = Instant::now();
        let group = format!("{REFLECTANCE}/{name}");
        bar.set_message(group.clone());
        let Some(below) = levels.iter().find(|l| l.name == from) else {
            return Err(WorkloadError::product(
                p.reader.describe(REFLECTANCE),
                format!("level {from} is missing"),
            ));
        };
        let (h, w) = (below.h / f, below.w / f);
        if h == 0 || w == 0 {
            break; // too small a product for more levels
        }
        let t = below.t.coarsen(f as f64);
        let inner = inner_chunk(h, w, opts.spatial_chunk);
        let next: BTreeMap<String, Band> = kept
            .par_iter()
            .map(|(n, b)| {
                let (d, hh, ww) = coarsen_nanmean(&b.data, b.h, b.w, f);
                write_level_var(sink, &tree, &group, n, &d, hh, ww, inner, attrs_src.get(n))?;
                Ok((
                    n.clone(),
                    Band {
                        data: d,
                        h: hh,
                        w: ww,
                    },
                ))
            })
            .collect::<Result<_>>()?;
        write_coords_derived(sink, &tree, &group, utm, &t, h, w)?;
        write_level_meta(sink, &tree, &group, utm, &t, h, w)?;
        tracing::info!(
            level = name,
            seconds = t0.elapsed().as_secs_f64(),
            "level written"
        );
        // BTreeMap keys: already sorted.
        levels.push(Level {
            name: name.into(),
            parent: Some(from.to_string()),
            t,
            h,
            w,
            vars: next.keys().cloned().collect(),
        });
        kept = next;
        bar.inc(1);
    }
    drop(kept);

    // Every other leaf group, values and chunking preserved.
    copies.par_iter().try_for_each(|g| -> Result<()> {
        copy_group(p, sink, &tree, g, utm)?;
        bar.inc(1);
        Ok(())
    })?;

    tree.group(REFLECTANCE, multiscales_attrs(&levels, utm));
    let bbox = bbox_lonlat(&levels, utm);
    tree.finish(sink, root_attrs(bbox), &[REFLECTANCE, ""])?;
    let (objects, bytes) = sink.written();
    Ok(Report {
        output: sink.url(),
        product_type: p.product_code.clone(),
        epsg,
        levels: levels
            .iter()
            .map(|l| LevelReport {
                level: l.name.clone(),
                shape: [l.h, l.w],
                inner_chunk: inner_chunk(l.h, l.w, opts.spatial_chunk),
                variables: l.vars.clone(),
                transform: l.t.rasterio(),
            })
            .collect(),
        copied_arrays: copies.iter().map(|g| p.arrays_in(g).len()).sum(),
        source_chunks: source_chunks(p),
        source_chunk_reads: p.chunk_reads(&data_arrays(p)),
        objects,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        bbox_4326: bbox,
    })
}

/// The lon/lat bounds of every level.
fn bbox_lonlat(levels: &[Level], crs: Crs) -> [f64; 4] {
    let mut bbox = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for l in levels {
        let b = crs.bbox_lonlat(l.t.bbox(l.h, l.w));
        bbox = [
            bbox[0].min(b[0]),
            bbox[1].min(b[1]),
            bbox[2].max(b[2]),
            bbox[3].max(b[3]),
        ];
    }
    bbox
}

/// The store root's attributes: global lon/lat bounds (data-model #156).
pub(super) fn root_attrs(bbox: [f64; 4]) -> Map<String, Value> {
    let mut root = Map::new();
    root.insert("spatial:bbox".into(), json!(bbox));
    root.insert("proj:code".into(), json!("EPSG:4326"));
    root
}

/// A reflectance band: 2-D unsigned integer digital numbers over (y, x).
pub fn is_band(a: &ArrayV2) -> bool {
    a.shape.len() == 2
        && matches!(a.dtype, Dtype::U2 | Dtype::U1 | Dtype::U4)
        && a.dims() == ["y", "x"]
        && a.name() != "spatial_ref"
}

/// Groups copied as they are: every group holding arrays outside the reflectance
/// levels, minus the quicklooks (the reference dropped them: they cost time and
/// storage and nothing reads them).
/// Sentinel-1: every group but `measurements` (its radar-geometry coordinates
/// do not apply to the warped grid).
pub fn copy_plan(p: &Product) -> Vec<String> {
    let mut groups: Vec<String> = p
        .arrays
        .values()
        .map(|a| parent(&a.path).to_string())
        .collect();
    groups.sort();
    groups.dedup();
    let s1 = p.product_type == ProductType::S1Grd;
    groups.retain(|g| {
        if s1 {
            !g.ends_with("/measurements")
        } else {
            !(g.starts_with(REFLECTANCE) || g.starts_with("quality/") && g.contains("quicklook"))
        }
    });
    groups
}

/// Lets parallel tasks fill disjoint parts of one buffer.
pub(super) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _life: PhantomData<&'a mut [T]>,
}

// SAFETY: `Disjoint` is only used where every task writes the part of the
// buffer its own source chunk covers (`read_reflectance`, `convert_s1::load_row`),
// so no two tasks touch the same element.
unsafe impl<T: Send> Send for Disjoint<'_, T> {}
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub(super) fn new(v: &'a mut [T]) -> Self {
        Self {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            _life: PhantomData,
        }
    }
    /// SAFETY: callers must not request overlapping ranges from different threads.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn range(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "range outside the buffer");
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// A reflectance band as float32 reflectance: DN·scale + offset computed in
/// float64, NaN where DN is the nodata value. Chunks decode in parallel, each
/// straight into its place in the output.
fn read_reflectance(p: &Product, a: &ArrayV2) -> Result<Vec<f32>> {
    let num = |k: &str| a.attrs.get(k).and_then(Value::as_f64);
    let scale = num("scale_factor").unwrap_or(1.0);
    let offset = num("add_offset").unwrap_or(0.0);
    let nodata = num("_FillValue")
        .or_else(|| num("fill_value"))
        .or_else(|| fill_f64(&a.fill))
        .unwrap_or(0.0);
    let (h, w) = (a.shape[0] as usize, a.shape[1] as usize);
    let (ch, cw) = (a.chunks[0] as usize, a.chunks[1] as usize);
    // A lookup table turns the per-pixel float64 multiply-add into one load.
    let lut: Vec<f32> = match a.dtype {
        Dtype::U1 | Dtype::U2 => (0..=u16::MAX as u32)
            .map(|dn| {
                if f64::from(dn) == nodata {
                    f32::NAN
                } else {
                    (f64::from(dn) * scale + offset) as f32
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut out = vec![0f32; h * w];
    let dest = Disjoint::new(&mut out);
    a.chunk_indices()
        .par_iter()
        .try_for_each(|idx| -> Result<()> {
            let raw = p.chunk(a, idx)?;
            let (y0, x0) = (idx[0] as usize * ch, idx[1] as usize * cw);
            let rows = ch.min(h - y0);
            let cols = cw.min(w - x0);
            for r in 0..rows {
                // SAFETY: chunk (idx) owns rows y0..y0+rows × cols x0..x0+cols; no other task writes them.
                let row = unsafe { dest.range((y0 + r) * w + x0, cols) };
                let src = &raw[r * cw * a.dtype.size()..];
                match a.dtype {
                    Dtype::U2 => {
                        for (o, b) in row.iter_mut().zip(src.chunks_exact(2)) {
                            *o = lut[u16::from_le_bytes([b[0], b[1]]) as usize];
                        }
                    }
                    Dtype::U1 => {
                        for (o, b) in row.iter_mut().zip(src) {
                            *o = lut[*b as usize];
                        }
                    }
                    _ => {
                        for (o, b) in row.iter_mut().zip(src.chunks_exact(4)) {
                            let dn = f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                            *o = if dn == nodata {
                                f32::NAN
                            } else {
                                (dn * scale + offset) as f32
                            };
                        }
                    }
                }
            }
            Ok(())
        })?;
    Ok(out)
}

/// NaN-ignoring block mean over `f`×`f` windows, trimming the remainder
/// (NaN only where a whole window is NaN). Sums in float64.
pub fn coarsen_nanmean(src: &[f32], h: u64, w: u64, f: u64) -> (Vec<f32>, u64, u64) {
    let (h2, w2, f) = ((h / f) as usize, (w / f) as usize, f as usize);
    let w = w as usize;
    let mut out = vec![0f32; h2 * w2];
    out.par_chunks_mut(w2.max(1))
        .enumerate()
        .for_each(|(j, row)| {
            let mut sum = vec![0f64; w2];
            let mut cnt = vec![0u32; w2];
            for dy in 0..f {
                let line = &src[(j * f + dy) * w..(j * f + dy) * w + w2 * f];
                for (i, win) in line.chunks_exact(f).enumerate() {
                    for v in win {
                        if !v.is_nan() {
                            sum[i] += f64::from(*v);
                            cnt[i] += 1;
                        }
                    }
                }
            }
            for (i, o) in row.iter_mut().enumerate() {
                *o = if cnt[i] == 0 {
                    f32::NAN
                } else {
                    (sum[i] / f64::from(cnt[i])) as f32
                };
            }
        });
    (out, h2 as u64, w2 as u64)
}

/// Attributes of a float32 level variable: the source band's, minus the
/// encoding (CF scale/offset/fill, dtype, valid range) and the stale
/// per-variable `proj:*` (the group's spatial:/proj: attributes are authoritative).
fn level_var_attrs(src: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in src.into_iter().flatten() {
        let drop = matches!(
            k.as_str(),
            "_eopf_attrs"
                | "_ARRAY_DIMENSIONS"
                | "_FillValue"
                | "fill_value"
                | "dtype"
                | "scale_factor"
                | "add_offset"
                | "valid_min"
                | "valid_max"
                | "coordinates"
        ) || k.starts_with("proj:");
        if !drop {
            m.insert(k.clone(), v.clone());
        }
    }
    if m.get("units").and_then(Value::as_str) == Some("digital_counts") || !m.contains_key("units")
    {
        m.insert("units".into(), json!("1"));
    }
    m.insert("_FillValue".into(), json!(NAN_FILL_ATTR));
    link_grid_mapping(&mut m);
    m
}

/// `grid_mapping` names the CRS variable; listing it in `coordinates` is what
/// makes xarray load it as a coordinate, where rioxarray looks for the CRS.
pub(super) fn link_grid_mapping(m: &mut Map<String, Value>) {
    m.insert("grid_mapping".into(), json!("spatial_ref"));
    let coords = m
        .get("coordinates")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !coords.split_whitespace().any(|c| c == "spatial_ref") {
        let joined = if coords.is_empty() {
            "spatial_ref".to_string()
        } else {
            format!("{coords} spatial_ref")
        };
        m.insert("coordinates".into(), json!(joined));
    }
}

#[allow(clippy::too_many_arguments)]
fn write_level_var(
    sink: &dyn Sink,
    tree: &Tree,
    group: &str,
    name: &str,
    data: &[f32],
    h: u64,
    w: u64,
    inner: u64,
    src_attrs: Option<&Map<String, Value>>,
) -> Result<()> {
    let path = format!("{group}/{name}");
    let shard = [shard_dim(h, inner), shard_dim(w, inner)];
    zarr3::write_sharded_f32(sink, &path, data, h, w, inner, shard)?;
    let doc = array_json(
        &[h, w],
        &shard,
        json!("float32"),
        json!("NaN"),
        zarr3::sharded_codecs(inner, 4),
        level_var_attrs(src_attrs),
        Some(&["y", "x"]),
    );
    tree.array(sink, &path, doc)
}

pub(super) fn clean_attrs(src: &Map<String, Value>) -> Map<String, Value> {
    src.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_eopf_attrs" | "_ARRAY_DIMENSIONS"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// x/y of a source level, copied (int64 pixel centres), uncompressed.
fn write_coords_source(p: &Product, sink: &dyn Sink, tree: &Tree, group: &str) -> Result<()> {
    for dim in ["x", "y"] {
        let a = p.array(&format!("{group}/{dim}"))?;
        let raw = p.read_all(a)?;
        let path = format!("{group}/{dim}");
        sink.put(&chunk_key(&path, &[0]), raw)?;
        let fill = if a.dtype.is_float() {
            json!("NaN")
        } else {
            json!(0)
        };
        let doc = array_json(
            &a.shape,
            &a.shape,
            a.dtype.v3(),
            fill,
            json!([bytes_codec(a.dtype.size())]),
            clean_attrs(&a.attrs),
            Some(&[dim]),
        );
        tree.array(sink, &path, doc)?;
    }
    Ok(())
}

/// x/y of a derived (or warped) level: float64 pixel centres (the mean of the fine centres).
pub(super) fn write_coords_derived(
    sink: &dyn Sink,
    tree: &Tree,
    group: &str,
    crs: Crs,
    t: &Transform,
    h: u64,
    w: u64,
) -> Result<()> {
    for (dim, n) in [("x", w), ("y", h)] {
        let vals: Vec<u8> = (0..n)
            .flat_map(|i| {
                if dim == "x" {
                    t.x_centre(i)
                } else {
                    t.y_centre(i)
                }
                .to_le_bytes()
            })
            .collect();
        let path = format!("{group}/{dim}");
        sink.put(&chunk_key(&path, &[0]), vals)?;
        let mut attrs = Map::new();
        attrs.insert("_FillValue".into(), json!(NAN_FILL_ATTR));
        for (k, v) in crs.axis_attrs(dim) {
            attrs.insert(k.into(), json!(v));
        }
        let doc = array_json(
            &[n],
            &[n],
            json!("float64"),
            json!("NaN"),
            json!([bytes_codec(8)]),
            attrs,
            Some(&[dim]),
        );
        tree.array(sink, &path, doc)?;
    }
    Ok(())
}

fn conventions(multiscales: bool) -> Value {
    let mut v = Vec::new();
    if multiscales {
        v.push(json!({
            "uuid": "d35379db-88df-4056-af3a-620245f8e347",
            "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
            "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
            "name": "multiscales",
            "description": "Multiscale layout of zarr datasets"
        }));
    }
    v.push(json!({
        "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
        "name": "spatial:",
        "description": "Spatial coordinate information"
    }));
    v.push(json!({
        "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
        "schema_url": "https://raw.githubusercontent.com/zarr-experimental/geo-proj/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-experimental/geo-proj/blob/v1/README.md",
        "name": "proj:",
        "description": "Coordinate reference system information for geospatial data"
    }));
    Value::Array(v)
}

fn spatial_attrs(m: &mut Map<String, Value>, crs: Crs, t: &Transform, h: u64, w: u64) {
    m.insert("spatial:dimensions".into(), json!(["y", "x"]));
    m.insert("spatial:registration".into(), json!("pixel"));
    m.insert("spatial:bbox".into(), json!(t.bbox(h, w)));
    m.insert("spatial:transform".into(), json!(t.rasterio()));
    m.insert("spatial:shape".into(), json!([h, w]));
    m.insert("proj:code".into(), json!(format!("EPSG:{}", crs.epsg())));
}

/// The `spatial_ref` grid-mapping variable and the group's geo attributes.
pub(super) fn write_level_meta(
    sink: &dyn Sink,
    tree: &Tree,
    group: &str,
    crs: Crs,
    t: &Transform,
    h: u64,
    w: u64,
) -> Result<()> {
    let path = format!("{group}/spatial_ref");
    sink.put(&chunk_key(&path, &[]), 0i64.to_le_bytes().to_vec())?;
    let attrs = crs.cf_attrs(t).as_object().cloned().unwrap_or_default();
    tree.array(
        sink,
        &path,
        array_json(
            &[],
            &[],
            json!("int64"),
            json!(0),
            json!([bytes_codec(8)]),
            attrs,
            None,
        ),
    )?;
    let mut g = Map::new();
    g.insert("grid_mapping".into(), json!("spatial_ref"));
    spatial_attrs(&mut g, crs, t, h, w);
    g.insert("zarr_conventions".into(), conventions(false));
    tree.group(group, g);
    Ok(())
}

pub(super) fn multiscales_attrs(levels: &[Level], crs: Crs) -> Map<String, Value> {
    let layout: Vec<Value> = levels
        .iter()
        .map(|l| {
            let mut e = Map::new();
            e.insert("asset".into(), json!(l.name));
            if let Some(parent) = l
                .parent
                .as_deref()
                .and_then(|d| levels.iter().find(|x| x.name == d))
            {
                let scale = (parent.w as f64 / l.w as f64).max(parent.h as f64 / l.h as f64);
                e.insert("derived_from".into(), json!(parent.name));
                e.insert(
                    "transform".into(),
                    json!({"scale": [scale, scale], "translation": [0.0, 0.0]}),
                );
            }
            e.insert("spatial:shape".into(), json!([l.h, l.w]));
            e.insert("spatial:transform".into(), json!(l.t.rasterio()));
            Value::Object(e)
        })
        .collect();
    let mut m = Map::new();
    m.insert("zarr_conventions".into(), conventions(true));
    m.insert(
        "multiscales".into(),
        json!({"layout": layout, "resampling_method": "average"}),
    );
    if let Some(first) = levels.first() {
        spatial_attrs(&mut m, crs, &first.t, first.h, first.w);
    }
    m
}

/// Copy one leaf group: same dtypes, values, dimensions and chunking; blosc-zstd
/// with byte shuffle for data, no compression for coordinates. Groups gridded on
/// x/y under `/quality` and `/conditions/mask` also get `spatial_ref` and the
/// spatial attributes, so readers (TiTiler) can place them.
pub(super) fn copy_group(
    p: &Product,
    sink: &dyn Sink,
    tree: &Tree,
    group: &str,
    crs: Crs,
) -> Result<()> {
    let arrays = p.arrays_in(group);
    let dims_of_group: Vec<String> = arrays.iter().flat_map(|a| a.dims()).collect();
    let georef = if (group.starts_with("quality/") || group.starts_with("conditions/mask/"))
        && p.arrays.contains_key(&format!("{group}/x"))
        && p.arrays.contains_key(&format!("{group}/y"))
    {
        let x = p.coord(&format!("{group}/x"))?;
        let y = p.coord(&format!("{group}/y"))?;
        Some((
            Transform::from_centres(&p.reader.describe(group), &x, &y)?,
            y.len() as u64,
            x.len() as u64,
        ))
    } else {
        None
    };
    for a in &arrays {
        let is_coord = a.shape.len() <= 1
            && (a.shape.is_empty()
                || dims_of_group.iter().any(|d| d == a.name())
                || matches!(a.dtype, Dtype::Utf32(_)));
        let mut attrs = clean_attrs(&a.attrs);
        let fill = out_fill(a, &mut attrs);
        let dims = a.dims();
        if georef.is_some() && dims.len() >= 2 && dims[dims.len() - 2..] == ["y", "x"] {
            link_grid_mapping(&mut attrs);
        }
        let fill_elem = fill_bytes(a.dtype, &fill);
        let codecs = if is_coord {
            json!([bytes_codec(a.dtype.size())])
        } else {
            json!([bytes_codec(a.dtype.size()), blosc_codec(a.dtype.size())])
        };
        let encoder = if is_coord {
            None
        } else {
            Some(zarr3::Encoder::new(a.dtype.size())?)
        };
        a.chunk_indices()
            .par_iter()
            .try_for_each(|idx| -> Result<()> {
                let raw = p.chunk(a, idx)?;
                if let Some(fe) = &fill_elem
                    && raw.chunks_exact(fe.len()).all(|e| e == fe.as_slice())
                {
                    return Ok(()); // all fill: readers get the fill value without an object
                }
                let bytes = match &encoder {
                    Some(e) => e.encode(&raw)?,
                    None => raw,
                };
                sink.put(&chunk_key(&a.path, idx), bytes)
            })?;
        let dim_refs: Vec<&str> = dims.iter().map(String::as_str).collect();
        let doc = array_json(
            &a.shape,
            &a.chunks,
            a.dtype.v3(),
            fill,
            codecs,
            attrs,
            (!dim_refs.is_empty()).then_some(dim_refs.as_slice()),
        );
        tree.array(sink, &a.path, doc)?;
    }
    if let Some((t, h, w)) = georef {
        write_level_meta(sink, tree, group, crs, &t, h, w)?;
    } else if let Some(g) = p.groups.get(group) {
        tree.group(group, clean_attrs(g));
    }
    Ok(())
}

/// The output fill value: the source `_FillValue` when there is one, NaN for
/// floats (as xarray writes them), else the type's zero. Adjusts `_FillValue`
/// to xarray's form.
fn out_fill(a: &ArrayV2, attrs: &mut Map<String, Value>) -> Value {
    let src = attrs.get("_FillValue").cloned();
    match a.dtype {
        Dtype::F4 | Dtype::F8 => match src.as_ref().and_then(fill_f64) {
            Some(v) if !v.is_nan() => json!(v),
            _ => {
                attrs.insert("_FillValue".into(), json!(NAN_FILL_ATTR));
                json!("NaN")
            }
        },
        Dtype::Utf32(_) => json!(""),
        Dtype::Bool => json!(false),
        _ => src.filter(Value::is_number).unwrap_or(json!(0)),
    }
}

/// One element equal to `fill`, to recognise all-fill chunks (None: don't try).
fn fill_bytes(d: Dtype, fill: &Value) -> Option<Vec<u8>> {
    let n = d.size();
    match d {
        Dtype::F4 => fill.as_f64().map(|v| (v as f32).to_le_bytes().to_vec()),
        Dtype::F8 => fill.as_f64().map(|v| v.to_le_bytes().to_vec()),
        Dtype::I1 | Dtype::I2 | Dtype::I4 | Dtype::I8 => {
            fill.as_i64().map(|v| v.to_le_bytes()[..n].to_vec())
        }
        Dtype::U1 | Dtype::U2 | Dtype::U4 | Dtype::U8 => {
            fill.as_u64().map(|v| v.to_le_bytes()[..n].to_vec())
        }
        Dtype::Bool => Some(vec![0]),
        Dtype::Utf32(_) => Some(vec![0; n]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanmean_ignores_nan_and_trims() {
        let n = f32::NAN;
        #[rustfmt::skip]
        let src = [
            1.0, 3.0, n, n, 9.0,
            5.0, 7.0, n, 2.0, 9.0,
            9.0, 9.0, 9.0, 9.0, 9.0,
        ];
        let (out, h, w) = coarsen_nanmean(&src, 3, 5, 2);
        assert_eq!((h, w), (1, 2));
        assert_eq!(out[0], 4.0);
        assert_eq!(out[1], 2.0);
        let (out, _, _) = coarsen_nanmean(&[n, n, n, n], 2, 2, 2);
        assert!(out[0].is_nan());
    }
}
