//! Zarr v3 output: `zarr.json` documents, the chunking rules of the S2-optimised
//! layout, and a streaming writer for sharded arrays. A shard's inner chunks are
//! compressed in parallel and written in order as they are ready; the index
//! (offset, length per inner chunk, then CRC32C) goes at the end, so a shard is
//! never held whole in memory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;

use rayon::prelude::*;
use serde_json::{Map, Value, json};
use zarrs::array::codec::api::{BytesToBytesCodecTraits, CodecOptions};
use zarrs::array::codec::{BloscCodec, BloscCompressionLevel, BloscCompressor, BloscShuffleMode};

use super::io::{ObjectWrite, Sink};
use super::{Result, WorkloadError};

/// base64 of a little-endian f64 NaN: how xarray writes a NaN `_FillValue` attribute.
pub const NAN_FILL_ATTR: &str = "AAAAAAAA+H8=";

/// The chunk `aligned(dim, target)` of the reference layout: the largest divisor
/// of `dim` in (target/2, target], else `target` (which then does not divide).
pub fn aligned(dim: u64, target: u64) -> u64 {
    if target >= dim {
        return dim;
    }
    ((target / 2 + 1)..=target)
        .rev()
        .find(|c| dim.is_multiple_of(*c))
        .unwrap_or(target)
}

/// Square inner chunk for a `h`×`w` level.
pub fn inner_chunk(h: u64, w: u64, target: u64) -> u64 {
    target.min(aligned(w, target)).min(aligned(h, target))
}

/// Shard size along one dimension: the whole dimension when the chunk divides
/// it, else the largest multiple of the chunk that fits (at least one chunk).
pub fn shard_dim(dim: u64, chunk: u64) -> u64 {
    if dim.is_multiple_of(chunk) {
        dim
    } else {
        ((dim / chunk) * chunk).max(chunk)
    }
}

pub fn chunk_key(array: &str, idx: &[u64]) -> String {
    if idx.is_empty() {
        return format!("{array}/c");
    }
    let parts: Vec<String> = idx.iter().map(u64::to_string).collect();
    format!("{array}/c/{}", parts.join("/"))
}

pub fn bytes_codec(item_size: usize) -> Value {
    if item_size == 1 {
        json!({"name": "bytes"})
    } else {
        json!({"name": "bytes", "configuration": {"endian": "little"}})
    }
}

pub fn blosc_codec(typesize: usize) -> Value {
    json!({"name": "blosc", "configuration": {"typesize": typesize, "cname": "zstd", "clevel": 3, "shuffle": "shuffle", "blocksize": 0}})
}

/// The codec chain of a sharded level variable of `typesize`-byte elements.
pub fn sharded_codecs(inner: u64, typesize: usize) -> Value {
    json!([{
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": [inner, inner],
            "codecs": [bytes_codec(typesize), blosc_codec(typesize)],
            "index_codecs": [bytes_codec(8), {"name": "crc32c"}],
            "index_location": "end"
        }
    }])
}

/// An array's `zarr.json`.
pub fn array_json(
    shape: &[u64],
    chunk_shape: &[u64],
    data_type: Value,
    fill: Value,
    codecs: Value,
    attrs: Map<String, Value>,
    dims: Option<&[&str]>,
) -> Value {
    let mut doc = json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": codecs,
        "attributes": attrs,
        "storage_transformers": [],
    });
    if let Some(d) = dims {
        doc["dimension_names"] = json!(d);
    }
    doc
}

pub fn group_json(attrs: Map<String, Value>) -> Value {
    json!({"zarr_format": 3, "node_type": "group", "attributes": attrs})
}

/// blosc-zstd level 3 with byte shuffle: the reference's compressor for every array.
pub struct Encoder(BloscCodec);

impl Encoder {
    pub fn new(typesize: usize) -> Result<Self> {
        Self::with_shuffle(
            typesize,
            if typesize > 1 {
                BloscShuffleMode::Shuffle
            } else {
                BloscShuffleMode::NoShuffle
            },
        )
    }
    /// EOPF's own encoding: bit shuffle (the synthetic products use it).
    pub fn bitshuffle(typesize: usize) -> Result<Self> {
        Self::with_shuffle(typesize, BloscShuffleMode::BitShuffle)
    }
    fn with_shuffle(typesize: usize, shuffle: BloscShuffleMode) -> Result<Self> {
        let level = BloscCompressionLevel::try_from(3u8)
            .map_err(|e| WorkloadError::Usage(format!("blosc level: {e}")))?;
        BloscCodec::new(BloscCompressor::Zstd, level, None, shuffle, Some(typesize))
            .map(Self)
            .map_err(|e| WorkloadError::Usage(format!("blosc codec: {e}")))
    }
    pub fn encode(&self, raw: &[u8]) -> Result<Vec<u8>> {
        self.0
            .encode(Cow::Borrowed(raw), &CodecOptions::default())
            .map(Cow::into_owned)
            .map_err(|e| WorkloadError::Usage(format!("blosc encode: {e}")))
    }
}

