#!/usr/bin/env python3
"""Independent verification of a `provisioner workload convert` output (Sentinel-2 EOPF Zarr v2
product -> "S2-optimized" GeoZarr, Zarr v3), using only third-party readers: zarr-python for the
raw source, xarray (+ rioxarray) for the output, numpy for the expected values.

    $LAB_PY_READERS tests/support/verify_geozarr.py --source <v2 product dir> \
        --output <dir or s3://bucket/prefix/<collection>/<item>.zarr> [--level-sample N]

s3:// paths (either argument) are read with s3fs from the lab's moto endpoint: $S3_ENDPOINT_URL
(or $AWS_ENDPOINT_URL), $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, $AWS_REGION. Without an
endpoint an s3:// path is refused (exit 2): the script never contacts anything else.

What is checked (one line per check, then a JSON summary line; exit 1 if any check failed,
2 if an input is missing or unreadable):
  store      root zarr.json is Zarr v3 with inline consolidated metadata; the consolidated
             metadata lists exactly the nodes on storage, with identical metadata; no quicklook.
  levels     /measurements/reflectance/{r10m,r20m,r60m,r120m,r360m,r720m}, each opened with
             xarray.open_dataset(engine="zarr", consolidated=True, decode_coords="all"):
             variable set, float32 + NaN fill + dims (y, x) + sharding + grid_mapping attr per
             band, 0-D int64 spatial_ref with CF attrs (and GeoTransform, GDAL order, ==
             expected if written), rioxarray CRS == source EPSG (dataset and every band), x/y
             centres (int64 copies at r10m-r60m, float64 window means
             above), rio.transform() == spatial:transform == edge-based transform derived from
             the SOURCE coordinates, spatial:shape, spatial:bbox (edges), proj:code.
  values     r10m/r20m/r60m: float32(DN * scale_factor + add_offset) computed in float64, NaN
             where DN == fill, exact (NaN == NaN). Injected b08 at r20m/r60m: NaN-mean of the
             decoded source r10m b08 over 2x2 / 6x6 windows (rtol/atol). r120m/r360m/r720m:
             NaN-mean of the output level below over 2/3/2 windows, remainders trimmed
             (rtol/atol, NaN positions identical).
  multiscales /measurements/reflectance attrs: layout assets in order, derived_from,
             transform.scale, spatial:shape, spatial:transform per entry.
  quality    every source /quality/*/rXXm (not quicklook): opens with the source CRS, same
             variables, dtypes and values, x/y, spatial attrs and transform.
  conditions every source /conditions array exists with the same dtype, shape and chunking;
             one array per dtype (the smallest) has identical values.
--level-sample N (default 0 = everything) compares values at r10m/r20m (and quality r10m/r20m)
only in three NxN windows (top-left, centre, bottom-right); r60m and the coarse levels stay full.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # zarr v3 consolidated / unstable dtype / numpy all-NaN slices

try:
    import numpy as np
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr
    from pyproj import CRS

    from geozarr_checks import (R, InputError, Loc, consolidated_diff, finish, load_inputs, open_output_root,
                                parse_epsg, root_consolidated, walk_arrays, windows)
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"verify_geozarr: missing reader library ({e}); run it with $LAB_PY_READERS\n")
    sys.exit(2)

# (level, nominal pixel factor relative to r10m, native in source?, parent level, factor vs parent)
LEVELS = [
    ("r10m", 1, True, None, None),
    ("r20m", 2, True, "r10m", 2),
    ("r60m", 6, True, "r10m", 6),
    ("r120m", 12, False, "r60m", 2),
    ("r360m", 36, False, "r120m", 3),
    ("r720m", 72, False, "r360m", 2),
]
NATIVE = [lv for lv, _, nat, _, _ in LEVELS if nat]
COARSE = [(lv, par, f) for lv, _, nat, par, f in LEVELS if not nat]
REFL = "measurements/reflectance"
TRANSFORM_ATOL = 1e-6  # metres; all expected numbers are exact multiples of 0.5 m


# ----------------------------------------------------------------------------------- helpers
def source_epsg(src) -> tuple[int, str]:
    om = src.attrs.get("other_metadata") or {}
    for k in ("horizontal_CRS_code", "horizontal_crs_code"):
        if parse_epsg(om.get(k)):
            return parse_epsg(om.get(k)), f"root other_metadata.{k}"
    for lvl in NATIVE:
        g = src.get(f"{REFL}/{lvl}")
        if g is None:
            continue
        for name, a in g.arrays():
            if parse_epsg(a.attrs.get("proj:epsg")):
                return parse_epsg(a.attrs["proj:epsg"]), f"{REFL}/{lvl}/{name} attr proj:epsg"
    sd = (src.attrs.get("stac_discovery") or {}).get("properties") or {}
    if parse_epsg(sd.get("proj:epsg")):
        return parse_epsg(sd["proj:epsg"]), "root stac_discovery.properties.proj:epsg"
    raise InputError("source has no CRS (other_metadata.horizontal_CRS_code / proj:epsg)")


def dims_of(a) -> list[str]:
    d = a.attrs.get("_ARRAY_DIMENSIONS")
    if d is None and getattr(a.metadata, "zarr_format", 2) == 3:
        d = a.metadata.dimension_names
    return list(d or [])


def band_names(group) -> list[str]:
    return sorted(n for n, a in group.arrays() if dims_of(a)[-2:] == ["y", "x"] and a.ndim == 2)


def source_fill(a):
    for k in ("_FillValue", "fill_value"):
        if k in a.attrs and a.attrs[k] is not None:
            return a.attrs[k]
    return a.fill_value


def decode(dn: np.ndarray, scale: float, offset: float, fill) -> np.ndarray:
    v = dn.astype(np.float64) * float(scale) + float(offset)
    if fill is not None:
        v[dn == fill] = np.nan
    return v.astype(np.float32)


def decode64(dn: np.ndarray, scale: float, offset: float, fill) -> np.ndarray:
    v = dn.astype(np.float64) * float(scale) + float(offset)
    if fill is not None:
        v[dn == fill] = np.nan
    return v


def nanmean_windows(a: np.ndarray, f: int) -> np.ndarray:
    """NaN-ignoring mean over f x f windows from the top-left, remainders trimmed, float64."""
    h, w = a.shape[0] // f, a.shape[1] // f
    b = np.asarray(a, dtype=np.float64)[: h * f, : w * f].reshape(h, f, w, f)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(b, axis=(1, 3))


def window_means_1d(v: np.ndarray, f: int) -> np.ndarray:
    n = len(v) // f
    return np.asarray(v, dtype=np.float64)[: n * f].reshape(n, f).mean(axis=1)


def exact_diff(got: np.ndarray, exp: np.ndarray) -> str | None:
    """None if identical (NaN == NaN), else a short description of the differences."""
    if got.shape != exp.shape:
        return f"shape {got.shape} != expected {exp.shape}"
    gn, en = np.isnan(got), np.isnan(exp)
    bad = (gn != en) | (~gn & ~en & (got != exp))
    if not bad.any():
        return None
    i = np.argwhere(bad)[0]
    return (f"{int(bad.sum())} differing px (NaN only in output: {int((gn & ~en).sum())}, NaN only "
            f"expected: {int((en & ~gn).sum())}); first at {tuple(int(k) for k in i)}: "
            f"got {got[tuple(i)]!r} expected {exp[tuple(i)]!r}")


def close_diff(got: np.ndarray, exp: np.ndarray, rtol: float, atol: float) -> str | None:
    if got.shape != exp.shape:
        return f"shape {got.shape} != expected {exp.shape}"
    gn, en = np.isnan(got), np.isnan(exp)
    if (gn != en).any():
        i = np.argwhere(gn != en)[0]
        return (f"NaN positions differ at {int((gn != en).sum())} px; first at {tuple(int(k) for k in i)}: "
                f"got {got[tuple(i)]!r} expected {exp[tuple(i)]!r}")
    g, e = got[~gn].astype(np.float64), exp[~en].astype(np.float64)
    tol = atol + rtol * np.abs(e)
    bad = np.abs(g - e) > tol
    if not bad.any():
        return None
    k = int(np.argmax(np.abs(g - e) - tol))
    return f"{int(bad.sum())} px outside rtol={rtol} atol={atol}; worst got {g[k]!r} expected {e[k]!r}"


def raw_equal(got: np.ndarray, exp: np.ndarray) -> str | None:
    if got.dtype.kind == "f" or exp.dtype.kind == "f":
        return exact_diff(np.asarray(got, dtype=np.float64), np.asarray(exp, dtype=np.float64)) \
            if got.dtype == exp.dtype else f"dtype {got.dtype} != {exp.dtype}"
    if got.shape != exp.shape:
        return f"shape {got.shape} != expected {exp.shape}"
    bad = got != exp
    if not np.any(bad):
        return None
    i = np.argwhere(np.asarray(bad))[0] if np.ndim(bad) else ()
    return f"{int(np.sum(bad))} differing elements; first at {tuple(int(k) for k in i)}"


def stripes(h: int, rows: int):
    for r0 in range(0, h, rows):
        yield r0, min(h, r0 + rows)


class RowCache:
    """Sequential row-stripe reads of a (big) source array, one source chunk-row block at a time,
    so that each source chunk is decoded once in full mode."""

    def __init__(self, arr):
        self.arr = arr
        self.ch = arr.chunks[0]
        self.lo = self.hi = -1
        self.block = None

    def rows(self, r0: int, r1: int, cols: slice = slice(None)) -> np.ndarray:
        if cols != slice(None):
            return self.arr[r0:r1, cols]
        if not (self.lo <= r0 and r1 <= self.hi):
            lo = (r0 // self.ch) * self.ch
            hi = min(self.arr.shape[0], -(-r1 // self.ch) * self.ch)
            self.block, self.lo, self.hi = self.arr[lo:hi, :], lo, hi
        return self.block[r0 - self.lo: r1 - self.lo]


def stripe_rows(out_arr, width: int, multiple: int = 1, budget_px: int = 6_000_000) -> int:
    """Rows per comparison stripe: a multiple of the output inner chunk height (and of `multiple`)."""
    try:
        inner = out_arr.chunks[0]
    except Exception:  # noqa: BLE001
        inner = 256
    base = inner * multiple // math.gcd(inner, multiple)
    k = max(1, budget_px // max(1, base * width))
    return base * k


def transform_close(a, b) -> bool:
    return a is not None and b is not None and len(a) >= 6 and len(b) >= 6 and \
        all(abs(float(x) - float(y)) <= TRANSFORM_ATOL for x, y in zip(list(a)[:6], list(b)[:6]))


def fmt_t(t) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in list(t)[:6]) + "]"


# ----------------------------------------------------------------------------------- grids
class Grid:
    """Expected pixel grid of a level (edge-based transform + centre coordinates)."""

    def __init__(self, a, e, c, f, h, w, xc, yc):
        self.a, self.e, self.c, self.f, self.h, self.w = float(a), float(e), float(c), float(f), h, w
        self.xc, self.yc = xc, yc  # expected centre coordinates (numpy)

    @property
    def transform(self):
        return [self.a, 0.0, self.c, 0.0, self.e, self.f]

    @property
    def bbox(self):
        return [self.c, self.f + self.e * self.h, self.c + self.a * self.w, self.f]


def grid_from_coords(xs: np.ndarray, ys: np.ndarray, what: str) -> Grid:
    if len(xs) < 2 or len(ys) < 2:
        raise InputError(f"{what}: x/y need at least 2 values")
    dx, dy = np.diff(xs.astype(np.float64)), np.diff(ys.astype(np.float64))
    a, e = float(dx[0]), float(dy[0])
    if not (np.allclose(dx, a) and np.allclose(dy, e)) or a <= 0 or e >= 0:
        raise InputError(f"{what}: x must increase and y decrease with constant spacing")
    return Grid(a, e, float(xs[0]) - a / 2, float(ys[0]) - e / 2, len(ys), len(xs), xs, ys)


def coarse_grid(g: Grid, f: int) -> Grid:
    return Grid(g.a * f, g.e * f, g.c, g.f, g.h // f, g.w // f,
                window_means_1d(g.xc, f), window_means_1d(g.yc, f))


# ----------------------------------------------------------------------------------- checks
def lint_fill_attrs(zg, label: str):
    """xarray (2026.x) decodes a Zarr v3 `_FillValue` attribute with a strict coder: for float arrays
    it must be the base64 of the little-endian float64 (NaN = "AAAAAAAA+H8="), for integer arrays a
    JSON number. Anything else ("NaN", base64 of a float32, a number on a float array) makes
    xarray.open_dataset -- and therefore TiTiler -- fail on the whole group."""
    import base64
    import binascii
    bad = []
    for name, a in zg.arrays():
        if "_FillValue" not in a.attrs:
            continue
        fv = a.attrs["_FillValue"]
        if a.dtype.kind == "f":
            try:
                ok = isinstance(fv, str) and len(base64.b64decode(fv, validate=True)) == 8
            except (binascii.Error, ValueError):
                ok = False
            if not ok:
                bad.append(f"{name}: {fv!r} (want base64 of a float64, e.g. 'AAAAAAAA+H8=' for NaN)")
        elif a.dtype.kind in "iu" and not isinstance(fv, (int, float)):
            bad.append(f"{name}: {fv!r} on {a.dtype} (want a JSON number)")
    R.add(f"{label}: _FillValue attrs decodable by xarray", not bad, "; ".join(bad[:4]))


def open_level(out: Loc, group: str, consolidated: bool = True) -> xr.Dataset:
    return xr.open_dataset(out.store, engine="zarr", group=group, consolidated=consolidated,
                           decode_coords="all", chunks=None)


def open_level_checked(out: Loc, group: str, label: str) -> xr.Dataset | None:
    """Open with consolidated=True (a check); if that fails, fall back to consolidated=False so
    that the remaining checks still run. Returns None if the group does not open at all."""
    try:
        ds = open_level(out, group)
        R.add(f"{label}: opens with xarray (consolidated=True)", True, f"dims {dict(ds.sizes)}")
        return ds
    except Exception as e:  # noqa: BLE001
        R.add(f"{label}: opens with xarray (consolidated=True)", False, f"{type(e).__name__}: {e}")
    try:
        ds = open_level(out, group, consolidated=False)
        print(f"#   {label}: opened with consolidated=False for the remaining checks", flush=True)
        return ds
    except Exception as e:  # noqa: BLE001
        R.add(f"{label}: opens with xarray (consolidated=False)", False, f"{type(e).__name__}: {e}")
        return None


def check_store(out: Loc):
    name = "store"
    cons = root_consolidated(out)
    if cons is None:
        return
    with R.guard(f"{name}: consolidated metadata vs storage"):
        disk = out.metadata_nodes()
        missing, extra, stale = consolidated_diff(out, disk, cons)
        R.add(f"{name}: consolidated metadata lists every node on storage",
              not missing and not extra,
              f"{len(disk)} nodes" + (f"; not consolidated: {missing[:8]}" if missing else "")
              + (f"; consolidated but absent: {extra[:8]}" if extra else ""))
        R.add(f"{name}: consolidated metadata equals every node's zarr.json", not stale,
              f"stale: {stale[:8]}" if stale else f"{len(disk)} nodes compared")
        ql = [k for k in disk if "quicklook" in k]
        R.add(f"{name}: no /quality/*quicklook* groups", not ql, f"found {ql[:4]}" if ql else "")


def check_level_metadata(lvl: str, ds: xr.Dataset, zg, grid: Grid, epsg: int, expected_vars: list[str],
                         native: bool):
    p = f"{lvl}"
    dvars = sorted(v for v in ds.data_vars if v != "spatial_ref")
    R.add(f"{p}: variables", dvars == sorted(expected_vars),
          f"got {dvars}" + ("" if dvars == sorted(expected_vars) else f", expected {sorted(expected_vars)}"))
    # per-band encoding (raw zarr metadata) and dims
    problems = []
    for v in dvars:
        a = zg[v]
        md = a.metadata
        codecs = [c.get("name") for c in md.to_dict().get("codecs", [])]
        fv = a.fill_value
        if a.dtype != np.float32:
            problems.append(f"{v}: dtype {a.dtype}")
        if not (isinstance(fv, (float, np.floating)) and np.isnan(fv)):
            problems.append(f"{v}: fill_value {fv!r}")
        if list(md.dimension_names or []) != ["y", "x"]:
            problems.append(f"{v}: dimension_names {md.dimension_names}")
        if not codecs or codecs[0] != "sharding_indexed":
            problems.append(f"{v}: not sharded (codecs {codecs})")
        if a.attrs.get("grid_mapping") != "spatial_ref":
            problems.append(f"{v}: attr grid_mapping={a.attrs.get('grid_mapping')!r}")
        for k in ("scale_factor", "add_offset"):
            if k in a.attrs:
                problems.append(f"{v}: leftover CF attr {k} (readers would rescale)")
        if ds[v].dims != ("y", "x"):
            problems.append(f"{v}: xarray dims {ds[v].dims}")
    R.add(f"{p}: bands float32, fill NaN, dims [y,x], sharded, grid_mapping=spatial_ref", not problems,
          "; ".join(problems[:6]) if problems else f"{len(dvars)} bands")

    # spatial_ref
    sr_ok, det = False, "missing"
    if "spatial_ref" in zg:
        sr = zg["spatial_ref"]
        at = dict(sr.attrs)
        issues = []
        if sr.shape != () or sr.dtype != np.int64:
            issues.append(f"shape {sr.shape} dtype {sr.dtype}")
        wkt = at.get("crs_wkt") or at.get("spatial_ref")
        if not at.get("crs_wkt"):
            issues.append("no crs_wkt")
        if not at.get("grid_mapping_name"):
            issues.append("no grid_mapping_name")
        elif 32601 <= epsg <= 32760 and at["grid_mapping_name"] != "transverse_mercator":
            issues.append(f"grid_mapping_name {at['grid_mapping_name']}")
        if wkt and CRS.from_wkt(wkt).to_epsg() != epsg:
            issues.append(f"crs_wkt is EPSG:{CRS.from_wkt(wkt).to_epsg()}")
        if "spatial_ref" not in ds.coords:
            issues.append("not a coordinate after decode_coords='all' (grid_mapping not linked)")
        if "GeoTransform" in at:  # optional (GDAL order c a b f d e); rioxarray 0.19 prefers the coords
            try:
                c_, a_, b_, f_, d_, e_ = (float(v) for v in str(at["GeoTransform"]).split())
                if not transform_close([a_, b_, c_, d_, e_, f_], grid.transform):
                    issues.append(f"GeoTransform {at['GeoTransform']!r} != expected {fmt_t(grid.transform)}")
            except ValueError:
                issues.append(f"GeoTransform {at['GeoTransform']!r} is not 6 numbers")
        sr_ok, det = not issues, "; ".join(issues) or f"grid_mapping_name={at.get('grid_mapping_name')}"
    R.add(f"{p}: spatial_ref 0-D int64 with CF grid-mapping attrs", sr_ok, det)

    # CRS through rioxarray (dataset and each band, as TiTiler reads a DataArray)
    crs = ds.rio.crs
    bad = [v for v in dvars if ds[v].rio.crs is None or ds[v].rio.crs.to_epsg() != epsg]
    R.add(f"{p}: rioxarray CRS == EPSG:{epsg}", crs is not None and crs.to_epsg() == epsg and not bad,
          f"dataset {crs}" + (f"; bands without it: {bad[:5]}" if bad else ""))

    # coordinates
    xo, yo = ds["x"].values, ds["y"].values
    want_dtype = np.int64 if native else np.float64
    cdet = []
    if xo.dtype != want_dtype or yo.dtype != want_dtype:
        cdet.append(f"dtype x={xo.dtype} y={yo.dtype}, expected {np.dtype(want_dtype)}")
    if xo.shape != grid.xc.shape or yo.shape != grid.yc.shape:
        cdet.append(f"len x={len(xo)} y={len(yo)}, expected {len(grid.xc)}/{len(grid.yc)}")
    elif native:
        if not (np.array_equal(xo, grid.xc) and np.array_equal(yo, grid.yc)):
            cdet.append("values differ from the source coordinates")
    else:
        if not (np.allclose(xo, grid.xc, rtol=0, atol=1e-6) and np.allclose(yo, grid.yc, rtol=0, atol=1e-6)):
            cdet.append(f"not the mean of the fine centres (x[0]={xo[0]!r}, expected {grid.xc[0]!r})")
        ideal_x = grid.c + grid.a * (np.arange(grid.w) + 0.5)
        if xo.shape == ideal_x.shape and not np.allclose(xo, ideal_x, rtol=0, atol=1e-6):
            cdet.append("x centres not on the level's pixel grid")
    R.add(f"{p}: x/y pixel centres ({'int64 from source' if native else 'float64 window means'})",
          not cdet, "; ".join(cdet) or f"x[0]={xo[0]!r} y[0]={yo[0]!r}")

    # transforms
    rio_t = list(ds.rio.transform())[:6]
    R.add(f"{p}: rio.transform() == edge transform from source coords",
          transform_close(rio_t, grid.transform), f"rio {fmt_t(rio_t)} expected {fmt_t(grid.transform)}")
    at = dict(zg.attrs)
    st = at.get("spatial:transform")
    R.add(f"{p}: attr spatial:transform == expected", transform_close(st, grid.transform),
          f"attr {st} expected {fmt_t(grid.transform)}" + (
              "  (half a pixel off: centre-based?)" if st and len(st) >= 6 and transform_close(
                  [st[0], 0, float(st[2]) - grid.a / 2, 0, st[4], float(st[5]) - grid.e / 2],
                  grid.transform) else ""))
    shp = at.get("spatial:shape")
    R.add(f"{p}: attr spatial:shape == data shape == expected",
          shp == [grid.h, grid.w] and all(ds[v].shape == (grid.h, grid.w) for v in dvars),
          f"attr {shp}, expected {[grid.h, grid.w]}")
    bb = at.get("spatial:bbox")
    R.add(f"{p}: attr spatial:bbox == pixel edges consistent with shape",
          bb is not None and len(bb) == 4 and all(abs(float(u) - v) <= TRANSFORM_ATOL for u, v in zip(bb, grid.bbox)),
          f"attr {bb} expected {[round(v, 6) for v in grid.bbox]}")
    pc = at.get("proj:code")
    R.add(f"{p}: attr proj:code", pc == f"EPSG:{epsg}", f"{pc!r}")


def check_native_values(lvl: str, ds: xr.Dataset, zg, src, sample: int, rtol: float, atol: float):
    sg = src[f"{REFL}/{lvl}"]
    h, w = ds.sizes["y"], ds.sizes["x"]
    wins = windows(h, w, sample if lvl in ("r10m", "r20m") else 0)
    full = len(wins) == 1 and wins[0] == (slice(0, h), slice(0, w))
    scope = "full" if full else f"{len(wins)} windows of {sample}x{sample}"
    for b in band_names(sg):
        with R.guard(f"{lvl}/{b}: values"):
            a = sg[b]
            scale, offset = a.attrs.get("scale_factor", 1.0), a.attrs.get("add_offset", 0.0)
            fill = source_fill(a)
            if b not in ds:
                R.add(f"{lvl}/{b}: values == float32(DN*{scale:g}{offset:+g}), NaN at DN=={fill}", False,
                      "band missing in output")
                continue
            err, n, nn = None, 0, 0
            if full:
                rc = RowCache(a)
                for r0, r1 in stripes(h, stripe_rows(zg[b], w)):
                    got = ds[b][r0:r1, :].values
                    exp = decode(rc.rows(r0, r1), scale, offset, fill)
                    n, nn = n + got.size, nn + int(np.isnan(exp).sum())
                    if (err := exact_diff(got, exp)) is not None:
                        err = f"rows {r0}-{r1}: {err}"
                        break
            else:
                for ws in wins:
                    got = ds[b][ws].values
                    exp = decode(a[ws], scale, offset, fill)
                    n, nn = n + got.size, nn + int(np.isnan(exp).sum())
                    if (err := exact_diff(got, exp)) is not None:
                        err = f"window y={ws[0].start}:{ws[0].stop} x={ws[1].start}:{ws[1].stop}: {err}"
                        break
            R.add(f"{lvl}/{b}: values == float32(DN*{scale:g}{offset:+g}), NaN at DN=={fill}",
                  err is None, err or f"{scope}, {n} px of which {nn} NaN")

    # injected b08
    if lvl != "r10m" and "b08" not in band_names(sg) and "b08" in band_names(src[f"{REFL}/r10m"]):
        f = {"r20m": 2, "r60m": 6}[lvl]
        name = f"{lvl}/b08 (injected): NaN-mean of r10m b08 over {f}x{f}"
        with R.guard(name):
            if "b08" not in ds:
                R.add(name, False, "b08 missing in output")
                return
            a10 = src[f"{REFL}/r10m/b08"]
            scale, offset, fill = a10.attrs.get("scale_factor", 1.0), a10.attrs.get("add_offset", 0.0), source_fill(a10)
            err, n = None, 0
            if full:
                rc = RowCache(a10)
                for r0, r1 in stripes(h, stripe_rows(zg["b08"], w, budget_px=6_000_000 // (f * f))):
                    got = ds["b08"][r0:r1, :].values
                    fine = decode64(rc.rows(r0 * f, r1 * f), scale, offset, fill)
                    exp = nanmean_windows(fine, f).astype(np.float32)[:, :w]
                    n += got.size
                    if (err := close_diff(got, exp, rtol, atol)) is not None:
                        err = f"rows {r0}-{r1}: {err}"
                        break
            else:
                for ys, xs in wins:
                    got = ds["b08"][ys, xs].values
                    fine = decode64(a10[ys.start * f: ys.stop * f, xs.start * f: xs.stop * f], scale, offset, fill)
                    exp = nanmean_windows(fine, f).astype(np.float32)
                    n += got.size
                    if (err := close_diff(got, exp, rtol, atol)) is not None:
                        err = f"window y={ys.start}:{ys.stop} x={xs.start}:{xs.stop}: {err}"
                        break
            R.add(name, err is None, err or f"{scope}, {n} px")


def check_coarse_values(lvl: str, parent: str, f: int, ds: xr.Dataset, pds: xr.Dataset, rtol: float, atol: float):
    for v in sorted(x for x in ds.data_vars if x != "spatial_ref"):
        name = f"{lvl}/{v}: NaN-mean of {parent}/{v} over {f}x{f} (trimmed)"
        with R.guard(name):
            if v not in pds:
                R.add(name, False, f"{v} missing in {parent}")
                continue
            prev = pds[v].values
            exp = nanmean_windows(prev, f).astype(np.float32)
            got = ds[v].values
            err = close_diff(got, exp, rtol, atol)
            R.add(name, err is None, err or f"{got.shape[0]}x{got.shape[1]} from {prev.shape[0]}x{prev.shape[1]}, "
                                            f"{int(np.isnan(got).sum())} NaN")


def check_multiscales(out_root, grids: dict, shapes: dict):
    name = "multiscales"
    g = out_root[REFL]
    ms = g.attrs.get("multiscales")
    if not R.add(f"{name}: /{REFL} has multiscales.layout", isinstance(ms, dict) and isinstance(ms.get("layout"), list),
                 f"attrs keys {sorted(g.attrs.keys())[:10]}" if not ms else ""):
        return
    layout = ms["layout"]
    assets = [e.get("asset") for e in layout]
    want = [lv for lv, *_ in LEVELS]
    R.add(f"{name}: layout assets in order", assets == want, f"{assets}")
    by = {e.get("asset"): e for e in layout}
    for lv, _, _, parent, f in LEVELS:
        e = by.get(lv)
        if e is None:
            continue
        issues = []
        if parent is None:
            if e.get("derived_from") is not None:
                issues.append(f"derived_from {e.get('derived_from')!r} on the base level")
        else:
            if e.get("derived_from") != parent:
                issues.append(f"derived_from {e.get('derived_from')!r} != {parent!r}")
            sc = ((e.get("transform") or {}).get("scale")) or None
            ph, pw = shapes.get(parent, (0, 0))
            h, w = shapes.get(lv, (1, 1))
            ratio = max(pw / w, ph / h) if h and w else None
            if not sc or len(sc) != 2 or not all(
                    (ratio is not None and abs(s - ratio) < 1e-9) or abs(s - f) < 1e-9 for s in sc):
                issues.append(f"transform.scale {sc} (expected {f} or shape ratio {ratio})")
        if e.get("spatial:shape") != list(shapes.get(lv, ())):
            issues.append(f"spatial:shape {e.get('spatial:shape')} != expected {list(shapes.get(lv, ()))}")
        if lv in grids and not transform_close(e.get("spatial:transform"), grids[lv].transform):
            issues.append(f"spatial:transform {e.get('spatial:transform')} != {fmt_t(grids[lv].transform)}")
        R.add(f"{name}: layout entry {lv}", not issues, "; ".join(issues))


def leaf_groups(g, prefix: str):
    kids = list(g.groups())
    if not kids:
        if list(g.arrays()):
            yield prefix
        return
    for n, c in kids:
        yield from leaf_groups(c, f"{prefix}/{n}")


def check_quality(out: Loc, out_root, src, epsg: int, sample: int):
    if "quality" not in src:
        R.add("quality: source has /quality", True, "none in source, nothing to check")
        return
    for path in sorted(leaf_groups(src["quality"], "quality")):
        if "quicklook" in path:
            continue
        lvl = path.rsplit("/", 1)[-1]
        with R.guard(f"{path}: opens"):
            if path not in out_root:
                R.add(f"{path}: present", False, "group missing in output")
                continue
            sg, og = src[path], out_root[path]
            lint_fill_attrs(og, path)
            ds = open_level_checked(out, path, path)
            if ds is None:
                continue
            crs = ds.rio.crs
            grid_vars = [v for v in ds.data_vars if ds[v].dims[-2:] == ("y", "x")]
            bad = [v for v in grid_vars if ds[v].rio.crs is None or ds[v].rio.crs.to_epsg() != epsg]
            R.add(f"{path}: opens with CRS EPSG:{epsg}", crs is not None and crs.to_epsg() == epsg and not bad,
                  f"dataset {crs}" + (f"; vars without it: {bad}" if bad else ""))
            svars = sorted(n for n, _ in sg.arrays())
            ovars = sorted(n for n, _ in og.arrays())
            missing = sorted(set(svars) - set(ovars))
            extra = sorted(set(ovars) - set(svars) - {"spatial_ref"})
            R.add(f"{path}: arrays", not missing and not extra and "spatial_ref" in ovars,
                  f"missing {missing}, extra {extra}, spatial_ref {'yes' if 'spatial_ref' in ovars else 'NO'}")
            dt = [f"{n}: {og[n].dtype} != {sg[n].dtype}" for n in svars if n in ovars and og[n].dtype != sg[n].dtype]
            R.add(f"{path}: dtypes preserved", not dt, "; ".join(dt))
            errs = []
            for n in svars:
                if n not in ovars:
                    continue
                sa, oa = sg[n], og[n]
                if sa.ndim == 2 and sa.shape == oa.shape:
                    wins = windows(*sa.shape, sample if lvl in ("r10m", "r20m") else 0)
                    # a single-chunk source array is decoded whole by any window read: read it once
                    sfull = sa[...] if len(wins) > 1 and sa.nchunks == 1 else None
                    ofull = oa[...] if len(wins) > 1 and oa.nchunks == 1 and oa.shards is None else None
                    for ws in wins:
                        if (e := raw_equal(oa[ws] if ofull is None else ofull[ws],
                                           sa[ws] if sfull is None else sfull[ws])) is not None:
                            errs.append(f"{n}: {e}")
                            break
                elif sa.shape == oa.shape:
                    if (e := raw_equal(oa[...], sa[...])) is not None:
                        errs.append(f"{n}: {e}")
                else:
                    errs.append(f"{n}: shape {oa.shape} != {sa.shape}")
            R.add(f"{path}: values preserved" + (f" (sampled {sample}x{sample})" if sample and lvl in ("r10m", "r20m") else ""),
                  not errs, "; ".join(errs[:4]))
            if "x" in sg and "y" in sg:
                grid = grid_from_coords(sg["x"][...], sg["y"][...], f"source {path}")
                at = dict(og.attrs)
                issues = []
                if not transform_close(list(ds.rio.transform())[:6], grid.transform):
                    issues.append(f"rio.transform {fmt_t(ds.rio.transform())}")
                if not transform_close(at.get("spatial:transform"), grid.transform):
                    issues.append(f"spatial:transform {at.get('spatial:transform')}")
                if at.get("spatial:shape") != [grid.h, grid.w]:
                    issues.append(f"spatial:shape {at.get('spatial:shape')}")
                bb = at.get("spatial:bbox")
                if not (bb and len(bb) == 4 and all(abs(float(u) - v) <= TRANSFORM_ATOL for u, v in zip(bb, grid.bbox))):
                    issues.append(f"spatial:bbox {bb}")
                if at.get("proj:code") != f"EPSG:{epsg}":
                    issues.append(f"proj:code {at.get('proj:code')!r}")
                R.add(f"{path}: spatial attrs + transform (expected {fmt_t(grid.transform)})", not issues,
                      "; ".join(issues))


def check_conditions(out_root, src):
    if "conditions" not in src:
        R.add("conditions: source has /conditions", True, "none in source, nothing to check")
        return
    arrays = list(walk_arrays(src["conditions"], "conditions"))
    meta_bad, per_dtype = [], {}
    for path, sa in arrays:
        if path not in out_root:
            meta_bad.append(f"{path}: missing")
            continue
        oa = out_root[path]
        if oa.dtype != sa.dtype:
            meta_bad.append(f"{path}: dtype {oa.dtype} != {sa.dtype}")
        if oa.shape != sa.shape:
            meta_bad.append(f"{path}: shape {oa.shape} != {sa.shape}")
        if tuple(oa.chunks) != tuple(sa.chunks) and tuple(oa.shards or ()) != tuple(sa.chunks):
            meta_bad.append(f"{path}: chunks {oa.chunks}/shards {oa.shards} != source {sa.chunks}")
        cur = per_dtype.get(sa.dtype.str)
        if cur is None or sa.size < cur[1].size:
            per_dtype[sa.dtype.str] = (path, sa)
    R.add("conditions: every source array present with same dtype, shape, chunks", not meta_bad,
          "; ".join(meta_bad[:6]) or f"{len(arrays)} arrays")
    for dt, (path, sa) in sorted(per_dtype.items()):
        with R.guard(f"conditions: values of {path} ({dt})"):
            if path not in out_root:
                continue
            err = raw_equal(out_root[path][...], sa[...])
            R.add(f"conditions: values of {path} ({dt}) equal the source", err is None, err or f"shape {sa.shape}")


# ----------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="EOPF Zarr v2 product (dir or s3://)")
    ap.add_argument("--output", required=True, help="converted GeoZarr v3 store (dir or s3://)")
    ap.add_argument("--level-sample", type=int, default=0, metavar="N",
                    help="compare r10m/r20m values only in three NxN windows (0 = all pixels)")
    ap.add_argument("--rtol", type=float, default=1e-6, help="for window means (default 1e-6)")
    ap.add_argument("--atol", type=float, default=1e-7,
                    help="absolute slack for window means near 0 (default 1e-7 ~ 1 float32 ULP at 1.0)")
    args = ap.parse_args()
    t0 = time.monotonic()

    def source_grids(src):
        if f"{REFL}/r10m" not in src:
            raise InputError(f"source {args.source}: no /{REFL}/r10m group")
        epsg, epsg_from = source_epsg(src)
        src_grids = {}
        for lvl in NATIVE:
            if f"{REFL}/{lvl}" not in src:
                raise InputError(f"source {args.source}: no /{REFL}/{lvl} group")
            g = src[f"{REFL}/{lvl}"]
            src_grids[lvl] = grid_from_coords(g["x"][...], g["y"][...], f"source {lvl}")
        return epsg, epsg_from, src_grids

    inputs = load_inputs("verify_geozarr", args.source, args.output, source_grids)
    if inputs is None:
        return 2
    src_loc, out_loc, src, (epsg, epsg_from, src_grids) = inputs

    print(f"# source {args.source} (EPSG:{epsg} from {epsg_from}); output {args.output}; "
          f"level-sample {args.level_sample or 'full'}", flush=True)

    # expected grids: native levels from their own source coords, coarse levels from r60m
    g10 = src_grids["r10m"]
    for lvl in ("r20m", "r60m"):
        g = src_grids[lvl]
        R.add(f"source: {lvl} grid shares the r10m edge origin",
              abs(g.c - g10.c) <= TRANSFORM_ATOL and abs(g.f - g10.f) <= TRANSFORM_ATOL,
              f"{lvl} origin ({g.c:g}, {g.f:g}) vs r10m ({g10.c:g}, {g10.f:g})")
    grids = dict(src_grids)
    for lvl, parent, f in COARSE:
        grids[lvl] = coarse_grid(grids[parent], f)

    tl = time.monotonic()
    with R.guard("store: metadata"):
        check_store(out_loc)
    print(f"#   store metadata checked in {time.monotonic() - tl:.1f} s", flush=True)

    out_root = open_output_root(out_loc)

    # expected variables per level
    src_bands = {lvl: band_names(src[f"{REFL}/{lvl}"]) for lvl in NATIVE}
    exp_vars = {"r10m": src_bands["r10m"]}
    for lvl in ("r20m", "r60m"):
        exp_vars[lvl] = sorted(set(src_bands[lvl]) | ({"b08"} if "b08" in src_bands["r10m"] else set()))
    for lvl, parent, _ in COARSE:
        exp_vars[lvl] = exp_vars[parent]

    opened: dict[str, xr.Dataset] = {}
    for lvl, _, native, parent, f in LEVELS:
        group = f"{REFL}/{lvl}"
        with R.guard(f"{lvl}: open"):
            if group not in out_root:
                R.add(f"{lvl}: group present", False, f"/{group} missing in the output")
                continue
            lint_fill_attrs(out_root[group], lvl)
            ds = open_level_checked(out_loc, group, lvl)
            if ds is not None:
                opened[lvl] = ds
        if lvl not in opened:
            continue
        with R.guard(f"{lvl}: metadata"):
            check_level_metadata(lvl, opened[lvl], out_root[group], grids[lvl], epsg, exp_vars[lvl], native)
        tl = time.monotonic()
        if native:
            check_native_values(lvl, opened[lvl], out_root[group], src, args.level_sample, args.rtol, args.atol)
        elif parent in opened:
            with R.guard(f"{lvl}: values"):
                check_coarse_values(lvl, parent, f, opened[lvl], opened[parent], args.rtol, args.atol)
        else:
            R.add(f"{lvl}: values", False, f"parent level {parent} did not open")
        print(f"#   {lvl} values checked in {time.monotonic() - tl:.1f} s", flush=True)

    with R.guard("multiscales"):
        check_multiscales(out_root, grids, {lv: (g.h, g.w) for lv, g in grids.items()})
    tl = time.monotonic()
    with R.guard("quality"):
        check_quality(out_loc, out_root, src, epsg, args.level_sample)
    print(f"#   quality checked in {time.monotonic() - tl:.1f} s", flush=True)
    tl = time.monotonic()
    with R.guard("conditions"):
        check_conditions(out_root, src)
    print(f"#   conditions checked in {time.monotonic() - tl:.1f} s", flush=True)

    return finish(t0)


if __name__ == "__main__":
    sys.exit(main())
