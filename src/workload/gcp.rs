//! Georeferencing a Sentinel-1 GRD image from its ground control points.
//!
//! The model: the product's GCPs sit on a regular-in-index grid (`line` per
//! azimuth row, `pixel` per range column, 10 × 21 in real products) with a
//! longitude and latitude each. A pixel's position is interpolated over that
//! grid with a bicubic (Catmull-Rom) spline in (line, pixel), separably: along
//! `pixel` on the four GCP rows around the line, then along `line` across
//! those four values; at the grid's edges the missing neighbour is the
//! quadratic continuation of the three nearest, and outside the grid the
//! edge cells are continued.
//! Catmull-Rom passes through every GCP (zero error there by construction)
//! and follows the swath's curvature between them, which bilinear
//! interpolation cuts across and a single global polynomial (GDAL's default
//! GCP transformer) smooths over. The error between GCPs, against the exact
//! geometry the GCPs were sampled from, is measured by this file's tests.
//!
//! The inverse (lon/lat → line/pixel, what a warp to a regular grid asks for)
//! is Newton's method on the forward spline, started from the GCP cell whose
//! corners are nearest; it converges in a few steps because the mapping is
//! smooth and nearly affine within a cell.

/// A GCP grid: `lines` (ascending, one per row), `pixels` (ascending, one per
/// column) and lon/lat in degrees, row-major `lines.len() × pixels.len()`.
#[derive(Debug, Clone)]
pub struct GcpGrid {
    lines: Vec<f64>,
    pixels: Vec<f64>,
    lon: Vec<f64>,
    lat: Vec<f64>,
}

/// Why a GCP grid cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GcpError {
    #[error("needs at least 2 GCP rows and 2 columns, has {rows} × {cols}")]
    TooSmall { rows: usize, cols: usize },
    #[error("{what} has {got} values, expected {want}")]
    Shape { what: &'static str, got: usize, want: usize },
    #[error("{what} is not strictly increasing at index {at}")]
    NotIncreasing { what: &'static str, at: usize },
    #[error("{what} holds a value that is not finite at index {at}")]
    NotFinite { what: &'static str, at: usize },
}

fn increasing(what: &'static str, v: &[f64]) -> Result<(), GcpError> {
    for (i, w) in v.windows(2).enumerate() {
        if w[1] <= w[0] {
            return Err(GcpError::NotIncreasing { what, at: i + 1 });
        }
    }
    Ok(())
}

fn finite(what: &'static str, v: &[f64]) -> Result<(), GcpError> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(at) => Err(GcpError::NotFinite { what, at }),
        None => Ok(()),
    }
}

/// Catmull-Rom weights for the four samples around `t` in [0, 1].
fn weights(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    ]
}

/// The cell of `x` in the ascending `axis` (clamped to the first and last
/// cells) and the position within it (outside [0, 1] beyond the edges).
fn locate(axis: &[f64], x: f64) -> (usize, f64) {
    let last = axis.len() - 2;
    let i = match axis.partition_point(|&a| a <= x) {
        0 => 0,
        p => (p - 1).min(last),
    };
    (i, (x - axis[i]) / (axis[i + 1] - axis[i]))
}

impl GcpGrid {
    pub fn new(lines: Vec<f64>, pixels: Vec<f64>, lon: Vec<f64>, lat: Vec<f64>) -> Result<Self, GcpError> {
        let (rows, cols) = (lines.len(), pixels.len());
        if rows < 2 || cols < 2 {
            return Err(GcpError::TooSmall { rows, cols });
        }
        for (what, v) in [("longitude", &lon), ("latitude", &lat)] {
            if v.len() != rows * cols {
                return Err(GcpError::Shape { what, got: v.len(), want: rows * cols });
            }
            finite(what, v)?;
        }
        increasing("line", &lines)?;
        increasing("pixel", &pixels)?;
        finite("line", &lines)?;
        finite("pixel", &pixels)?;
        Ok(Self { lines, pixels, lon, lat })
    }

    pub fn rows(&self) -> usize {
        self.lines.len()
    }
    pub fn cols(&self) -> usize {
        self.pixels.len()
    }
    pub fn lines(&self) -> &[f64] {
        &self.lines
    }
    pub fn pixels(&self) -> &[f64] {
        &self.pixels
    }