/// Inner chunks compressed per parallel batch: enough to keep every core busy,
/// few enough that a batch's output stays small.
const BATCH: usize = 64;

/// Write a float32 `h`×`w` array (row-major, NaN = fill) as sharded Zarr v3
/// chunks under `array`. Inner chunks that are all NaN are left out of the shard
/// (index entry = empty); a shard with nothing in it is not written at all.
/// Returns the number of shard objects written.
pub fn write_sharded_f32(
    sink: &dyn Sink,
    array: &str,
    data: &[f32],
    h: u64,
    w: u64,
    inner: u64,
    shard_shape: [u64; 2],
) -> Result<usize> {
    let enc = Encoder::new(4)?;
    let per = [shard_shape[0] / inner, shard_shape[1] / inner];
    let mut written = 0;
    for sr in 0..h.div_ceil(shard_shape[0]) {
        for sc in 0..w.div_ceil(shard_shape[1]) {
            let chunks: Vec<(u64, u64)> = (0..per[0])
                .flat_map(|r| (0..per[1]).map(move |c| (r, c)))
                .collect();
            let mut shard = ShardWriter::new(chunk_key(array, &[sr, sc]), chunks.len());
            for batch in chunks.chunks(BATCH) {
                let encoded: Vec<Option<Vec<u8>>> = batch
                    .par_iter()
                    .map(|&(r, c)| {
                        let y0 = sr * shard_shape[0] + r * inner;
                        let x0 = sc * shard_shape[1] + c * inner;
                        match tile_f32(data, h, w, y0, x0, inner) {
                            Some(raw) => enc.encode(&raw).map(Some),
                            None => Ok(None),
                        }
                    })
                    .collect::<Result<_>>()?;
                for e in encoded {
                    shard.push(sink, e)?;
                }
            }
            if shard.finish()? {
                written += 1;
            }
        }
    }
    Ok(written)
}

/// One shard object, written as its inner chunks arrive in index order: each
/// encoded chunk goes straight to the object, only the index stays in memory.
/// The object is opened at the first non-empty chunk, so an empty shard is
/// never written.
pub struct ShardWriter {
    key: String,
    object: Option<Box<dyn ObjectWrite>>,
    index: Vec<(u64, u64)>,
    offset: u64,
}

impl ShardWriter {
    pub fn new(key: String, chunks: usize) -> Self {
        Self { key, object: None, index: Vec::with_capacity(chunks), offset: 0 }
    }

