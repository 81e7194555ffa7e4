//! Warping a radar-geometry image (line × pixel) to a regular lon/lat grid
//! through the GCP model, one output tile at a time, so memory is bounded by
//! a tile and the source window it needs, never the whole array.
//!
//! - The output grid (EPSG:4326 by default, or a UTM zone; square pixels)
//!   covers the swath's footprint, traced along the image's four edges. Its
//!   pixel size is GDAL's suggested one (`GDALSuggestedWarpOutput`, what the
//!   reference's `calculate_default_transform` uses): the footprint's diagonal
//!   spans as many output pixels as the image's diagonal has source pixels.
//!   Width and height are rounded up to whole tiles, so every tile is full.
//! - For a tile, the source position of every output pixel centre comes from
//!   the exact inverse on a lattice every `LATTICE` output pixels,
//!   bilinearly interpolated between (GDAL's approximate transformer does the
//!   same; the error this leaves is measured by a test, well under 0.125 px).
//! - Sampling is bilinear over the four source neighbours that hold data;
//!   `NODATA` (DN 0, what GRD borders hold) never enters an average, and an
//!   output pixel outside the image is `NODATA`: the reference converter's
//!   65535 fill leaking into averages is not reproduced.

use super::gcp::GcpGrid;
use super::geo::{Crs, Transform};

/// The value of "no data", in the source and in the output.
pub const NODATA: u16 = 0;
/// Output pixels between exact inverse evaluations: 64 leaves ~1e-3 source
/// pixels of interpolation error on a real product (measured by a test).
pub const LATTICE: u64 = 64;
/// A regular north-up grid in `crs`: west and north edges, pixel size, size in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub crs: Crs,
    pub west: f64,
    pub north: f64,
    pub res: f64,
    pub width: u64,
    pub height: u64,
    /// The swath's lon/lat bounds (the grid itself extends to whole tiles).
    pub footprint: [f64; 4],
}

impl Grid {
    /// The grid in `crs` covering `lines × pixels` of the image `g`
    /// georeferences, its width and height multiples of `tile`.
    pub fn for_image(g: &GcpGrid, crs: Crs, lines: u64, pixels: u64, tile: u64) -> Self {
        let (mut w, mut e, mut s, mut n) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let mut fp = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        let (lmax, pmax) = ((lines - 1) as f64, (pixels - 1) as f64);
        let steps = 64;
        for i in 0..=steps {
            let t = f64::from(i) / f64::from(steps);
            for (l, p) in [(t * lmax, 0.0), (t * lmax, pmax), (0.0, t * pmax), (lmax, t * pmax)] {
                let (lon, lat) = g.lonlat(l, p);
                fp = [fp[0].min(lon), fp[1].min(lat), fp[2].max(lon), fp[3].max(lat)];
                let (x, y) = crs.from_lonlat(lon, lat);
                w = w.min(x);
                e = e.max(x);
                s = s.min(y);
                n = n.max(y);
            }
        }
        let res = (e - w).hypot(n - s) / (lines as f64).hypot(pixels as f64);
        let whole = |v: f64| ((v / res).ceil() as u64).max(1).div_ceil(tile.max(1)) * tile.max(1);
        Self {
            crs,
            west: w,
            north: n,
            res,
            width: whole(e - w),
            height: whole(n - s),
            footprint: fp,
        }
    }

    /// Grid coordinates of the centre of output pixel (row, col).
    pub fn centre(&self, row: f64, col: f64) -> (f64, f64) {
        (self.west + (col + 0.5) * self.res, self.north - (row + 0.5) * self.res)
    }

    /// The affine transform of the grid (pixel edges).
    pub fn transform(&self) -> Transform {
        Transform { a: self.res, c: self.west, e: -self.res, f: self.north }
    }

    /// The grid `factor` times coarser (a pyramid level), covering the same extent.
    pub fn coarsen(&self, factor: u64) -> Self {
        Self {
            res: self.res * factor as f64,
            width: self.width.div_ceil(factor),
            height: self.height.div_ceil(factor),
            ..*self
        }
    }
}

