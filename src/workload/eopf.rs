//! The source: an EOPF product (Sentinel-2 L1C/L2A, Sentinel-1 GRD) in Zarr v2
//! with consolidated metadata. One GET of `.zmetadata` gives the whole
//! hierarchy; chunks are then fetched and decoded one at a time, and every
//! fetch is counted, so a conversion can show it read each chunk once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value};
use zarrs::array::BytesRepresentation;
use zarrs::array::codec::api::{BytesToBytesCodecTraits, CodecOptions};
use zarrs::array::codec::{
    BloscCodec, BloscCompressionLevel, BloscCompressor, BloscShuffleMode, ZstdCodec,
};

use super::io::Reader;
use super::{Result, WorkloadError};

/// An element type of the Zarr v2 `dtype` strings EOPF uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U1,
    U2,
    U4,
    U8,
    I1,
    I2,
    I4,
    I8,
    F4,
    F8,
    /// numpy `<U{n}`: n UTF-32LE code units.
    Utf32(usize),
}

impl Dtype {
    pub fn parse(s: &str) -> Option<Self> {
        let (order, rest) = s.split_at(1);
        if order == ">" && !matches!(rest, "u1" | "i1" | "b1") {
            return None; // big-endian: never in EOPF; refuse rather than misread
        }
        Some(match rest {
            "b1" => Self::Bool,
            "u1" => Self::U1,
            "u2" => Self::U2,
            "u4" => Self::U4,
            "u8" => Self::U8,
            "i1" => Self::I1,
            "i2" => Self::I2,
            "i4" => Self::I4,
            "i8" => Self::I8,
            "f4" => Self::F4,
            "f8" => Self::F8,
            _ => match rest.strip_prefix('U') {
                Some(n) => Self::Utf32(n.parse().ok()?),
                None => return None,
            },
        })
    }
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::U1 | Self::I1 => 1,
            Self::U2 | Self::I2 => 2,
            Self::U4 | Self::I4 | Self::F4 => 4,
            Self::U8 | Self::I8 | Self::F8 => 8,
            Self::Utf32(n) => 4 * n,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, Self::F4 | Self::F8)
    }
    /// The Zarr v3 `data_type` for this element type.
    pub fn v3(self) -> Value {
        let name = match self {
            Self::Bool => "bool",
            Self::U1 => "uint8",
            Self::U2 => "uint16",
            Self::U4 => "uint32",
            Self::U8 => "uint64",
            Self::I1 => "int8",
            Self::I2 => "int16",
            Self::I4 => "int32",
            Self::I8 => "int64",
            Self::F4 => "float32",
            Self::F8 => "float64",
            Self::Utf32(n) => {
                return serde_json::json!({"name": "fixed_length_utf32", "configuration": {"length_bytes": 4 * n}});
            }
        };
        Value::from(name)
    }
}

/// One Zarr v2 array of the product.
#[derive(Debug, Clone)]
pub struct ArrayV2 {
    pub path: String,
    pub shape: Vec<u64>,
    pub chunks: Vec<u64>,
    pub dtype: Dtype,
    /// The `.zarray` fill value (JSON: number, "NaN", null, string).
    pub fill: Value,
    compressor: Compressor,
    separator: char,
    pub attrs: Map<String, Value>,
}

#[derive(Debug, Clone)]
enum Compressor {
    None,
    Blosc,
    Zstd,
}

impl ArrayV2 {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    /// Chunks per dimension.
    pub fn grid(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunks)
            .map(|(s, c)| s.div_ceil(*c))
            .collect()
    }
    pub fn chunk_elems(&self) -> usize {
        self.chunks.iter().product::<u64>() as usize
    }
    pub fn key(&self, idx: &[u64]) -> String {
        if idx.is_empty() {
            return format!("{}/0", self.path);
        }
        let sep = self.separator.to_string();
        let parts: Vec<String> = idx.iter().map(u64::to_string).collect();
        format!("{}/{}", self.path, parts.join(&sep))
    }
    /// `_ARRAY_DIMENSIONS`, the xarray dimension names.
    pub fn dims(&self) -> Vec<String> {
        self.attrs
            .get("_ARRAY_DIMENSIONS")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Every chunk index, row-major.
    pub fn chunk_indices(&self) -> Vec<Vec<u64>> {
        grid_indices(&self.grid())
    }
    /// The bytes of one element equal to the `.zarray` fill value.
    fn fill_bytes(&self) -> Vec<u8> {
        let size = self.dtype.size();
        let f = &self.fill;
        match self.dtype {
            Dtype::F4 => fill_f64(f).map_or(vec![0; 4], |v| (v as f32).to_le_bytes().to_vec()),
            Dtype::F8 => fill_f64(f).map_or(vec![0; 8], |v| v.to_le_bytes().to_vec()),
            Dtype::I1 | Dtype::I2 | Dtype::I4 | Dtype::I8 => f
                .as_i64()
                .map_or(vec![0; size], |v| v.to_le_bytes()[..size].to_vec()),
            Dtype::Bool | Dtype::U1 | Dtype::U2 | Dtype::U4 | Dtype::U8 => f
                .as_u64()
                .map_or(vec![0; size], |v| v.to_le_bytes()[..size].to_vec()),
            Dtype::Utf32(_) => vec![0; size],
        }
    }
}

