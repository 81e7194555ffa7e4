//! Coordinates and CRS of output grids: UTM on WGS 84 (EPSG 326zz/327zz, what
//! Sentinel-2 grids are, and an option for Sentinel-1) and geographic lon/lat
//! (EPSG:4326, Sentinel-1's default, like the reference). Transforms are
//! pixel-EDGE based (GDAL/rasterio convention): the origin is the outer corner
//! of the first pixel, not its centre.

use serde_json::{Map, Value, json};

use super::{Result, WorkloadError};

const A: f64 = 6_378_137.0;
const INV_F: f64 = 298.257_223_563;
const K0: f64 = 0.9996;

/// A WGS 84 / UTM zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utm {
    pub zone: u32,
    pub north: bool,
}

/// Krüger series coefficients of WGS 84: (n, A) of the rectifying sphere.
fn kruger() -> (f64, f64) {
    let f = 1.0 / INV_F;
    let n = f / (2.0 - f);
    let n2 = n * n;
    (n, A / (1.0 + n) * (1.0 + n2 / 4.0 + n2 * n2 / 64.0))
}

impl Utm {
    /// The zone a lon/lat point falls in (the plain 6° rule, without the
    /// Norway/Svalbard exceptions).
    pub fn containing(lon: f64, lat: f64) -> Self {
        let zone = (((lon + 180.0) / 6.0).floor() as i64).rem_euclid(60) as u32 + 1;
        Self {
            zone,
            north: lat >= 0.0,
        }
    }

    pub fn from_epsg(epsg: u32) -> Result<Self> {
        match epsg {
            32601..=32660 => Ok(Self {
                zone: epsg - 32600,
                north: true,
            }),
            32701..=32760 => Ok(Self {
                zone: epsg - 32700,
                north: false,
            }),
            _ => Err(WorkloadError::Usage(format!(
                "EPSG:{epsg} is not a WGS 84 / UTM zone; Sentinel-2 grids always are"
            ))),
        }
    }
    pub fn epsg(self) -> u32 {
        if self.north {
            32600 + self.zone
        } else {
            32700 + self.zone
        }
    }
    pub fn name(self) -> String {
        format!(
            "WGS 84 / UTM zone {}{}",
            self.zone,
            if self.north { "N" } else { "S" }
        )
    }
    fn central_meridian(self) -> f64 {
        f64::from(self.zone) * 6.0 - 183.0
    }
    fn false_northing(self) -> f64 {
        if self.north { 0.0 } else { 10_000_000.0 }
    }

    /// WKT1 (the form GDAL and pyproj's `to_wkt("WKT1_GDAL")` print).
    pub fn wkt(self) -> String {
        format!(
            concat!(
                r#"PROJCS["{name}",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],"#,
                r#"PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]],"#,
                r#"PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",{cm}],PARAMETER["scale_factor",0.9996],"#,
                r#"PARAMETER["false_easting",500000],PARAMETER["false_northing",{fn_}],UNIT["metre",1,AUTHORITY["EPSG","9001"]],"#,
                r#"AXIS["Easting",EAST],AXIS["Northing",NORTH],AUTHORITY["EPSG","{epsg}"]]"#
            ),
            name = self.name(),
            cm = self.central_meridian(),
            fn_ = self.false_northing(),
            epsg = self.epsg()
        )
    }

    /// CF grid-mapping attributes for the `spatial_ref` variable (what xarray,
    /// rioxarray and TiTiler read the CRS from), plus GDAL's `GeoTransform`.
    pub fn cf_attrs(self, t: &Transform) -> Value {
        let mut m = wgs84_cf(&self.wkt(), t);
        m.extend(json_map(json!({
            "projected_crs_name": self.name(),
            "grid_mapping_name": "transverse_mercator",
            "latitude_of_projection_origin": 0.0,
            "longitude_of_central_meridian": self.central_meridian(),
            "false_easting": 500_000.0,
            "false_northing": self.false_northing(),
            "scale_factor_at_central_meridian": K0,
        })));
        Value::Object(m)
    }