    /// The GCP at row `r`, column `c`: (lon, lat).
    pub fn point(&self, r: usize, c: usize) -> (f64, f64) {
        let k = r * self.cols() + c;
        (self.lon[k], self.lat[k])
    }

    /// Value of `field` at grid index (r, c), with linear extrapolation one
    /// step beyond each edge (the spline's missing outer neighbours).
    fn at(&self, field: &[f64], r: isize, c: isize) -> f64 {
        let (rows, cols) = (self.rows() as isize, self.cols() as isize);
        let get = |r: isize, c: isize| field[(r * cols + c) as usize];
        let cr = |r: isize| r.clamp(0, rows - 1);
        let cc = |c: isize| c.clamp(0, cols - 1);
        // One step beyond an edge: the quadratic through the three nearest
        // values (the linear continuation when there are only two), so the
        // edge cells keep the swath's curvature.
        let beyond = |a: f64, b: f64, c: Option<f64>| match c {
            Some(c) => 3.0 * a - 3.0 * b + c,
            None => 2.0 * a - b,
        };
        let along_c = |r: isize| {
            if c < 0 {
                beyond(get(r, 0), get(r, 1), (cols > 2).then(|| get(r, 2)))
            } else if c >= cols {
                beyond(get(r, cols - 1), get(r, cols - 2), (cols > 2).then(|| get(r, cols - 3)))
            } else {
                get(r, cc(c))
            }
        };
        if r < 0 {
            beyond(along_c(0), along_c(1), (rows > 2).then(|| along_c(2)))
        } else if r >= rows {
            beyond(along_c(rows - 1), along_c(rows - 2), (rows > 2).then(|| along_c(rows - 3)))
        } else {
            along_c(cr(r))
        }
    }

    fn spline(&self, field: &[f64], line: f64, pixel: f64) -> f64 {
        let (r, tr) = locate(&self.lines, line);
        let (c, tc) = locate(&self.pixels, pixel);
        // Non-uniform spacing is rare in real products (the grid is regular in
        // index); the cell-local parameter keeps the spline exact at the GCPs.
        let wr = weights(tr);
        let wc = weights(tc);
        let mut acc = 0.0;
        for (i, wi) in wr.iter().enumerate() {
            let rr = r as isize + i as isize - 1;
            let mut row = 0.0;
            for (j, wj) in wc.iter().enumerate() {
                row += wj * self.at(field, rr, c as isize + j as isize - 1);
            }
            acc += wi * row;
        }
        acc
    }

    /// (lon, lat) of image position (line, pixel), in degrees.
    pub fn lonlat(&self, line: f64, pixel: f64) -> (f64, f64) {
        (self.spline(&self.lon, line, pixel), self.spline(&self.lat, line, pixel))
    }

    /// The image position whose (lon, lat) is the given one, or None when
    /// Newton's method does not settle within 1e-6 pixels (far outside the
    /// swath, where the continued spline folds).
    pub fn line_pixel(&self, lon: f64, lat: f64) -> Option<(f64, f64)> {
        // Start from the GCP nearest in degrees (scaled by latitude).
        let k = cos_deg(lat);
        let mut best = (f64::MAX, 0.0, 0.0);
        for r in 0..self.rows() {
            for c in 0..self.cols() {
                let (x, y) = self.point(r, c);
                let d = ((x - lon) * k).powi(2) + (y - lat).powi(2);
                if d < best.0 {
                    best = (d, self.lines[r], self.pixels[c]);
                }
            }
        }
        let (mut l, mut p) = (best.1, best.2);
        let h = 0.5;
        for _ in 0..30 {
            let (x, y) = self.lonlat(l, p);
            let (fx, fy) = ((x - lon) * k, y - lat);
            let (xl, yl) = self.lonlat(l + h, p);
            let (xp, yp) = self.lonlat(l, p + h);
            let (a, b) = ((xl - x) * k / h, (xp - x) * k / h);
            let (c, d) = ((yl - y) / h, (yp - y) / h);
            let det = a * d - b * c;
            if det.abs() < 1e-30 {
                return None;
            }
            let dl = (d * fx - b * fy) / det;
            let dp = (a * fy - c * fx) / det;
            l -= dl;
            p -= dp;
            if dl.abs() < 1e-6 && dp.abs() < 1e-6 {
                return Some((l, p));
            }
        }
        None
    }
}

fn cos_deg(d: f64) -> f64 {
    d.to_radians().cos()
}