    /// The next inner chunk, encoded; None = empty (all fill).
    pub fn push(&mut self, sink: &dyn Sink, chunk: Option<Vec<u8>>) -> Result<()> {
        let Some(bytes) = chunk else {
            self.index.push((u64::MAX, u64::MAX));
            return Ok(());
        };
        let obj = match &mut self.object {
            Some(o) => o,
            None => self.object.insert(sink.open(&self.key)?),
        };
        obj.write(&bytes)?;
        self.index.push((self.offset, bytes.len() as u64));
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Append the index and complete the object; false when nothing was written.
    pub fn finish(self) -> Result<bool> {
        match self.object {
            None => Ok(false),
            Some(mut obj) => {
                obj.write(&shard_index(&self.index))?;
                obj.finish()?;
                Ok(true)
            }
        }
    }
}

/// The shard index: little-endian (offset, nbytes) pairs, then their CRC32C.
pub fn shard_index(index: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(index.len() * 16 + 4);
    for (o, n) in index {
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// One `n`×`n` tile at (y0, x0) as little-endian bytes, NaN-padded past the
/// array's edge; `None` when every value is NaN.
fn tile_f32(data: &[f32], h: u64, w: u64, y0: u64, x0: u64, n: u64) -> Option<Vec<u8>> {
    let n = n as usize;
    let (h, w, y0, x0) = (h as usize, w as usize, y0 as usize, x0 as usize);
    let mut out = Vec::with_capacity(n * n * 4);
    let mut any = false;
    let nan = f32::NAN.to_le_bytes();
    for r in 0..n {
        let y = y0 + r;
        let cols = if y < h {
            w.saturating_sub(x0).min(n)
        } else {
            0
        };
        if cols > 0 {
            let row = &data[y * w + x0..y * w + x0 + cols];
            any |= row.iter().any(|v| !v.is_nan());
            for v in row {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        for _ in cols..n {
            out.extend_from_slice(&nan);
        }
    }
    any.then_some(out)
}

/// Node documents collected while writing, so group metadata and the
/// consolidated metadata can be written last: a store without its root
/// `zarr.json` is visibly incomplete.
#[derive(Default)]
pub struct Tree {
    nodes: Mutex<BTreeMap<String, Value>>,
}

impl Tree {
    /// Write an array's `zarr.json` now and remember it.
    pub fn array(&self, sink: &dyn Sink, path: &str, doc: Value) -> Result<()> {
        sink.put(&format!("{path}/zarr.json"), to_vec(&doc)?)?;
        self.lock().insert(path.to_string(), doc);
        Ok(())
    }

    /// Remember a group's attributes (written by `finish`).
    pub fn group(&self, path: &str, attrs: Map<String, Value>) {
        self.lock().insert(path.to_string(), group_json(attrs));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write every group (creating missing intermediate ones), with inline
    /// consolidated metadata at each of `consolidate`. The root goes last.
    pub fn finish(
        &self,
        sink: &dyn Sink,
        root_attrs: Map<String, Value>,
        consolidate: &[&str],
    ) -> Result<()> {
        let mut nodes = self.lock().clone();
        let paths: Vec<String> = nodes.keys().cloned().collect();
        for p in paths {
            let mut cur = p.as_str();
            while let Some((parent, _)) = cur.rsplit_once('/') {
                nodes
                    .entry(parent.to_string())
                    .or_insert_with(|| group_json(Map::new()));
                cur = parent;
            }
        }
        nodes.insert(String::new(), group_json(root_attrs));
        let mut docs: Vec<(String, Value)> = Vec::new();
        for (path, doc) in &nodes {
            if doc["node_type"] != "group" {
                continue;
            }
            let mut doc = doc.clone();
            // zarr-python gives nested groups an empty map of their own.
            let empty = json!({"kind": "inline", "must_understand": false, "metadata": {}});
            if consolidate.contains(&path.as_str()) {
                let prefix = if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}/")
                };
                let members: Map<String, Value> = nodes
                    .iter()
                    .filter(|(k, _)| !k.is_empty() && k.starts_with(&prefix) && *k != path)
                    .map(|(k, v)| {
                        let mut v = v.clone();
                        if v["node_type"] == "group" {
                            v["consolidated_metadata"] = empty.clone();
                        }
                        (k[prefix.len()..].to_string(), v)
                    })
                    .collect();
                doc["consolidated_metadata"] =
                    json!({"kind": "inline", "must_understand": false, "metadata": members});
            }
            docs.push((path.clone(), doc));
        }
        let (root, rest): (Vec<_>, Vec<_>) = docs.into_iter().partition(|(p, _)| p.is_empty());
        for (path, doc) in rest {
            sink.put(&format!("{path}/zarr.json"), to_vec(&doc)?)?;
        }
        sink.flush()?;
        for (_, doc) in root {
            sink.put("zarr.json", to_vec(&doc)?)?;
        }
        sink.flush()
    }
}

pub fn to_vec(v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v)
        .map_err(|e| WorkloadError::Usage(format!("serialising metadata: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_matches_the_reference_table() {
        // (dim, target 256) -> inner chunk, shard; from the reference layout table.
        let cases = [
            (10980, 244, 10980),
            (5490, 183, 5490),
            (1830, 183, 1830),
            (915, 183, 915),
            (305, 256, 256),
            (152, 152, 152),
        ];
        for (dim, inner, shard) in cases {
            assert_eq!(inner_chunk(dim, dim, 256), inner, "{dim}");
            assert_eq!(shard_dim(dim, inner), shard, "{dim}");
        }
        assert_eq!(inner_chunk(10980, 10980, 512), 366);
        assert_eq!(inner_chunk(10980, 10980, 1024), 915);
    }

    #[test]
    fn tiles_pad_with_nan_and_skip_empty() {
        let data = [1.0f32, 2.0, 3.0, f32::NAN];
        let t = tile_f32(&data, 2, 2, 0, 1, 2).unwrap();
        let vals: Vec<f32> = t
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(vals[0], 2.0);
        assert!(vals[1].is_nan() && vals[2].is_nan() && vals[3].is_nan());
        assert!(tile_f32(&[f32::NAN; 4], 2, 2, 0, 0, 2).is_none());
    }
}