pub fn fill_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s == "NaN" => Some(f64::NAN),
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Which product a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ProductType {
    #[serde(rename = "S02MSIL2A")]
    L2A,
    #[serde(rename = "S02MSIL1C")]
    L1C,
    /// Sentinel-1 GRD (`S01S??GR?`: IW/EW/SM, high/medium/full resolution).
    #[serde(rename = "S01GRD")]
    S1Grd,
}

impl ProductType {
    /// From `stac_discovery.properties.product:type`; None for products this
    /// converter does not handle.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "S02MSIL2A" => Some(Self::L2A),
            "S02MSIL1C" => Some(Self::L1C),
            c if c.len() == 9 && c.starts_with("S01S") && c[6..8] == *"GR" => Some(Self::S1Grd),
            _ => None,
        }
    }
}

/// An opened product: its hierarchy (from `.zmetadata`) and the reader for chunks.
pub struct Product {
    pub reader: Arc<dyn Reader>,
    pub groups: BTreeMap<String, Map<String, Value>>,
    pub arrays: BTreeMap<String, ArrayV2>,
    pub product_type: ProductType,
    /// `product:type` as the product spells it.
    pub product_code: String,
    /// The CRS of a Sentinel-2 product's grids (S1 is in radar geometry: None).
    pub epsg: Option<u32>,
    pub root_attrs: Map<String, Value>,
    /// Chunk fetches so far (`chunk` calls), per array path.
    reads: Mutex<BTreeMap<String, u64>>,
}

/// Groups a Sentinel-2 product must have for the conversion to make sense.
pub const REQUIRED_GROUPS: [&str; 3] = [
    "measurements/reflectance/r10m",
    "measurements/reflectance/r20m",
    "measurements/reflectance/r60m",
];