/// Distance in metres between two lon/lat points (haversine on the WGS84
/// mean radius: metres-level error is all the measurement needs).
pub fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    const R: f64 = 6_371_008.8;
    let (lo1, la1, lo2, la2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().asin()
}

/// The point `dist` metres from `from` along initial bearing `bearing` degrees
/// (great circle on the mean sphere): used to lay out synthetic swaths.
pub fn destination(from: (f64, f64), bearing: f64, dist: f64) -> (f64, f64) {
    const R: f64 = 6_371_008.8;
    let (lo, la) = (from.0.to_radians(), from.1.to_radians());
    let (b, d) = (bearing.to_radians(), dist / R);
    let la2 = (la.sin() * d.cos() + la.cos() * d.sin() * b.cos()).asin();
    let lo2 = lo + (b.sin() * d.sin() * la.cos()).atan2(d.cos() - la.sin() * la2.sin());
    (lo2.to_degrees(), la2.to_degrees())
}

/// Initial bearing from `a` to `b`, degrees.
pub fn bearing(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lo1, la1, lo2, la2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let y = (lo2 - lo1).sin() * la2.cos();
    let x = la1.cos() * la2.sin() - la1.sin() * la2.cos() * (lo2 - lo1).cos();
    y.atan2(x).to_degrees()
}

/// A side-looking swath: the ground position of image (line, pixel) for a
/// satellite track starting at `start` with `heading` (degrees), `az` metres
/// per line along track and `rg` metres per pixel across it (to the right,
/// as Sentinel-1 looks). The track is a great circle, and each line's range
/// direction is perpendicular to the track where that line is: the swath
/// curves as a real one does. What synthetic products sample their GCPs from,
/// and the truth the model's error is measured against.
#[derive(Debug, Clone, Copy)]
pub struct Swath {
    pub start: (f64, f64),
    pub heading: f64,
    pub az: f64,
    pub rg: f64,
}

/// `k` indices spread evenly over `0..n` (both ends included, rounded): how
/// products space their GCP rows and columns.
pub fn spread(n: u64, k: u64) -> Vec<u64> {
    (0..k)
        .map(|i| ((n - 1) as f64 * i as f64 / (k - 1).max(1) as f64).round() as u64)
        .collect()
}

impl Swath {
    /// The `rows × cols` GCP grid a product of `lines × pixels` would carry.
    pub fn gcp_grid(&self, lines: u64, pixels: u64, rows: u64, cols: u64) -> Result<GcpGrid, GcpError> {
        let ls: Vec<f64> = spread(lines, rows).into_iter().map(|v| v as f64).collect();
        let ps: Vec<f64> = spread(pixels, cols).into_iter().map(|v| v as f64).collect();
        let (mut lon, mut lat) = (Vec::new(), Vec::new());
        for l in &ls {
            for p in &ps {
                let (x, y) = self.lonlat(*l, *p);
                lon.push(x);
                lat.push(y);
            }
        }
        GcpGrid::new(ls, ps, lon, lat)
    }

