//! Warping a radar-geometry image (line × pixel) to a regular lon/lat grid
//! through the GCP model, one output tile at a time, so memory is bounded by
//! a tile and the source window it needs, never the whole array.
//!
//! - The output grid (EPSG:4326, square pixels in degrees as GDAL's default
//!   transform makes them) covers the swath's footprint, traced along the
//!   image's four edges; its pixel size keeps the source's ground spacing in
//!   latitude.
//! - For a tile, the source position of every output pixel centre comes from
//!   the exact inverse on a lattice every `LATTICE` output pixels,
//!   bilinearly interpolated between (GDAL's approximate transformer does the
//!   same; the error this leaves is measured by a test, well under 0.125 px).
//! - Sampling is bilinear over the four source neighbours that hold data;
//!   `NODATA` (DN 0, what GRD borders hold) never enters an average, and an
//!   output pixel outside the image is `NODATA`: the reference converter's
//!   65535 fill leaking into averages is not reproduced.

use super::gcp::GcpGrid;

/// The value of "no data", in the source and in the output.
pub const NODATA: u16 = 0;
/// Output pixels between exact inverse evaluations.
pub const LATTICE: u64 = 16;
/// Metres per degree of latitude (mean).
const M_PER_DEG: f64 = 111_320.0;

/// A regular lon/lat grid: west and north edges, pixel size, size in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub west: f64,
    pub north: f64,
    pub res: f64,
    pub width: u64,
    pub height: u64,
}

impl Grid {
    /// The grid covering `lines × pixels` of the image `g` georeferences, at
    /// `spacing` metres per source pixel.
    pub fn for_image(g: &GcpGrid, lines: u64, pixels: u64, spacing: f64) -> Self {
        let (mut w, mut e, mut s, mut n) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let (lmax, pmax) = ((lines - 1) as f64, (pixels - 1) as f64);
        let steps = 64;
        for i in 0..=steps {
            let t = f64::from(i) / f64::from(steps);
            for (l, p) in [(t * lmax, 0.0), (t * lmax, pmax), (0.0, t * pmax), (lmax, t * pmax)] {
                let (x, y) = g.lonlat(l, p);
                w = w.min(x);
                e = e.max(x);
                s = s.min(y);
                n = n.max(y);
            }
        }
        let res = spacing / M_PER_DEG;
        Self {
            west: w,
            north: n,
            res,
            width: ((e - w) / res).ceil() as u64,
            height: ((n - s) / res).ceil() as u64,
        }
    }

