//! EOPF Sentinel-1 GRD → GeoZarr: each polarisation's `measurements/grd` warped
//! from radar geometry (line × pixel) to a regular grid (EPSG:4326 like the
//! reference, or a UTM zone) through its ground control points, with a
//! multiscale pyramid, streamed by bands of output rows.
//!
//! What it guarantees:
//! - every source chunk is fetched once: a band of output rows loads the rows
//!   of source chunks its tiles need (decoded in parallel, full width) and
//!   drops, after the band, the ones the next band does not need; the report
//!   counts the fetches;
//! - memory holds those chunk rows, one band per pyramid level and one band of
//!   output tiles, never a whole array;
//! - output values are the source's u16 digital numbers, bilinear over the
//!   neighbours with data (`warp`); 0 is no data, outside the swath too, and is
//!   never averaged into a pyramid level;
//! - layout like Sentinel-2's: `<pol group>/measurements` is the multiscales
//!   group, levels `r<gsd>m/grd` (u16, sharded: one shard per band of rows,
//!   blosc-zstd inner chunks, all-no-data chunks left out) with x/y, a CF
//!   `spatial_ref`, `spatial:*`/`proj:*`; conditions and quality groups copied;
//!   the radar-geometry coordinates of `measurements` are not (they do not
//!   describe the warped grid);
//! - the root `zarr.json` is written last: a failed run leaves no complete store.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::ProgressBar;
use rayon::prelude::*;
use serde_json::{Map, json};

use super::convert::{
    self, Disjoint, Level, LevelReport, Options, Report, clean_attrs, copy_group, copy_plan,
    link_grid_mapping, multiscales_attrs, write_coords_derived, write_level_meta,
};
use super::eopf::{ArrayV2, Dtype, Product};
use super::gcp::{GcpGrid, metres};
use super::geo::{Crs, Transform, Utm};
use super::io::Sink;
use super::warp::{self, Grid, NODATA, TileMap};
use super::zarr3::{Encoder, ShardWriter, Tree, array_json, chunk_key, sharded_codecs};
use super::{Result, WorkloadError};

/// Polarisation suffixes of the root groups.
const POLARISATIONS: [&str; 4] = ["VV", "VH", "HH", "HV"];
/// A pyramid level is made while its short side keeps at least this many
/// pixels (the reference's `min_dimension`).
const MIN_LEVEL: u64 = 256;

/// `<pol group>/measurements/grd`.
pub fn is_grd(a: &ArrayV2) -> bool {
    a.path.ends_with("/measurements/grd") && a.path.matches('/').count() == 2
}

/// One polarisation of the product.
pub struct Pol<'a> {
    /// VV, VH, HH or HV.
    pub name: String,
    /// The root group, `S01SIWGRD_…_VV`.
    pub group: String,
    pub grd: &'a ArrayV2,
    pub gcp: GcpGrid,
}