    pub fn lonlat(&self, line: f64, pixel: f64) -> (f64, f64) {
        let on_track = destination(self.start, self.heading, line * self.az);
        // The track's bearing at that point: towards a point a little further on.
        let ahead = destination(self.start, self.heading, line * self.az + 1000.0);
        let b = bearing(on_track, ahead);
        destination(on_track, b + 90.0, pixel * self.rg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real IW GRD's extent: 16677 lines × 26064 pixels at 10 m, GCPs on a
    /// 10 × 21 grid, descending over the Alps.
    fn swath() -> (Swath, u32, u32) {
        (Swath { start: (11.9, 47.9), heading: 191.0, az: 10.0, rg: 10.0 }, 16677, 26064)
    }

    /// The stated error of the model: zero at the GCPs, and between them
    /// (a dense 97 × 97 sample of the image, cell centres included) against
    /// the exact swath geometry the GCPs were taken from. Printed in metres.
    #[test]
    fn error_at_and_between_the_gcps_in_metres() {
        let (s, lines, pixels) = swath();
        let g = s.gcp_grid(lines.into(), pixels.into(), 10, 21).unwrap();
        let mut at_gcp: f64 = 0.0;
        for r in 0..g.rows() {
            for c in 0..g.cols() {
                let got = g.lonlat(g.lines()[r], g.pixels()[c]);
                at_gcp = at_gcp.max(metres(got, g.point(r, c)));
            }
        }
        let (mut max, mut sum2, mut n) = (0.0_f64, 0.0, 0.0);
        let (mut bl_max, mut bl_sum2) = (0.0_f64, 0.0);
        for i in 0..97 {
            for j in 0..97 {
                let l = f64::from(lines - 1) * f64::from(i) / 96.0;
                let p = f64::from(pixels - 1) * f64::from(j) / 96.0;
                let e = metres(g.lonlat(l, p), s.lonlat(l, p));
                max = max.max(e);
                sum2 += e * e;
                n += 1.0;
                // Bilinear over the same grid, for comparison.
                let (r, tr) = locate(&g.lines, l);
                let (c, tc) = locate(&g.pixels, p);
                let bil = |f: &[f64]| {
                    let v = |a: usize, b: usize| f[a * g.cols() + b];
                    (1.0 - tr) * ((1.0 - tc) * v(r, c) + tc * v(r, c + 1)) + tr * ((1.0 - tc) * v(r + 1, c) + tc * v(r + 1, c + 1))
                };
                let eb = metres((bil(&g.lon), bil(&g.lat)), s.lonlat(l, p));
                bl_max = bl_max.max(eb);
                bl_sum2 += eb * eb;
            }
        }
        let rms = (sum2 / n).sqrt();
        println!(
            "GCP model (Catmull-Rom over 10x21 GCPs, 16677x26064 swath): at the GCPs max {at_gcp:.2e} m; between them max {max:.3} m, RMS {rms:.3} m (bilinear: max {bl_max:.3} m, RMS {:.3} m)",
            (bl_sum2 / n).sqrt()
        );
        assert!(at_gcp < 1e-3, "the spline passes through its GCPs: {at_gcp} m");
        assert!(max < 1.5 && rms < 0.5, "between GCPs (a pixel is 10 m): max {max} m, RMS {rms} m");
        assert!(max < bl_max, "the spline follows the swath better than bilinear ({max} vs {bl_max} m)");
    }

    #[test]
    fn inverse_round_trips_inside_the_swath() {
        let (s, lines, pixels) = swath();
        let g = s.gcp_grid(lines.into(), pixels.into(), 10, 21).unwrap();
        let mut worst: f64 = 0.0;
        for (l, p) in [(0.0, 0.0), (8000.5, 13000.25), (16676.0, 26063.0), (123.0, 25000.0), (15000.0, 7.0)] {
            let (lon, lat) = g.lonlat(l, p);
            let (l2, p2) = g.line_pixel(lon, lat).expect("converges");
            worst = worst.max((l2 - l).abs()).max((p2 - p).abs());
        }
        assert!(worst < 1e-4, "round trip off by {worst} pixels");
    }

    #[test]
    fn bad_grids_are_refused_with_what_is_wrong() {
        let v = vec![0.0; 4];
        assert_eq!(GcpGrid::new(vec![0.0], vec![0.0, 1.0], v.clone(), v.clone()).unwrap_err(), GcpError::TooSmall { rows: 1, cols: 2 });
        assert_eq!(
            GcpGrid::new(vec![0.0, 1.0], vec![0.0, 1.0], vec![0.0; 3], v.clone()).unwrap_err(),
            GcpError::Shape { what: "longitude", got: 3, want: 4 }
        );
        assert_eq!(GcpGrid::new(vec![1.0, 1.0], vec![0.0, 1.0], v.clone(), v.clone()).unwrap_err(), GcpError::NotIncreasing { what: "line", at: 1 });
        assert_eq!(
            GcpGrid::new(vec![0.0, 1.0], vec![0.0, 1.0], vec![0.0, f64::NAN, 0.0, 0.0], v).unwrap_err(),
            GcpError::NotFinite { what: "longitude", at: 1 }
        );
    }

    #[test]
    fn swath_geometry_is_the_one_described() {
        let (s, ..) = swath();
        // 250 km across and 10 m per pixel: pixel 25000 is 250 km from the track.
        let d = metres(s.lonlat(0.0, 0.0), s.lonlat(0.0, 25000.0));
        assert!((d - 250_000.0).abs() < 1.0, "{d}");
        let d = metres(s.lonlat(0.0, 0.0), s.lonlat(10000.0, 0.0));
        assert!((d - 100_000.0).abs() < 1.0, "{d}");
    }
}