    /// (longitude, latitude) in degrees → (easting, northing), by the Krüger
    /// series (sub-millimetre inside a zone; the inverse of `to_lonlat`).
    pub fn from_lonlat(self, lon: f64, lat: f64) -> (f64, f64) {
        let (nn, big_a) = kruger();
        let (n2, n3) = (nn * nn, nn * nn * nn);
        let alpha = [
            nn / 2.0 - 2.0 * n2 / 3.0 + 5.0 * n3 / 16.0,
            13.0 * n2 / 48.0 - 3.0 * n3 / 5.0,
            61.0 * n3 / 240.0,
        ];
        let phi = lat.to_radians();
        let dlam = (lon - self.central_meridian()).to_radians();
        let c = 2.0 * nn.sqrt() / (1.0 + nn);
        let t = (phi.sin().atanh() - c * (c * phi.sin()).atanh()).sinh();
        let xi_p = t.atan2(dlam.cos());
        let eta_p = (dlam.sin() / (1.0 + t * t).sqrt()).atanh();
        let (mut xi, mut eta) = (xi_p, eta_p);
        for (j, a) in alpha.iter().enumerate() {
            let k = 2.0 * (j as f64 + 1.0);
            xi += a * (k * xi_p).sin() * (k * eta_p).cosh();
            eta += a * (k * xi_p).cos() * (k * eta_p).sinh();
        }
        (
            500_000.0 + K0 * big_a * eta,
            self.false_northing() + K0 * big_a * xi,
        )
    }

    /// (easting, northing) → (longitude, latitude) in degrees, by the Krüger
    /// series (sub-millimetre inside a zone).
    pub fn to_lonlat(self, e: f64, n: f64) -> (f64, f64) {
        let (nn, big_a) = kruger();
        let (n2, n3) = (nn * nn, nn * nn * nn);
        let beta = [
            nn / 2.0 - 2.0 * n2 / 3.0 + 37.0 * n3 / 96.0,
            n2 / 48.0 + n3 / 15.0,
            17.0 * n3 / 480.0,
        ];
        let delta = [
            2.0 * nn - 2.0 * n2 / 3.0 - 2.0 * n3,
            7.0 * n2 / 3.0 - 8.0 * n3 / 5.0,
            56.0 * n3 / 15.0,
        ];
        let xi = (n - self.false_northing()) / (K0 * big_a);
        let eta = (e - 500_000.0) / (K0 * big_a);
        let (mut xi_p, mut eta_p) = (xi, eta);
        for (j, b) in beta.iter().enumerate() {
            let k = 2.0 * (j as f64 + 1.0);
            xi_p -= b * (k * xi).sin() * (k * eta).cosh();
            eta_p -= b * (k * xi).cos() * (k * eta).sinh();
        }
        let chi = (xi_p.sin() / eta_p.cosh()).asin();
        let mut phi = chi;
        for (j, d) in delta.iter().enumerate() {
            phi += d * (2.0 * (j as f64 + 1.0) * chi).sin();
        }
        let lam = self.central_meridian().to_radians() + eta_p.sinh().atan2(xi_p.cos());
        (lam.to_degrees(), phi.to_degrees())
    }

    /// Lon/lat bounds of a projected box, from its densified edges (corners alone
    /// miss the bulge of UTM edges away from the central meridian).
    pub fn bbox_lonlat(self, b: [f64; 4]) -> [f64; 4] {
        let [x0, y0, x1, y1] = b;
        let steps = 32;
        let mut out = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for i in 0..=steps {
            let t = f64::from(i) / f64::from(steps);
            for (x, y) in [
                (x0 + t * (x1 - x0), y0),
                (x0 + t * (x1 - x0), y1),
                (x0, y0 + t * (y1 - y0)),
                (x1, y0 + t * (y1 - y0)),
            ] {
                let (lon, lat) = self.to_lonlat(x, y);
                out = [
                    out[0].min(lon),
                    out[1].min(lat),
                    out[2].max(lon),
                    out[3].max(lat),
                ];
            }
        }
        out
    }
}

const WKT_GEOGCS: &str = concat!(
    r#"GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],"#,
    r#"PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],"#,
    r#"AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]"#
);

/// CF attributes every WGS 84 grid mapping has: the WKT, the ellipsoid and
/// datum, and GDAL's `GeoTransform`.
fn wgs84_cf(wkt: &str, t: &Transform) -> Map<String, Value> {
    json_map(json!({
        "crs_wkt": wkt,
        "spatial_ref": wkt,
        "semi_major_axis": A,
        "semi_minor_axis": A * (1.0 - 1.0 / INV_F),
        "inverse_flattening": INV_F,
        "reference_ellipsoid_name": "WGS 84",
        "longitude_of_prime_meridian": 0.0,
        "prime_meridian_name": "Greenwich",
        "geographic_crs_name": "WGS 84",
        "horizontal_datum_name": "World Geodetic System 1984",
        "GeoTransform": t.gdal(),
    }))
}