/// The product's polarisations, each with its GCP grid (a polarisation
/// without GCPs uses the first one's, as the reference does), checked: u16
/// `grd`, GCPs present and well-formed, one geometry for all.
pub fn polarisations(p: &Product) -> Result<Vec<Pol<'_>>> {
    let mut found: Vec<(String, String)> = p
        .groups
        .keys()
        .filter(|g| !g.is_empty() && !g.contains('/'))
        .filter_map(|g| {
            let (_, suffix) = g.rsplit_once('_')?;
            POLARISATIONS
                .contains(&suffix)
                .then(|| (suffix.to_string(), g.clone()))
        })
        .collect();
    // VV before VH, HH before HV: the co-polarised channel first.
    found.sort_by_key(|(n, _)| POLARISATIONS.iter().position(|x| x == n));
    if found.is_empty() {
        return Err(WorkloadError::product(
            p.reader.describe(".zmetadata"),
            "no polarisation groups (root groups named `…_VV`, `…_VH`, `…_HH` or `…_HV`): not the layout of an EOPF Sentinel-1 GRD product",
        ));
    }
    let mut gcps: Vec<Option<GcpGrid>> = Vec::new();
    for (_, g) in &found {
        gcps.push(read_gcps(p, g)?);
    }
    let Some(fallback) = gcps.iter().flatten().next().cloned() else {
        return Err(WorkloadError::product(
            p.reader.describe(&format!("{}/conditions/gcp", found[0].1)),
            "no ground control points (latitude, longitude, line, pixel) in any polarisation; a GRD product is in radar geometry and cannot be georeferenced without them",
        ));
    };
    let mut out: Vec<Pol<'_>> = Vec::new();
    for ((name, group), gcp) in found.into_iter().zip(gcps) {
        let grd = p.array(&format!("{group}/measurements/grd"))?;
        if grd.shape.len() != 2 || grd.dtype != Dtype::U2 {
            return Err(WorkloadError::product(
                p.reader.describe(&grd.path),
                format!(
                    "{:?} array of shape {:?}; expected 2-D uint16 digital numbers over (azimuth_time, ground_range)",
                    grd.dtype, grd.shape
                ),
            ));
        }
        if let Some(first) = out.first()
            && first.grd.shape != grd.shape
        {
            return Err(WorkloadError::product(
                p.reader.describe(&grd.path),
                format!(
                    "shape {:?} differs from {}'s {:?}; the polarisations of one product share one geometry (is the product mixed up or truncated?)",
                    grd.shape, first.grd.path, first.grd.shape
                ),
            ));
        }
        out.push(Pol {
            name,
            group,
            grd,
            gcp: gcp.unwrap_or_else(|| fallback.clone()),
        });
    }
    Ok(out)
}

/// The GCP grid of one polarisation group; None when it has no `conditions/gcp`.
fn read_gcps(p: &Product, group: &str) -> Result<Option<GcpGrid>> {
    let g = format!("{group}/conditions/gcp");
    if p.arrays_in(&g).is_empty() {
        return Ok(None);
    }
    let what = p.reader.describe(&g);
    let get = |name: &str| -> Result<&ArrayV2> {
        p.arrays.get(&format!("{g}/{name}")).ok_or_else(|| {
            WorkloadError::product(
                &what,
                format!("`{name}` is missing; GCPs need latitude, longitude, line and pixel"),
            )
        })
    };
    let (lat, lon, line, pixel) = (get("latitude")?, get("longitude")?, get("line")?, get("pixel")?);
    if lat.shape != lon.shape || lat.shape.len() != 2 {
        return Err(WorkloadError::product(
            &what,
            format!(
                "latitude {:?} and longitude {:?} must be one 2-D (line × pixel) grid",
                lat.shape, lon.shape
            ),
        ));
    }
    let grid = GcpGrid::new(
        p.read_f64(line)?,
        p.read_f64(pixel)?,
        p.read_f64(lon)?,
        p.read_f64(lat)?,
    )
    .map_err(|e| WorkloadError::product(&what, e.to_string()))?;
    Ok(Some(grid))
}

