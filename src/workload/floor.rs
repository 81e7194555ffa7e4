//! The codec floor: the time to decode every source chunk the conversion reads
//! plus the time to encode every output chunk it writes, with the same cores
//! and nothing else (no I/O in the timed part, no resampling, no metadata).
//! A converter can approach it but not beat it; the benchmark reports the ratio.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::convert::read_plan;
use super::eopf::{Product, blosc_decompress, grid_indices};
use super::io::Reader;
use super::zarr3::{Encoder, chunk_key};
use super::{Result, WorkloadError};

#[derive(Debug, Serialize)]
pub struct Floor {
    pub decode_s: f64,
    pub encode_s: f64,
    pub floor_s: f64,
    pub source_chunks: usize,
    pub output_chunks: usize,
}

pub fn measure(p: &Product, out: &dyn Reader) -> Result<Floor> {
    // Decode: every chunk of every array the conversion reads.
    let arrays = read_plan(p);
    let work: Vec<_> = arrays
        .iter()
        .flat_map(|a| a.chunk_indices().into_iter().map(move |i| (*a, i)))
        .collect();
    let t0 = Instant::now();
    work.par_iter()
        .try_for_each(|(a, idx)| p.chunk(a, idx).map(drop))?;
    let decode_s = t0.elapsed().as_secs_f64();

    // Encode: every compressed output chunk, decoded first outside the clock.
    let root = out
        .get("zarr.json")?
        .ok_or_else(|| WorkloadError::SourceNotFound(out.describe("zarr.json")))?;
    let root: Value = serde_json::from_slice(&root)
        .map_err(|e| WorkloadError::product(out.describe("zarr.json"), e.to_string()))?;
    let nodes = root
        .pointer("/consolidated_metadata/metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut encode_s = 0.0;
    let mut output_chunks = 0;
    for (path, meta) in &nodes {
        if meta["node_type"] != "array" {
            continue;
        }
        let codecs = meta["codecs"].as_array().cloned().unwrap_or_default();
        let keys: Vec<String> = grid_indices(&shape_grid(meta))
            .iter()
            .map(|i| chunk_key(path, i))
            .collect();
        let (typesize, inner) = match codecs.first().and_then(|c| c["name"].as_str()) {
            Some("sharding_indexed") => {
                let shard = u64s(meta.pointer("/chunk_grid/configuration/chunk_shape"));
                let sub = u64s(codecs[0].pointer("/configuration/chunk_shape"));
                let inner_codecs = codecs[0].pointer("/configuration/codecs").and_then(Value::as_array);
                let typesize = inner_codecs
                    .and_then(|c| c.iter().find(|c| c["name"] == "blosc"))
                    .and_then(|b| b.pointer("/configuration/typesize").and_then(Value::as_u64))
                    .unwrap_or(4) as usize;
                (
                    typesize,
                    Some(
                        shard
                            .iter()
                            .zip(&sub)
                            .map(|(s, c)| (s / c.max(&1)) as usize)
                            .product::<usize>(),
                    ),
                )
            }
            _ => match codecs.iter().find(|c| c["name"] == "blosc") {
                Some(b) => (
                    b["configuration"]["typesize"].as_u64().unwrap_or(1) as usize,
                    None,
                ),
                None => continue, // uncompressed coordinates: nothing to encode
            },
        };
        let enc = Encoder::new(typesize)?;
        for key in keys {
            let Some(obj) = out.get(&key)? else { continue };
            let raws: Vec<Vec<u8>> = match inner {
                Some(n) => shard_chunks(&obj, n, &out.describe(&key))?,
                None => vec![obj],
            };
            let decoded: Vec<Vec<u8>> = raws
                .into_par_iter()
                .map(|r| {
                    blosc_decompress(r).map_err(|m| WorkloadError::Corrupt {
                        path: out.describe(&key),
                        msg: m,
                    })
                })
                .collect::<Result<_>>()?;
            output_chunks += decoded.len();
            let t = Instant::now();
            decoded
                .par_iter()
                .try_for_each(|d| enc.encode(d).map(drop))?;
            encode_s += t.elapsed().as_secs_f64();
        }
    }
    Ok(Floor {
        decode_s,
        encode_s,
        floor_s: decode_s + encode_s,
        source_chunks: work.len(),
        output_chunks,
    })
}

fn u64s(v: Option<&Value>) -> Vec<u64> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn shape_grid(meta: &Value) -> Vec<u64> {
    let chunk = u64s(meta.pointer("/chunk_grid/configuration/chunk_shape"));
    u64s(meta.get("shape"))
        .iter()
        .zip(&chunk)
        .map(|(s, c)| s.div_ceil((*c).max(1)))
        .collect()
}

/// The encoded inner chunks of a shard holding `n` inner chunks, from its
/// trailing index (16 bytes per inner chunk, then a CRC32C).
fn shard_chunks(obj: &[u8], n: usize, what: &str) -> Result<Vec<Vec<u8>>> {
    let bad = |m: &str| WorkloadError::Corrupt {
        path: what.to_string(),
        msg: m.to_string(),
    };
    let idx_len = n * 16 + 4;
    if idx_len > obj.len() {
        return Err(bad("shorter than its index"));
    }
    let idx = &obj[obj.len() - idx_len..obj.len() - 4];
    let crc = u32::from_le_bytes(obj[obj.len() - 4..].try_into().map_err(|_| bad("short"))?);
    if crc32c::crc32c(idx) != crc {
        return Err(bad("shard index checksum mismatch"));
    }
    let mut out = Vec::new();
    for e in idx.chunks_exact(16) {
        let off = u64::from_le_bytes(e[..8].try_into().map_err(|_| bad("index"))?);
        let len = u64::from_le_bytes(e[8..].try_into().map_err(|_| bad("index"))?);
        if off == u64::MAX {
            continue;
        }
        let (s, l) = (off as usize, len as usize);
        out.push(
            obj.get(s..s + l)
                .ok_or_else(|| bad("index points past the end"))?
                .to_vec(),
        );
    }
    Ok(out)
}