/// The map inside a `json!({...})` literal (always an object).
fn json_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The CRS of an output grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crs {
    /// WGS 84 geographic, EPSG:4326: x = longitude, y = latitude, degrees.
    LonLat,
    Utm(Utm),
}

impl Crs {
    /// `EPSG:4326`, `4326`, `EPSG:32632`, …
    pub fn from_code(code: &str) -> Result<Self> {
        let n: u32 = code
            .trim()
            .trim_start_matches("EPSG:")
            .trim_start_matches("epsg:")
            .parse()
            .map_err(|_| {
                WorkloadError::Usage(format!(
                    "CRS `{code}`: expected EPSG:4326, EPSG:326zz/327zz (a UTM zone) or `utm`"
                ))
            })?;
        if n == 4326 {
            Ok(Self::LonLat)
        } else {
            Utm::from_epsg(n).map(Self::Utm)
        }
    }
    pub fn epsg(self) -> u32 {
        match self {
            Self::LonLat => 4326,
            Self::Utm(u) => u.epsg(),
        }
    }
    pub fn is_geographic(self) -> bool {
        self == Self::LonLat
    }
    /// Grid coordinates → (lon, lat).
    pub fn to_lonlat(self, x: f64, y: f64) -> (f64, f64) {
        match self {
            Self::LonLat => (x, y),
            Self::Utm(u) => u.to_lonlat(x, y),
        }
    }
    /// (lon, lat) → grid coordinates.
    pub fn from_lonlat(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Self::LonLat => (lon, lat),
            Self::Utm(u) => u.from_lonlat(lon, lat),
        }
    }
    pub fn bbox_lonlat(self, b: [f64; 4]) -> [f64; 4] {
        match self {
            Self::LonLat => b,
            Self::Utm(u) => u.bbox_lonlat(b),
        }
    }
    /// CF grid-mapping attributes of `spatial_ref`, with GDAL's `GeoTransform`.
    pub fn cf_attrs(self, t: &Transform) -> Value {
        match self {
            Self::Utm(u) => u.cf_attrs(t),
            Self::LonLat => {
                let mut m = wgs84_cf(WKT_GEOGCS, t);
                m.insert("grid_mapping_name".into(), json!("latitude_longitude"));
                Value::Object(m)
            }
        }
    }
    /// CF attributes of the x and y coordinate variables.
    pub fn axis_attrs(self, dim: &str) -> [(&'static str, &'static str); 3] {
        match (self, dim) {
            (Self::LonLat, "x") => [("standard_name", "longitude"), ("units", "degrees_east"), ("long_name", "longitude")],
            (Self::LonLat, _) => [("standard_name", "latitude"), ("units", "degrees_north"), ("long_name", "latitude")],
            (Self::Utm(_), "x") => [("standard_name", "projection_x_coordinate"), ("units", "m"), ("long_name", "x coordinate of projection")],
            (Self::Utm(_), _) => [("standard_name", "projection_y_coordinate"), ("units", "m"), ("long_name", "y coordinate of projection")],
        }
    }
}

/// An affine north-up grid: x = c + a·col, y = f + e·row (e < 0), at pixel edges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub a: f64,
    pub c: f64,
    pub e: f64,
    pub f: f64,
}

impl Transform {
    /// From 1-D pixel-centre coordinates (x increasing, y decreasing).
    pub fn from_centres(what: &str, x: &[f64], y: &[f64]) -> Result<Self> {
        let step = |v: &[f64], name: &str| -> Result<f64> {
            if v.len() < 2 {
                return Err(WorkloadError::product(
                    what,
                    format!("coordinate {name} has {} value(s); need 2 or more", v.len()),
                ));
            }
            let d = v[1] - v[0];
            let tol = d.abs() * 1e-6;
            if d == 0.0 || v.windows(2).any(|w| ((w[1] - w[0]) - d).abs() > tol) {
                return Err(WorkloadError::product(
                    what,
                    format!("coordinate {name} is not a regular grid"),
                ));
            }
            Ok(d)
        };
        let dx = step(x, "x")?;
        let dy = step(y, "y")?;
        if dx <= 0.0 || dy >= 0.0 {
            return Err(WorkloadError::product(
                what,
                "expected x increasing and y decreasing (north-up)",
            ));
        }
        Ok(Self {
            a: dx,
            c: x[0] - dx / 2.0,
            e: dy,
            f: y[0] - dy / 2.0,
        })
    }