/// Where the pixels of one output tile sample the source: the exact inverse
/// (line, pixel) on a lattice every `LATTICE` output pixels (its last row and
/// column on the tile's edge), NaN where the inverse does not exist. The
/// position of any pixel is interpolated from it on demand, so a tile costs
/// a few kilobytes however large it is.
#[derive(Debug, Clone)]
pub struct TileMap {
    pub rows: u64,
    pub cols: u64,
    lat_r: Vec<u64>,
    lat_c: Vec<u64>,
    exact: Vec<(f64, f64)>,
}

/// The tile of `rows × cols` output pixels whose top-left is (r0, c0).
pub fn tile_map(g: &GcpGrid, grid: &Grid, r0: u64, c0: u64, rows: u64, cols: u64) -> TileMap {
    let lat_r = lattice(rows);
    let lat_c = lattice(cols);
    let mut exact = Vec::with_capacity(lat_r.len() * lat_c.len());
    for &r in &lat_r {
        for &c in &lat_c {
            let (x, y) = grid.centre((r0 + r) as f64, (c0 + c) as f64);
            let (lon, lat) = grid.crs.to_lonlat(x, y);
            exact.push(g.line_pixel(lon, lat).unwrap_or((f64::NAN, f64::NAN)));
        }
    }
    TileMap { rows, cols, lat_r, lat_c, exact }
}

impl TileMap {
    /// The lattice cell of output row (or column) `v` and the position in it.
    fn cell(lat: &[u64], v: u64) -> (usize, f64) {
        let i = ((v / LATTICE) as usize).min(lat.len() - 2);
        (i, (v - lat[i]) as f64 / (lat[i + 1] - lat[i]) as f64)
    }

    /// Source (line, pixel) of output pixel (r, c) of the tile.
    pub fn position(&self, r: u64, c: u64) -> (f64, f64) {
        let (i, tr) = Self::cell(&self.lat_r, r);
        let (j, tc) = Self::cell(&self.lat_c, c);
        let nc = self.lat_c.len();
        let q = |a: usize, b: usize| self.exact[a * nc + b];
        let (a, b, c2, d) = (q(i, j), q(i, j + 1), q(i + 1, j), q(i + 1, j + 1));
        let mix = |f: fn((f64, f64)) -> f64| {
            (1.0 - tr) * ((1.0 - tc) * f(a) + tc * f(b)) + tr * ((1.0 - tc) * f(c2) + tc * f(d))
        };
        (mix(|v| v.0), mix(|v| v.1))
    }

    /// The source rows and columns the tile reads (inclusive, clamped to the
    /// image), or None when the tile falls wholly outside it. Interpolated
    /// positions are convex combinations of lattice points, so the lattice's
    /// bounds hold every one of them.
    pub fn window(&self, lines: u64, pixels: u64) -> Option<[u64; 4]> {
        let (mut l0, mut l1, mut p0, mut p1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (l, p) in &self.exact {
            if l.is_finite() && p.is_finite() {
                l0 = l0.min(*l);
                l1 = l1.max(*l);
                p0 = p0.min(*p);
                p1 = p1.max(*p);
            }
        }
        let (ln, pn) = (lines as f64 - 0.5, pixels as f64 - 0.5);
        if l0 > l1 || l1 < -0.5 || p1 < -0.5 || l0 >= ln || p0 >= pn {
            return None;
        }
        let clamp = |v: f64, n: u64| (v.max(0.0) as u64).min(n - 1);
        Some([clamp(l0.floor(), lines), clamp(l1.ceil(), lines), clamp(p0.floor(), pixels), clamp(p1.ceil(), pixels)])
    }
}

/// 0, LATTICE, 2·LATTICE, … and the last index, for an edge of `n` pixels (n ≥ 1).
fn lattice(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).step_by(LATTICE as usize).collect();
    if *v.last().unwrap_or(&0) != n - 1 || v.len() < 2 {
        v.push((n - 1).max(1));
    }
    v
}

fn inside(l: f64, p: f64, lines: u64, pixels: u64) -> bool {
    // Pixel centres at integer positions: the image spans [-0.5, n - 0.5).
    l >= -0.5 && p >= -0.5 && l < lines as f64 - 0.5 && p < pixels as f64 - 0.5
}