    /// (lon, lat) of the centre of output pixel (row, col).
    pub fn centre(&self, row: f64, col: f64) -> (f64, f64) {
        (self.west + (col + 0.5) * self.res, self.north - (row + 0.5) * self.res)
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

/// Where the pixels of one output tile sample the source: (line, pixel) per
/// output pixel, row-major, NaN where the inverse does not exist.
#[derive(Debug, Clone)]
pub struct TileMap {
    pub rows: u64,
    pub cols: u64,
    pub lines: Vec<f64>,
    pub pixels: Vec<f64>,
}

/// The tile of `rows × cols` output pixels whose top-left is (r0, c0).
pub fn tile_map(g: &GcpGrid, grid: &Grid, r0: u64, c0: u64, rows: u64, cols: u64) -> TileMap {
    // Exact inverses on the lattice (its last row/column on the tile's edge).
    let lat_r: Vec<u64> = lattice(rows);
    let lat_c: Vec<u64> = lattice(cols);
    let mut exact = Vec::with_capacity(lat_r.len() * lat_c.len());
    for &r in &lat_r {
        for &c in &lat_c {
            let (lon, lat) = grid.centre((r0 + r) as f64, (c0 + c) as f64);
            exact.push(g.line_pixel(lon, lat).unwrap_or((f64::NAN, f64::NAN)));
        }
    }
    let nc = lat_c.len();
    let mut lines = Vec::with_capacity((rows * cols) as usize);
    let mut pixels = Vec::with_capacity((rows * cols) as usize);
    for r in 0..rows {
        let i = (r / LATTICE).min(lat_r.len() as u64 - 2) as usize;
        let tr = (r - lat_r[i]) as f64 / (lat_r[i + 1] - lat_r[i]) as f64;
        for c in 0..cols {
            let j = (c / LATTICE).min(nc as u64 - 2) as usize;
            let tc = (c - lat_c[j]) as f64 / (lat_c[j + 1] - lat_c[j]) as f64;
            let q = |a: usize, b: usize| exact[a * nc + b];
            let mix = |f: fn((f64, f64)) -> f64| {
                (1.0 - tr) * ((1.0 - tc) * f(q(i, j)) + tc * f(q(i, j + 1)))
                    + tr * ((1.0 - tc) * f(q(i + 1, j)) + tc * f(q(i + 1, j + 1)))
            };
            lines.push(mix(|v| v.0));
            pixels.push(mix(|v| v.1));
        }
    }
    TileMap { rows, cols, lines, pixels }
}

/// 0, LATTICE, 2·LATTICE, … and the last index, for an edge of `n` pixels (n ≥ 1).
fn lattice(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).step_by(LATTICE as usize).collect();
    if *v.last().unwrap_or(&0) != n - 1 || v.len() < 2 {
        v.push((n - 1).max(1));
    }
    v
}

/// The source rows and columns a tile reads (inclusive, clamped to the
/// image), or None when the whole tile falls outside it.
pub fn source_window(m: &TileMap, lines: u64, pixels: u64) -> Option<[u64; 4]> {
    let (mut l0, mut l1, mut p0, mut p1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (l, p) in m.lines.iter().zip(&m.pixels) {
        if inside(*l, *p, lines, pixels) {
            l0 = l0.min(*l);
            l1 = l1.max(*l);
            p0 = p0.min(*p);
            p1 = p1.max(*p);
        }
    }
    if l0 > l1 {
        return None;
    }
    let clamp = |v: f64, n: u64| (v.max(0.0) as u64).min(n - 1);
    Some([clamp(l0.floor(), lines), clamp(l1.ceil(), lines), clamp(p0.floor(), pixels), clamp(p1.ceil(), pixels)])
}

fn inside(l: f64, p: f64, lines: u64, pixels: u64) -> bool {
    // Pixel centres at integer positions: the image spans [-0.5, n - 0.5).
    l >= -0.5 && p >= -0.5 && l < lines as f64 - 0.5 && p < pixels as f64 - 0.5
}

/// The output tile: each pixel bilinear over the source neighbours that hold
/// data (`src(line, pixel)`, called only inside the image), NODATA outside.
pub fn sample(m: &TileMap, lines: u64, pixels: u64, src: &dyn Fn(u64, u64) -> u16) -> Vec<u16> {
    let mut out = Vec::with_capacity(m.lines.len());
    for (l, p) in m.lines.iter().zip(&m.pixels) {
        if !inside(*l, *p, lines, pixels) {
            out.push(NODATA);
            continue;
        }
        let l = l.clamp(0.0, (lines - 1) as f64);
        let p = p.clamp(0.0, (pixels - 1) as f64);
        let (li, pi) = (l.floor() as u64, p.floor() as u64);
        let (tl, tp) = (l - li as f64, p - pi as f64);
        let (ln, pn) = ((li + 1).min(lines - 1), (pi + 1).min(pixels - 1));
        let (mut acc, mut wsum) = (0.0, 0.0);
        for (ll, wl) in [(li, 1.0 - tl), (ln, tl)] {
            for (pp, wp) in [(pi, 1.0 - tp), (pn, tp)] {
                let w = wl * wp;
                let v = src(ll, pp);
                if v != NODATA && w > 0.0 {
                    acc += w * f64::from(v);
                    wsum += w;
                }
            }
        }
        // Rounded, and never rounded down into the no-data value.
        out.push(if wsum > 0.0 { ((acc / wsum).round() as u16).max(1) } else { NODATA });
    }
    out
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

    #[test]
    fn the_grid_covers_the_swath_with_the_source_spacing() {
        let (g, s, lines, pixels) = setup();
        let grid = Grid::for_image(&g, lines, pixels, s.rg);
        for (l, p) in [(0.0, 0.0), (0.0, (pixels - 1) as f64), ((lines - 1) as f64, 0.0), ((lines - 1) as f64, (pixels - 1) as f64)] {
            let (x, y) = s.lonlat(l, p);
            assert!(x >= grid.west - 1e-9 && x <= grid.west + grid.width as f64 * grid.res + 1e-9, "lon {x}");
            assert!(y <= grid.north + 1e-9 && y >= grid.north - grid.height as f64 * grid.res - 1e-9, "lat {y}");
        }
        assert!((grid.res * M_PER_DEG - s.rg).abs() < 1e-6);
        assert_eq!(grid.coarsen(2).width, grid.width.div_ceil(2));
    }

    /// The lattice interpolation stays within a small fraction of a pixel of
    /// the exact inverse (GDAL's approximate transformer allows 0.125).
    #[test]
    fn tile_positions_match_the_exact_inverse() {
        let (g, s, lines, pixels) = setup();
        let grid = Grid::for_image(&g, lines, pixels, s.rg);
        let (r0, c0, n) = (grid.height / 3, grid.width / 3, 64);
        let m = tile_map(&g, &grid, r0, c0, n, n);
        let mut worst: f64 = 0.0;
        for r in (0..n).step_by(7) {
            for c in (0..n).step_by(5) {
                let (lon, lat) = grid.centre((r0 + r) as f64, (c0 + c) as f64);
                let (l, p) = g.line_pixel(lon, lat).unwrap();
                let k = (r * n + c) as usize;
                worst = worst.max((m.lines[k] - l).abs()).max((m.pixels[k] - p).abs());
            }
        }
        println!("lattice every {LATTICE} px: worst position error {worst:.2e} source pixels");
        assert!(worst < 0.01, "{worst}");
    }

    /// A smooth ramp warped and read back at output pixel centres gives the
    /// ramp's value where the model puts that centre; outside the swath, NODATA.
    #[test]
    fn warped_values_follow_the_model_and_nodata_stays_out() {
        let (g, s, lines, pixels) = setup();
        let grid = Grid::for_image(&g, lines, pixels, s.rg);
        let ramp = |l: u64, p: u64| (100 + l + 2 * p) as u16;
        let m = tile_map(&g, &grid, 0, 0, grid.height, grid.width);
        let out = sample(&m, lines, pixels, &|l, p| ramp(l, p));
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
        let win = source_window(&m, lines, pixels).unwrap();
        assert_eq!(win, [0, lines - 1, 0, pixels - 1], "the whole image is read for the whole grid");
    }

    #[test]
    fn nodata_neighbours_are_left_out_of_the_average() {
        let m = TileMap { rows: 1, cols: 2, lines: vec![0.5, 0.5], pixels: vec![0.5, 5.0] };
        // Source: a 2 × 2 block with one no-data corner, next to a full image.
        let out = sample(&m, 10, 10, &|l, p| if (l, p) == (0, 0) { NODATA } else { 300 });
        assert_eq!(out, vec![300, 300], "the no-data corner is not averaged in");
        let all_nodata = sample(&m, 10, 10, &|_, _| NODATA);
        assert_eq!(all_nodata, vec![NODATA, NODATA]);
    }
}