    /// The grid `factor` times coarser with the same top-left corner.
    pub fn coarsen(self, factor: f64) -> Self {
        Self {
            a: self.a * factor,
            e: self.e * factor,
            ..self
        }
    }

    /// [a, 0, c, 0, e, f]: rasterio/Affine order, as `spatial:transform`.
    pub fn rasterio(&self) -> [f64; 6] {
        [self.a, 0.0, self.c, 0.0, self.e, self.f]
    }

    /// GDAL's "c a 0 f 0 e" string.
    pub fn gdal(&self) -> String {
        format!("{} {} 0.0 {} 0.0 {}", self.c, self.a, self.f, self.e)
    }

    /// [xmin, ymin, xmax, ymax] of the pixel edges of an `h`×`w` grid.
    pub fn bbox(&self, h: u64, w: u64) -> [f64; 4] {
        [
            self.c,
            self.f + self.e * h as f64,
            self.c + self.a * w as f64,
            self.f,
        ]
    }

    /// Pixel centres of column/row `i`.
    pub fn x_centre(&self, i: u64) -> f64 {
        self.c + self.a * (i as f64 + 0.5)
    }
    pub fn y_centre(&self, j: u64) -> f64 {
        self.f + self.e * (j as f64 + 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_inverse_matches_known_points() {
        // The origin of zone 32N's central meridian at the equator.
        let z = Utm {
            zone: 32,
            north: true,
        };
        let (lon, lat) = z.to_lonlat(500_000.0, 0.0);
        assert!((lon - 9.0).abs() < 1e-9 && lat.abs() < 1e-9);
        // EPSG:32632 (600000, 5100000) per pyproj 3 (always_xy): 10.292532035827, 46.046265455836.
        let (lon, lat) = z.to_lonlat(600_000.0, 5_100_000.0);
        assert!((lon - 10.292_532_035_827).abs() < 1e-8, "{lon}");
        assert!((lat - 46.046_265_455_836).abs() < 1e-8, "{lat}");
        // Southern hemisphere uses a 10,000 km false northing.
        let s = Utm {
            zone: 33,
            north: false,
        };
        let (_, lat) = s.to_lonlat(500_000.0, 10_000_000.0);
        assert!(lat.abs() < 1e-9);
    }

    #[test]
    fn utm_forward_inverts_the_inverse() {
        let z = Utm::containing(10.3, 46.0);
        assert_eq!(z, Utm { zone: 32, north: true });
        // pyproj 3: EPSG:4326 (10.292532035827, 46.046265455836) → EPSG:32632 (600000, 5100000).
        let (e, n) = z.from_lonlat(10.292_532_035_827, 46.046_265_455_836);
        assert!((e - 600_000.0).abs() < 1e-3 && (n - 5_100_000.0).abs() < 1e-3, "{e} {n}");
        for (lon, lat) in [(7.5, 60.0), (11.9, -33.0), (8.99, 0.001)] {
            let u = Utm::containing(lon, lat);
            let (e, n) = u.from_lonlat(lon, lat);
            let (lo, la) = u.to_lonlat(e, n);
            // 1e-8° ≈ 1 mm: what the 3-term series of each direction leaves.
            assert!((lo - lon).abs() < 1e-8 && (la - lat).abs() < 1e-8, "{lon} {lat}: {lo} {la}");
        }
        assert_eq!(Crs::from_code("EPSG:4326").unwrap(), Crs::LonLat);
        assert_eq!(Crs::from_code("32733").unwrap().epsg(), 32733);
        assert!(Crs::from_code("EPSG:3857").is_err());
    }

    #[test]
    fn transform_is_edge_based() {
        let x = [499_985.0, 499_995.0, 500_005.0];
        let y = [5_100_035.0, 5_100_025.0];
        let t = Transform::from_centres("t", &x, &y).unwrap();
        assert_eq!(
            t.rasterio(),
            [10.0, 0.0, 499_980.0, 0.0, -10.0, 5_100_040.0]
        );
        assert_eq!(
            t.bbox(2, 3),
            [499_980.0, 5_100_020.0, 500_010.0, 5_100_040.0]
        );
        assert_eq!(t.coarsen(2.0).x_centre(0), 499_990.0);
        assert!(Transform::from_centres("t", &[1.0, 2.0, 4.0], &y).is_err());
    }
}