/// The source lines a tile may read: `rows[i]` is line `first + i`, each
/// `pixels` long, of an image of `lines × pixels`.
pub struct Source<'a> {
    pub lines: u64,
    pub pixels: u64,
    pub first: u64,
    pub rows: &'a [&'a [u16]],
}

impl Source<'_> {
    #[inline]
    fn row(&self, line: usize) -> &[u16] {
        self.rows[line - self.first as usize]
    }
}

/// The output tile, row-major: each pixel bilinear over the source neighbours
/// that hold data, NODATA outside the image. Positions advance by a constant
/// step along a row within a lattice cell.
pub fn sample(m: &TileMap, src: &Source<'_>) -> Vec<u16> {
    let mut out = Vec::with_capacity((m.rows * m.cols) as usize);
    let nc = m.lat_c.len();
    let lerp = |a: (f64, f64), b: (f64, f64), t: f64| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
    // Both neighbours inside on each axis: position < n - 1.
    let (lmax, pmax) = (((src.lines - 1) as i64) << FRAC, ((src.pixels - 1) as i64) << FRAC);
    // The pair of source rows last used: the line changes only every few pixels.
    let mut pair: (usize, &[u16], &[u16]) = (usize::MAX, &[], &[]);
    for r in 0..m.rows {
        let (i, tr) = TileMap::cell(&m.lat_r, r);
        let at = |j: usize| lerp(m.exact[i * nc + j], m.exact[(i + 1) * nc + j], tr);
        let mut c = 0;
        for j in 0..nc - 1 {
            let (a, b) = (at(j), at(j + 1));
            let span = (m.lat_c[j + 1] - m.lat_c[j]) as f64;
            let step = ((b.0 - a.0) / span, (b.1 - a.1) / span);
            let end = if j == nc - 2 { m.cols } else { m.lat_c[j + 1] };
            let t0 = (c - m.lat_c[j]) as f64;
            let (l, p) = (a.0 + step.0 * t0, a.1 + step.1 * t0);
            let last = (end - c) as f64;
            let finite = [l, p, l + step.0 * last, p + step.1 * last].iter().all(|v| v.is_finite());
            if !finite {
                // No inverse somewhere on the segment: the careful path, pixel by pixel.
                let (mut l, mut p) = (l, p);
                while c < end {
                    out.push(sample_edge(l, p, src));
                    l += step.0;
                    p += step.1;
                    c += 1;
                }
                continue;
            }
            // Fixed point (16 fractional bits): positions advance by integer
            // steps (≤ 64 × 2⁻¹⁷ px of drift per segment) and the weights are
            // integers, so the common case is loads, multiplies and shifts.
            let (mut lf, mut pf) = (fixed(l), fixed(p));
            let (dl, dp) = (fixed(step.0), fixed(step.1));
            while c < end {
                let v = if lf >= 0 && pf >= 0 && lf < lmax && pf < pmax {
                    let (li, pi) = ((lf >> FRAC) as usize, (pf >> FRAC) as usize);
                    if pair.0 != li {
                        pair = (li, src.row(li), src.row(li + 1));
                    }
                    let (v00, v01, v10, v11) = (pair.1[pi], pair.1[pi + 1], pair.2[pi], pair.2[pi + 1]);
                    if v00 != NODATA && v01 != NODATA && v10 != NODATA && v11 != NODATA {
                        let (tl, tp) = ((lf & (ONE - 1)) as u64, (pf & (ONE - 1)) as u64);
                        let one = ONE as u64;
                        let top = u64::from(v00) * (one - tp) + u64::from(v01) * tp;
                        let bot = u64::from(v10) * (one - tp) + u64::from(v11) * tp;
                        // Every neighbour is ≥ 1, so the rounded mean is too: never no-data.
                        ((top * (one - tl) + bot * tl + (1 << (2 * FRAC - 1))) >> (2 * FRAC)) as u16
                    } else {
                        sample_edge(unfixed(lf), unfixed(pf), src)
                    }
                } else {
                    sample_edge(unfixed(lf), unfixed(pf), src)
                };
                out.push(v);
                lf += dl;
                pf += dp;
                c += 1;
            }
        }
    }
    out
}

/// Fractional bits of the fixed-point positions.
const FRAC: u32 = 16;
const ONE: i64 = 1 << FRAC;

fn fixed(v: f64) -> i64 {
    (v * ONE as f64).round() as i64
}