impl Product {
    pub fn open(reader: Arc<dyn Reader>) -> Result<Self> {
        let raw = reader
            .get(".zmetadata")?
            .ok_or_else(|| WorkloadError::SourceNotFound(reader.describe(".zmetadata")))?;
        let doc: Value = serde_json::from_slice(&raw).map_err(|e| {
            WorkloadError::product(reader.describe(".zmetadata"), format!("not JSON: {e}"))
        })?;
        let meta = doc
            .get("metadata")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                WorkloadError::product(
                    reader.describe(".zmetadata"),
                    "no `metadata` map: not consolidated Zarr v2 metadata",
                )
            })?;
        let mut groups = BTreeMap::new();
        let mut arrays = BTreeMap::new();
        let mut attrs: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (k, v) in meta {
            let (dir, leaf) = k.rsplit_once('/').unwrap_or(("", k.as_str()));
            match leaf {
                ".zgroup" => {
                    groups.insert(dir.to_string(), Map::new());
                }
                ".zattrs" => {
                    attrs.insert(dir.to_string(), v.as_object().cloned().unwrap_or_default());
                }
                ".zarray" => {
                    arrays.insert(dir.to_string(), parse_zarray(&reader.describe(k), dir, v)?);
                }
                _ => {}
            }
        }
        for (path, a) in attrs {
            if let Some(arr) = arrays.get_mut(&path) {
                arr.attrs = a;
            } else {
                groups.insert(path, a);
            }
        }
        let root_attrs = groups.get("").cloned().unwrap_or_default();
        // S2 says what it is at the root; S1 in each polarisation's group.
        let ptype = std::iter::once(&root_attrs)
            .chain(groups.iter().filter(|(k, _)| !k.contains('/')).map(|(_, v)| v))
            .find_map(|a| {
                a.get("stac_discovery")
                    .and_then(|s| s.pointer("/properties/product:type"))
                    .and_then(Value::as_str)
            })
            .ok_or_else(|| {
                WorkloadError::product(
                    reader.describe(".zattrs"),
                    "no stac_discovery.properties.product:type: not an EOPF product",
                )
            })?
            .to_string();
        let Some(product_type) = ProductType::from_code(&ptype) else {
            return Err(WorkloadError::product(
                reader.describe(".zattrs"),
                format!(
                    "product type `{ptype}` (stac_discovery.properties.product:type) is not handled; this converter handles Sentinel-2 S02MSIL1C/S02MSIL2A and Sentinel-1 GRD (S01SIWGRH and the other S01S??GR? types)"
                ),
            ));
        };
        let s2 = matches!(product_type, ProductType::L1C | ProductType::L2A);
        if s2 {
            for g in REQUIRED_GROUPS {
                if !groups.contains_key(g) {
                    return Err(WorkloadError::product(
                        reader.describe(g),
                        "required group is missing; the product is incomplete",
                    ));
                }
            }
        }
        let mut p = Self {
            reader,
            groups,
            arrays,
            product_type,
            product_code: ptype,
            epsg: None,
            root_attrs,
            reads: Mutex::default(),
        };
        if s2 {
            p.epsg = Some(p.find_epsg()?);
        }
        Ok(p)
    }

    /// Chunk fetches made so far of `arrays`.
    pub fn chunk_reads(&self, arrays: &[&ArrayV2]) -> u64 {
        let reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        arrays.iter().filter_map(|a| reads.get(&a.path)).sum()
    }

    /// CRS: root `other_metadata.horizontal_CRS_code`, else a band's `proj:epsg`.
    fn find_epsg(&self) -> Result<u32> {
        let om = self.root_attrs.get("other_metadata");
        let code = om.and_then(|o| {
            o.get("horizontal_CRS_code")
                .or_else(|| o.get("horizontal_crs_code"))
        });
        let parsed = match code {
            Some(Value::String(s)) => s.trim_start_matches("EPSG:").parse().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
            _ => None,
        };
        if let Some(c) = parsed {
            return Ok(c);
        }
        self.arrays
            .values()
            .filter(|a| a.path.starts_with("measurements/reflectance/"))
            .find_map(|a| {
                a.attrs
                    .get("proj:epsg")
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
            })
            .ok_or_else(|| {
                WorkloadError::product(
                    self.reader.describe(".zattrs"),
                    "no CRS: neither other_metadata.horizontal_CRS_code nor proj:epsg on a band",
                )
            })
    }

    /// The product's `stac_discovery` (S2: at the root; S1: the root's, else
    /// the first polarisation group's).
    pub fn stac_discovery(&self) -> Option<&Value> {
        self.root_attrs.get("stac_discovery").or_else(|| {
            self.groups
                .iter()
                .filter(|(k, _)| !k.is_empty() && !k.contains('/'))
                .find_map(|(_, a)| a.get("stac_discovery"))
        })
    }

    pub fn id(&self) -> Option<&str> {
        self.stac_discovery()
            .and_then(|s| s.get("id"))
            .and_then(Value::as_str)
    }

    pub fn array(&self, path: &str) -> Result<&ArrayV2> {
        self.arrays.get(path).ok_or_else(|| {
            WorkloadError::product(
                self.reader.describe(path),
                "array is missing from .zmetadata",
            )
        })
    }

    /// Arrays directly inside group `group`.
    pub fn arrays_in(&self, group: &str) -> Vec<&ArrayV2> {
        self.arrays
            .values()
            .filter(|a| parent(&a.path) == group)
            .collect()
    }

    /// The decoded bytes of one chunk (full chunk shape, C order, little-endian);
    /// a missing chunk is the fill value, as Zarr defines.
    pub fn chunk(&self, a: &ArrayV2, idx: &[u64]) -> Result<Vec<u8>> {
        let key = a.key(idx);
        *self
            .reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(a.path.clone())
            .or_default() += 1;
        let expect = a.chunk_elems() * a.dtype.size();
        let Some(raw) = self.reader.get(&key)? else {
            return Ok(a.fill_bytes().repeat(a.chunk_elems()));
        };
        let out = decode(&a.compressor, raw, expect).map_err(|msg| WorkloadError::Corrupt {
            path: self.reader.describe(&key),
            msg,
        })?;
        if out.len() != expect {
            return Err(WorkloadError::Corrupt {
                path: self.reader.describe(&key),
                msg: format!(
                    "decoded {} bytes, expected {expect} ({:?} × {:?})",
                    out.len(),
                    a.chunks,
                    a.dtype
                ),
            });
        }
        Ok(out)
    }

    /// A whole array's bytes, assembled from its chunks (small arrays only: coordinates).
    pub fn read_all(&self, a: &ArrayV2) -> Result<Vec<u8>> {
        let size = a.dtype.size();
        let n: usize = a.shape.iter().product::<u64>() as usize;
        if a.shape.is_empty() {
            return self.chunk(a, &[]);
        }
        let mut out = vec![0u8; n * size];
        match a.shape.len() {
            1 => {
                for i in 0..a.grid()[0] {
                    let c = self.chunk(a, &[i])?;
                    let start = (i * a.chunks[0]) as usize;
                    let len = (a.chunks[0] as usize).min(a.shape[0] as usize - start);
                    out[start * size..(start + len) * size].copy_from_slice(&c[..len * size]);
                }
            }
            _ => {
                return Err(WorkloadError::product(
                    self.reader.describe(&a.path),
                    "read_all is for 0-D and 1-D arrays",
                ));
            }
        }
        Ok(out)
    }

    /// A 1-D coordinate as f64 (x/y are int64 pixel centres in EOPF).
    pub fn coord(&self, path: &str) -> Result<Vec<f64>> {
        let a = self.array(path)?;
        match a.dtype {
            Dtype::I8 | Dtype::F8 | Dtype::I4 | Dtype::F4 => self.read_f64(a),
            other => Err(WorkloadError::product(
                self.reader.describe(path),
                format!("coordinate of type {other:?}; expected int64 or float"),
            )),
        }
    }

    /// A small (≤ 2-D) numeric array as f64, row-major.
    pub fn read_f64(&self, a: &ArrayV2) -> Result<Vec<f64>> {
        let shape: Vec<usize> = a.shape.iter().map(|&v| v as usize).collect();
        let (h, w) = match shape.as_slice() {
            [n] => (1, *n),
            [h, w] => (*h, *w),
            _ => {
                return Err(WorkloadError::product(
                    self.reader.describe(&a.path),
                    format!("shape {:?}; expected 1-D or 2-D", a.shape),
                ));
            }
        };
        let chunks: Vec<usize> = a.chunks.iter().map(|&v| v as usize).collect();
        let (ch, cw) = if chunks.len() == 1 { (1, chunks[0]) } else { (chunks[0], chunks[1]) };
        let size = a.dtype.size();
        let mut out = vec![0f64; h * w];
        for idx in a.chunk_indices() {
            let raw = self.chunk(a, &idx)?;
            let (y0, x0) = if idx.len() == 1 { (0, idx[0] as usize * cw) } else { (idx[0] as usize * ch, idx[1] as usize * cw) };
            for r in 0..ch.min(h - y0) {
                for c in 0..cw.min(w - x0) {
                    let b = &raw[(r * cw + c) * size..(r * cw + c + 1) * size];
                    out[(y0 + r) * w + x0 + c] = number(a.dtype, b).ok_or_else(|| {
                        WorkloadError::product(
                            self.reader.describe(&a.path),
                            format!("{:?} is not a numeric type", a.dtype),
                        )
                    })?;
                }
            }
        }
        Ok(out)
    }
}