/// The source's ground spacing along range in metres: the median over the
/// middle GCP row of distance / pixel count between neighbouring GCPs.
pub fn ground_spacing(g: &GcpGrid) -> f64 {
    let r = g.rows() / 2;
    let mut v: Vec<f64> = (0..g.cols() - 1)
        .map(|c| metres(g.point(r, c), g.point(r, c + 1)) / (g.pixels()[c + 1] - g.pixels()[c]))
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The output CRS: `opts.crs` or EPSG:4326; `utm` = the zone of the image centre.
fn output_crs(opt: Option<&str>, g: &GcpGrid, lines: u64, pixels: u64) -> Result<Crs> {
    match opt {
        None => Ok(Crs::LonLat),
        Some(s) if s.eq_ignore_ascii_case("utm") => {
            let (lon, lat) = g.lonlat(lines as f64 / 2.0, pixels as f64 / 2.0);
            Ok(Crs::Utm(Utm::containing(lon, lat)))
        }
        Some(code) => Crs::from_code(code),
    }
}

/// A pyramid level's shape: named by its nominal ground sampling distance.
#[derive(Debug, Clone)]
struct LevelShape {
    name: String,
    h: u64,
    w: u64,
    t: Transform,
}

/// The native level (the warp grid) and the halvings whose short side stays
/// at least `MIN_LEVEL`.
fn level_shapes(grid: &Grid, spacing: f64) -> Vec<LevelShape> {
    let nominal = (spacing.round() as u64).max(1);
    let mut out = Vec::new();
    for k in 0.. {
        let g = grid.coarsen(1 << k);
        if k > 0 && g.height.min(g.width) < MIN_LEVEL {
            break;
        }
        out.push(LevelShape {
            name: format!("r{}m", nominal << k),
            h: g.height,
            w: g.width,
            t: g.transform(),
        });
    }
    out
}

pub fn convert(p: &Product, sink: &dyn Sink, opts: &Options, bar: &ProgressBar) -> Result<Report> {
    let started = Instant::now();
    let pols = polarisations(p)?;
    let (lines, pixels) = (pols[0].grd.shape[0], pols[0].grd.shape[1]);
    let crs = output_crs(opts.crs.as_deref(), &pols[0].gcp, lines, pixels)?;
    let inner = opts.spatial_chunk;
    let grid = Grid::for_image(&pols[0].gcp, crs, lines, pixels, inner);
    let shapes = level_shapes(&grid, ground_spacing(&pols[0].gcp));
    tracing::info!(
        polarisations = pols.len(),
        source = format!("{lines}×{pixels}"),
        grid = format!("{}×{}", grid.height, grid.width),
        crs = crs.epsg(),
        levels = shapes.len(),
        "warping Sentinel-1 GRD"
    );
    let removed = sink.clear()?;
    if removed > 0 {
        tracing::info!(output = %sink.url(), "removed the previous output");
    }
    let tree = Tree::default();
    let copies = copy_plan(p);
    let bands = grid.height / inner;
    bar.set_length(pols.len() as u64 * bands + copies.len() as u64);

    let mut reports = Vec::new();
    let mut consolidate: Vec<String> = vec![String::new()];
    for pol in &pols {
        let t0 = Instant::now();
        bar.set_message(format!("{} grd", pol.name));
        let measurements = format!("{}/measurements", pol.group);
        warp_polarisation(p, sink, pol, &grid, &shapes, &measurements, inner, bar)?;
        let mut levels: Vec<Level> = Vec::new();
        for (i, s) in shapes.iter().enumerate() {
            let group = format!("{measurements}/{}", s.name);
            write_grd_meta(sink, &tree, &group, pol, s, inner)?;
            write_coords_derived(sink, &tree, &group, crs, &s.t, s.h, s.w)?;
            write_level_meta(sink, &tree, &group, crs, &s.t, s.h, s.w)?;
            levels.push(Level {
                name: s.name.clone(),
                parent: (i > 0).then(|| shapes[i - 1].name.clone()),
                t: s.t,
                h: s.h,
                w: s.w,
                vars: vec!["grd".into()],
            });
            reports.push(LevelReport {
                level: format!("{}/{}", pol.name, s.name),
                shape: [s.h, s.w],
                inner_chunk: inner,
                variables: vec!["grd".into()],
                transform: s.t.rasterio(),
            });
        }
        tree.group(&measurements, multiscales_attrs(&levels, crs));
        if let Some(a) = p.groups.get(&pol.group) {
            tree.group(&pol.group, clean_attrs(a));
        }
        tracing::info!(
            polarisation = %pol.name,
            seconds = t0.elapsed().as_secs_f64(),
            "polarisation written"
        );
        consolidate.push(measurements);
    }

    copies.par_iter().try_for_each(|g| -> Result<()> {
        copy_group(p, sink, &tree, g, crs)?;
        bar.inc(1);
        Ok(())
    })?;

    // The swath's bounds, not the tile-padded grid's.
    let bbox = grid.footprint;
    let consolidate: Vec<&str> = consolidate.iter().map(String::as_str).collect();
    tree.finish(sink, convert::root_attrs(bbox), &consolidate)?;
    let (objects, bytes) = sink.written();
    Ok(Report {
        output: sink.url(),
        product_type: p.product_code.clone(),
        epsg: crs.epsg(),
        levels: reports,
        copied_arrays: copies.iter().map(|g| p.arrays_in(g).len()).sum(),
        source_chunks: convert::source_chunks(p),
        source_chunk_reads: p.chunk_reads(&convert::data_arrays(p)),
        objects,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        bbox_4326: bbox,
    })
}

/// The `grd` array of one level: u16 digital numbers, 0 = no data, one shard
/// per band of `inner` rows spanning the whole width.
fn write_grd_meta(
    sink: &dyn Sink,
    tree: &Tree,
    group: &str,
    pol: &Pol<'_>,
    s: &LevelShape,
    inner: u64,
) -> Result<()> {
    let mut attrs = Map::new();
    for (k, v) in &pol.grd.attrs {
        if !matches!(
            k.as_str(),
            "_ARRAY_DIMENSIONS" | "_eopf_attrs" | "_FillValue" | "fill_value" | "dtype" | "coordinates"
        ) {
            attrs.insert(k.clone(), v.clone());
        }
    }
    attrs.insert("polarization".into(), json!(pol.name));
    attrs.insert("units".into(), json!("1"));
    attrs.insert(
        "description".into(),
        json!("GRD amplitude (digital number) warped from radar geometry through the product's GCPs; 0 = no data"),
    );
    attrs.insert("_FillValue".into(), json!(NODATA));
    link_grid_mapping(&mut attrs);
    let path = format!("{group}/grd");
    let doc = array_json(
        &[s.h, s.w],
        &[inner, s.w.div_ceil(inner) * inner],
        json!("uint16"),
        json!(NODATA),
        sharded_codecs(inner, 2),
        attrs,
        Some(&["y", "x"]),
    );
    tree.array(sink, &path, doc)
}

/// Decoded rows of source chunks, by chunk-row index: each `chunk_lines ×
/// pixels`, full width.
type ChunkRows = BTreeMap<u64, Vec<u16>>;

/// Warp one polarisation band by band, feeding the pyramid as it goes.
#[allow(clippy::too_many_arguments)]
fn warp_polarisation(
    p: &Product,
    sink: &dyn Sink,
    pol: &Pol<'_>,
    grid: &Grid,
    shapes: &[LevelShape],
    measurements: &str,
    inner: u64,
    bar: &ProgressBar,
) -> Result<()> {
    let a = pol.grd;
    let (lines, pixels, ch) = (a.shape[0], a.shape[1], a.chunks[0]);
    let enc = Encoder::new(2)?;
    let mut outs: Vec<LevelOut> = shapes
        .iter()
        .map(|s| LevelOut::new(format!("{measurements}/{}/grd", s.name), s, inner))
        .collect();
    let tiles = grid.width / inner;
    let maps_for = |b: u64| -> Vec<TileMap> {
        (0..tiles)
            .into_par_iter()
            .map(|t| warp::tile_map(&pol.gcp, grid, b * inner, t * inner, inner, inner))
            .collect()
    };
    // The chunk rows a band's tiles read, inclusive.
    let rows_needed = |maps: &[TileMap]| -> Option<(u64, u64)> {
        let w = maps.iter().filter_map(|m| m.window(lines, pixels));
        w.fold(None, |acc, [l0, l1, _, _]| match acc {
            None => Some((l0 / ch, l1 / ch)),
            Some((a, b)) => Some((a.min(l0 / ch), b.max(l1 / ch))),
        })
    };
    let mut cache: ChunkRows = BTreeMap::new();
    let mut maps = maps_for(0);
    let mut need = rows_needed(&maps);
    let bands = grid.height / inner;
    let n = inner as usize;
    let width = grid.width as usize;
    for b in 0..bands {
        tracing::debug!(band = b, ?need, "band");
        let mut band = vec![NODATA; n * width];
        if let Some((r0, r1)) = need {
            let missing: Vec<u64> = (r0..=r1).filter(|r| !cache.contains_key(r)).collect();
            for r in missing {
                cache.insert(r, load_row(p, a, r)?);
            }
            // One slice per source line the band may touch: sampling indexes
            // it directly, with no division by the chunk height per pixel.
            let first = r0 * ch;
            let table: Vec<&[u16]> = (first..((r1 + 1) * ch).min(lines))
                .map(|l| {
                    let row = &cache[&(l / ch)];
                    let off = ((l % ch) * pixels) as usize;
                    &row[off..off + pixels as usize]
                })
                .collect();
            let src = warp::Source { lines, pixels, first, rows: &table };
            let sampled: Vec<Option<Vec<u16>>> = maps
                .par_iter()
                .map(|m| m.window(lines, pixels).map(|_| warp::sample(m, &src)))
                .collect();
            for (t, tile) in sampled.into_iter().enumerate() {
                let Some(tile) = tile else { continue };
                for r in 0..n {
                    band[r * width + t * n..r * width + (t + 1) * n]
                        .copy_from_slice(&tile[r * n..(r + 1) * n]);
                }
            }
        }
        push_rows(&mut outs, band, inner, sink, &enc)?;
        // The next band's rows stay; the rest is done with.
        maps = if b + 1 < bands { maps_for(b + 1) } else { Vec::new() };
        need = rows_needed(&maps);
        cache.retain(|r, _| need.is_some_and(|(k0, k1)| (k0..=k1).contains(r)));
        bar.inc(1);
    }
    flush(&mut outs, sink, &enc)
}

/// Decode chunk row `r` of `a` (every chunk of it in parallel) into one
/// full-width buffer of `chunk_lines × pixels`.
fn load_row(p: &Product, a: &ArrayV2, r: u64) -> Result<Vec<u16>> {
    let (ch, cw) = (a.chunks[0] as usize, a.chunks[1] as usize);
    let pixels = a.shape[1] as usize;
    let mut buf = vec![NODATA; ch * pixels];
    let dest = Disjoint::new(&mut buf);
    (0..a.grid()[1]).into_par_iter().try_for_each(|c| -> Result<()> {
        let raw = p.chunk(a, &[r, c])?;
        let x0 = c as usize * cw;
        let cols = cw.min(pixels - x0);
        for line in 0..ch {
            // SAFETY: chunk (r, c) alone writes columns x0..x0+cols of every line.
            let row = unsafe { dest.range(line * pixels + x0, cols) };
            let src = &raw[line * cw * 2..(line * cw + cols) * 2];
            for (o, b) in row.iter_mut().zip(src.chunks_exact(2)) {
                *o = u16::from_le_bytes([b[0], b[1]]);
            }
        }
        Ok(())
    })?;
    Ok(buf)
}

/// One pyramid level being written: rows buffered until a band of `inner`
/// rows is complete, then encoded as one shard and averaged into the next level.
struct LevelOut {
    path: String,
    h: u64,
    w: u64,
    /// Buffer width: `w` rounded up to whole inner chunks.
    wbuf: u64,
    inner: u64,
    buf: Vec<u16>,
    rows: u64,
    shard_row: u64,
}

impl LevelOut {
    fn new(path: String, s: &LevelShape, inner: u64) -> Self {
        Self {
            path,
            h: s.h,
            w: s.w,
            wbuf: s.w.div_ceil(inner) * inner,
            inner,
            buf: Vec::new(),
            rows: 0,
            shard_row: 0,
        }
    }
}

/// Add `n` rows (each `outs[0].wbuf` wide) to the first level; complete bands
/// are written and their average passed down.
fn push_rows(outs: &mut [LevelOut], rows: Vec<u16>, n: u64, sink: &dyn Sink, enc: &Encoder) -> Result<()> {
    let Some((lv, rest)) = outs.split_first_mut() else {
        return Ok(());
    };
    if lv.buf.is_empty() {
        lv.buf = rows;
    } else {
        lv.buf.extend_from_slice(&rows);
    }
    lv.rows += n;
    while lv.rows >= lv.inner {
        emit(lv, rest, lv.inner, sink, enc)?;
    }
    Ok(())
}

/// Write the rows still buffered (the bottom band, padded with no data), level by level.
fn flush(outs: &mut [LevelOut], sink: &dyn Sink, enc: &Encoder) -> Result<()> {
    for i in 0..outs.len() {
        let (head, rest) = outs.split_at_mut(i + 1);
        let lv = &mut head[i];
        if lv.rows > 0 {
            let n = lv.rows;
            emit(lv, rest, n, sink, enc)?;
        }
    }
    Ok(())
}

/// Write the first `n` buffered rows of `lv` as one shard row, then pass their
/// 2 × 2 average to the next level.
fn emit(lv: &mut LevelOut, rest: &mut [LevelOut], n: u64, sink: &dyn Sink, enc: &Encoder) -> Result<()> {
    let (wbuf, inner) = (lv.wbuf as usize, lv.inner as usize);
    let mut block: Vec<u16> = lv.buf.drain(..n as usize * wbuf).collect();
    lv.rows -= n;
    block.resize(inner * wbuf, NODATA);
    let real_rows = n.min(lv.h.saturating_sub(lv.shard_row * lv.inner)) as usize;
    let encoded: Vec<Option<Vec<u8>>> = (0..wbuf / inner)
        .into_par_iter()
        .map(|t| {
            let row = |r: usize| &block[r * wbuf + t * inner..r * wbuf + (t + 1) * inner];
            if (0..inner).all(|r| row(r).iter().all(|&v| v == NODATA)) {
                return Ok(None);
            }
            let mut raw = vec![0u8; inner * inner * 2];
            for (r, dst) in raw.chunks_exact_mut(inner * 2).enumerate() {
                for (d, v) in dst.chunks_exact_mut(2).zip(row(r)) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            enc.encode(&raw).map(Some)
        })
        .collect::<Result<_>>()?;
    let mut shard = ShardWriter::new(chunk_key(&lv.path, &[lv.shard_row, 0]), encoded.len());
    for e in encoded {
        shard.push(sink, e)?;
    }
    shard.finish()?;
    lv.shard_row += 1;
    if let Some(next) = rest.first() {
        let half = coarsen(&block, wbuf, real_rows, lv.w as usize, next.wbuf as usize);
        push_rows(rest, half, real_rows.div_ceil(2) as u64, sink, enc)?;
    }
    Ok(())
}

/// 2 × 2 means of `rows` rows of `w` valid pixels (buffer width `wbuf`), over
/// the pixels with data, into rows of width `wout`; a cell with no data stays
/// no data and a mean never rounds down into it.
fn coarsen(block: &[u16], wbuf: usize, rows: usize, w: usize, wout: usize) -> Vec<u16> {
    let (h2, w2) = (rows.div_ceil(2), w.div_ceil(2));
    let mut out = vec![NODATA; h2 * wout];
    out.par_chunks_mut(wout).enumerate().for_each(|(j, row)| {
        let ys = [2 * j, 2 * j + 1];
        for (i, o) in row.iter_mut().take(w2).enumerate() {
            let (mut sum, mut cnt) = (0u32, 0u32);
            for &y in ys.iter().filter(|&&y| y < rows) {
                for x in [2 * i, 2 * i + 1] {
                    if x < w {
                        let v = block[y * wbuf + x];
                        if v != NODATA {
                            sum += u32::from(v);
                            cnt += 1;
                        }
                    }
                }
            }
            if let Some(mean) = (sum + cnt / 2).checked_div(cnt) {
                *o = mean.max(1) as u16;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_leave_no_data_out_and_keep_edges() {
        // 3 rows × 3 valid pixels in a buffer 4 wide.
        #[rustfmt::skip]
        let block = [
            10, 0, 7, 99,
            20, 0, 0, 99,
            0, 0, 9, 99,
        ];
        let out = coarsen(&block, 4, 3, 3, 2);
        assert_eq!(out, vec![15, 7, NODATA, 9]);
        assert_eq!(coarsen(&[0, 0, 0, 0], 2, 2, 2, 1), vec![NODATA]);
        assert_eq!(coarsen(&[1, 2, 0, 0], 2, 2, 2, 1), vec![2], "1.5 rounds half up");
    }

    #[test]
    fn levels_halve_while_the_short_side_keeps_256() {
        let g = Grid { crs: Crs::LonLat, west: 0.0, north: 0.0, res: 1e-4, width: 2048, height: 1024, footprint: [0.0; 4] };
        let s = level_shapes(&g, 10.2);
        let names: Vec<&str> = s.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["r10m", "r20m", "r40m"]);
        assert_eq!((s[2].h, s[2].w), (256, 512));
        assert_eq!(s[2].t.a, 4e-4);
    }
}