fn unfixed(v: i64) -> f64 {
    v as f64 / ONE as f64
}

/// The general case: image edges, neighbours without data, outside the image.
fn sample_edge(l: f64, p: f64, src: &Source<'_>) -> u16 {
    let (lines, pixels) = (src.lines, src.pixels);
    if !inside(l, p, lines, pixels) {
        return NODATA;
    }
    let l = l.clamp(0.0, (lines - 1) as f64);
    let p = p.clamp(0.0, (pixels - 1) as f64);
    let (li, pi) = (l as u64, p as u64);
    let (tl, tp) = (l - li as f64, p - pi as f64);
    let (ln, pn) = ((li + 1).min(lines - 1), (pi + 1).min(pixels - 1));
    let (mut acc, mut wsum) = (0.0, 0.0);
    for (ll, wl) in [(li, 1.0 - tl), (ln, tl)] {
        for (pp, wp) in [(pi, 1.0 - tp), (pn, tp)] {
            let w = wl * wp;
            if w > 0.0 {
                let v = src.row(ll as usize)[pp as usize];
                if v != NODATA {
                    acc += w * f64::from(v);
                    wsum += w;
                }
            }
        }
    }
    // Rounded, and never rounded down into the no-data value.
    if wsum > 0.0 { ((acc / wsum).round() as u16).max(1) } else { NODATA }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::gcp::Swath;

    /// The tiny synthetic product's geometry: 334 × 522 pixels of ~500 m.
    fn setup() -> (GcpGrid, Swath, u64, u64) {
        let (lines, pixels) = (334u64, 522u64);
        let s = Swath { start: (11.9, 47.9), heading: 191.0, az: 166_770.0 / lines as f64, rg: 260_640.0 / pixels as f64 };
        (s.gcp_grid(lines, pixels, 10, 21).unwrap(), s, lines, pixels)
    }

    fn lonlat_grid(g: &GcpGrid, lines: u64, pixels: u64) -> Grid {
        Grid::for_image(g, Crs::LonLat, lines, pixels, 16)
    }

    #[test]
    fn the_grid_covers_the_swath_with_the_source_diagonal() {
        let (g, s, lines, pixels) = setup();
        let grid = lonlat_grid(&g, lines, pixels);
        for (l, p) in [(0.0, 0.0), (0.0, (pixels - 1) as f64), ((lines - 1) as f64, 0.0), ((lines - 1) as f64, (pixels - 1) as f64)] {
            let (x, y) = s.lonlat(l, p);
            assert!(x >= grid.west - 1e-9 && x <= grid.west + grid.width as f64 * grid.res + 1e-9, "lon {x}");
            assert!(y <= grid.north + 1e-9 && y >= grid.north - grid.height as f64 * grid.res - 1e-9, "lat {y}");
        }
        assert!(grid.width.is_multiple_of(16) && grid.height.is_multiple_of(16));
        // GDAL's rule: the footprint's diagonal has the image diagonal's pixel count (less the padding).
        let (w, h) = ((grid.width - 8) as f64, (grid.height - 8) as f64);
        let diag = w.hypot(h) / (lines as f64).hypot(pixels as f64);
        assert!((0.97..1.03).contains(&diag), "{diag}");
        assert_eq!(grid.coarsen(2).width, grid.width.div_ceil(2));
        // In UTM the same rule gives about the source's ground spacing.
        let (lon, lat) = s.lonlat(lines as f64 / 2.0, pixels as f64 / 2.0);
        let utm = Grid::for_image(&g, Crs::Utm(crate::workload::geo::Utm::containing(lon, lat)), lines, pixels, 16);
        assert!(utm.res > 0.8 * s.rg && utm.res < 1.6 * s.rg, "{} m for {} m pixels", utm.res, s.rg);
    }

    /// The lattice interpolation stays within a small fraction of a pixel of
    /// the exact inverse (GDAL's approximate transformer allows 0.125), on the
    /// real product's geometry (16677 × 26064 pixels of 10 m).
    #[test]
    fn tile_positions_match_the_exact_inverse() {
        let (lines, pixels) = (16_677u64, 26_064u64);
        let s = Swath { start: (11.9, 47.9), heading: 191.0, az: 166_770.0 / lines as f64, rg: 260_640.0 / pixels as f64 };
        let g = s.gcp_grid(lines, pixels, 10, 21).unwrap();
        let grid = lonlat_grid(&g, lines, pixels);
        let (r0, c0, n) = (grid.height / 3, grid.width / 3, 64);
        let m = tile_map(&g, &grid, r0, c0, n, n);
        let mut worst: f64 = 0.0;
        for r in (0..n).step_by(7) {
            for c in (0..n).step_by(5) {
                let (lon, lat) = grid.centre((r0 + r) as f64, (c0 + c) as f64);
                let (l, p) = g.line_pixel(lon, lat).unwrap();
                let (ml, mp) = m.position(r, c);
                worst = worst.max((ml - l).abs()).max((mp - p).abs());
            }
        }
        println!("lattice every {LATTICE} px: worst position error {worst:.2e} source pixels");
        assert!(worst < 0.01, "{worst}");
    }

    /// A smooth ramp warped and read back at output pixel centres gives the
    /// ramp's value where the model puts that centre; outside the swath, NODATA.
    #[test]
    fn warped_values_follow_the_model_and_nodata_stays_out() {
        let (g, _, lines, pixels) = setup();
        let grid = lonlat_grid(&g, lines, pixels);
        let image: Vec<Vec<u16>> = (0..lines).map(|l| (0..pixels).map(|p| (100 + l + 2 * p) as u16).collect()).collect();
        let rows: Vec<&[u16]> = image.iter().map(Vec::as_slice).collect();
        let m = tile_map(&g, &grid, 0, 0, grid.height, grid.width);
        let out = sample(&m, &Source { lines, pixels, first: 0, rows: &rows });
        let (mut inside_n, mut outside_n, mut worst) = (0, 0, 0.0_f64);
        for r in (0..grid.height).step_by(13) {
            for c in (0..grid.width).step_by(11) {
                let v = out[(r * grid.width + c) as usize];
                let (lon, lat) = grid.centre(r as f64, c as f64);
                match g.line_pixel(lon, lat).filter(|(l, p)| inside(*l, *p, lines, pixels)) {
                    Some((l, p)) => {
                        let (l, p) = (l.clamp(0.0, (lines - 1) as f64), p.clamp(0.0, (pixels - 1) as f64));
                        worst = worst.max((f64::from(v) - (100.0 + l + 2.0 * p)).abs());
                        inside_n += 1;
                    }
                    None => {
                        assert_eq!(v, NODATA, "outside the swath at ({r}, {c})");
                        outside_n += 1;
                    }
                }
            }
        }
        assert!(inside_n > 100 && outside_n > 100, "both sides sampled: {inside_n} in, {outside_n} out");
        assert!(worst <= 1.0, "bilinear on a ramp is exact up to rounding: {worst}");
        let win = m.window(lines, pixels).unwrap();
        assert_eq!(win, [0, lines - 1, 0, pixels - 1], "the whole image is read for the whole grid");
    }

    #[test]
    fn nodata_neighbours_are_left_out_of_the_average() {
        // A 2 × 2 tile whose lattice is its four corners: (0.5, 0.5) … (0.5, 5.0).
        let m = TileMap { rows: 1, cols: 2, lat_r: vec![0, 1], lat_c: vec![0, 1], exact: vec![(0.5, 0.5), (0.5, 5.0), (0.5, 0.5), (0.5, 5.0)] };
        // Source: a 2 × 2 block with one no-data corner, next to a full image.
        let mut image = vec![vec![300u16; 10]; 10];
        image[0][0] = NODATA;
        let rows: Vec<&[u16]> = image.iter().map(Vec::as_slice).collect();
        let out = sample(&m, &Source { lines: 10, pixels: 10, first: 0, rows: &rows });
        assert_eq!(out, vec![300, 300], "the no-data corner is not averaged in");
        let empty = vec![vec![NODATA; 10]; 10];
        let rows: Vec<&[u16]> = empty.iter().map(Vec::as_slice).collect();
        let all_nodata = sample(&m, &Source { lines: 10, pixels: 10, first: 0, rows: &rows });
        assert_eq!(all_nodata, vec![NODATA, NODATA]);
    }
}