/// One little-endian element as f64.
fn number(d: Dtype, b: &[u8]) -> Option<f64> {
    let a8 = |b: &[u8]| <[u8; 8]>::try_from(b).ok();
    let a4 = |b: &[u8]| <[u8; 4]>::try_from(b).ok();
    let a2 = |b: &[u8]| <[u8; 2]>::try_from(b).ok();
    Some(match d {
        Dtype::F8 => f64::from_le_bytes(a8(b)?),
        Dtype::F4 => f64::from(f32::from_le_bytes(a4(b)?)),
        Dtype::I8 => i64::from_le_bytes(a8(b)?) as f64,
        Dtype::U8 => u64::from_le_bytes(a8(b)?) as f64,
        Dtype::I4 => f64::from(i32::from_le_bytes(a4(b)?)),
        Dtype::U4 => f64::from(u32::from_le_bytes(a4(b)?)),
        Dtype::I2 => f64::from(i16::from_le_bytes(a2(b)?)),
        Dtype::U2 => f64::from(u16::from_le_bytes(a2(b)?)),
        Dtype::I1 => f64::from(*b.first()? as i8),
        Dtype::U1 => f64::from(*b.first()?),
        Dtype::Bool | Dtype::Utf32(_) => return None,
    })
}

/// Every index of a grid with `grid[d]` cells along dimension d, row-major
/// (one empty index for a 0-D grid).
pub fn grid_indices(grid: &[u64]) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::new()];
    for &g in grid {
        out = out
            .into_iter()
            .flat_map(|p| (0..g).map(move |i| [p.clone(), vec![i]].concat()))
            .collect();
    }
    out
}

pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn parse_zarray(what: &str, path: &str, v: &Value) -> Result<ArrayV2> {
    let bad = |m: String| WorkloadError::product(what, m);
    let nums = |k: &str| -> Result<Vec<u64>> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .and_then(|o| o)
            .ok_or_else(|| bad(format!("`{k}` is missing or not a list of integers")))
    };
    let shape = nums("shape")?;
    let chunks = nums("chunks")?;
    if shape.len() != chunks.len() || chunks.contains(&0) {
        return Err(bad(format!(
            "shape {shape:?} and chunks {chunks:?} do not match"
        )));
    }
    let dts = v.get("dtype").and_then(Value::as_str).ok_or_else(|| {
        bad("`dtype` is missing or structured; only simple dtypes are supported".into())
    })?;
    let dtype = Dtype::parse(dts).ok_or_else(|| bad(format!("unsupported dtype `{dts}`")))?;
    if v.get("order").and_then(Value::as_str).unwrap_or("C") != "C" {
        return Err(bad("Fortran order is not supported".into()));
    }
    if v.get("filters")
        .is_some_and(|f| !f.is_null() && f.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(bad(format!("filters {} are not supported", v["filters"])));
    }
    let compressor = match v.get("compressor") {
        None | Some(Value::Null) => Compressor::None,
        Some(c) => match c.get("id").and_then(Value::as_str) {
            Some("blosc") => Compressor::Blosc,
            Some("zstd") => Compressor::Zstd,
            other => {
                return Err(bad(format!(
                    "compressor {other:?} is not supported (blosc, zstd or none)"
                )));
            }
        },
    };
    let separator = match v.get("dimension_separator").and_then(Value::as_str) {
        Some("/") => '/',
        _ => '.',
    };
    Ok(ArrayV2 {
        path: path.to_string(),
        shape,
        chunks,
        dtype,
        fill: v.get("fill_value").cloned().unwrap_or(Value::Null),
        compressor,
        separator,
        attrs: Map::new(),
    })
}

fn blosc_decoder() -> std::result::Result<&'static BloscCodec, String> {
    static CODEC: OnceLock<Option<BloscCodec>> = OnceLock::new();
    // Decoding reads everything it needs from the blosc header; these settings
    // only satisfy the constructor.
    CODEC
        .get_or_init(|| {
            BloscCompressionLevel::try_from(5u8).ok().and_then(|l| {
                BloscCodec::new(
                    BloscCompressor::Zstd,
                    l,
                    None,
                    BloscShuffleMode::NoShuffle,
                    None,
                )
                .ok()
            })
        })
        .as_ref()
        .ok_or_else(|| "blosc is not available in this build".to_string())
}

/// Decompress one blosc frame (its header says everything needed).
pub fn blosc_decompress(raw: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    blosc_decoder()?
        .decode(
            Cow::Owned(raw),
            &BytesRepresentation::UnboundedSize,
            &CodecOptions::default(),
        )
        .map(Cow::into_owned)
        .map_err(|e| format!("blosc: {e}"))
}

fn decode(c: &Compressor, raw: Vec<u8>, expect: usize) -> std::result::Result<Vec<u8>, String> {
    let repr = BytesRepresentation::FixedSize(expect as u64);
    let opts = CodecOptions::default();
    match c {
        Compressor::None => Ok(raw),
        Compressor::Blosc => blosc_decoder()?
            .decode(Cow::Owned(raw), &repr, &opts)
            .map(Cow::into_owned)
            .map_err(|e| format!("blosc: {e}")),
        Compressor::Zstd => ZstdCodec::new(0, false)
            .decode(Cow::Owned(raw), &repr, &opts)
            .map(Cow::into_owned)
            .map_err(|e| format!("zstd: {e}")),
    }
}
