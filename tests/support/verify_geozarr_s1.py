#!/usr/bin/env python3
"""Independent verification of a `provisioner workload convert` output for a Sentinel-1 GRD EOPF
Zarr (v2) product -> GeoZarr (Zarr v3, one group per polarisation, geocoded through the GCPs),
using only third-party readers: zarr-python for the raw source, xarray + rioxarray for the output,
pyproj for the coordinates, numpy for the expected values.

    $LAB_PY_READERS tests/support/verify_geozarr_s1.py --source <S1 GRD product .zarr> \
        --output <dir or s3://bucket/prefix/<collection>/<item>.zarr> [--crs-epsg 4326] \
        [--level-sample N]

s3:// paths (either argument) are read with s3fs from the lab's moto endpoint: $S3_ENDPOINT_URL
(or $AWS_ENDPOINT_URL), $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, $AWS_REGION. Without an
endpoint an s3:// path is refused (exit 2): the script never contacts anything else.

What is checked, per polarisation group <pol> (one line per check, then a JSON summary line;
exit 1 if any check failed, 2 if an input is missing or unreadable):
  store      root zarr.json is Zarr v3 with inline consolidated metadata listing every node on
             storage, identical to each node's zarr.json; the output has exactly the source's
             polarisation groups.
  multiscales <pol>/measurements attrs: multiscales.layout (asset names rNNm, the first one
             native, every other derived_from the previous one with transform.scale 2 and
             spatial:shape = parent // 2, spatial:transform = parent's with pixel size x2 and
             the same origin), group spatial:* / proj:code == the native level's.
  level      every layout level <pol>/measurements/<asset>, opened with xarray.open_dataset(
             engine="zarr", consolidated=True, decode_coords="all") + rioxarray: CRS ==
             EPSG:--crs-epsg (dataset, grd, proj:code, spatial_ref crs_wkt), rio.transform()
             (GeoTransform) and rio.transform(recalc=True) (from x/y) == spatial:transform ==
             layout spatial:transform (1e-9 relative), x/y are pixel centres (edge + half a
             pixel, constant step), spatial:shape == grd shape == layout shape, spatial:bbox ==
             the grid edges; grd is uint16, fill_value 0 and _FillValue 0, dims (y, x),
             sharded, grid_mapping spatial_ref; xarray's default decoding masks 0.
  gcp        at the native level: every source GCP (<pol>/conditions/gcp/{latitude,longitude,
             line,pixel}) inside the output grid: the output pixel holding its lon/lat (in the
             output CRS) has a value within [min, max] of the source grd in the +-2 line/pixel
             neighbourhood of (line, pixel). Skipped (and counted): all-0 source neighbourhoods;
             output 0 at a GCP on the swath border (the output pixel's centre may lie outside).
             Fails if fewer than --min-gcp-fraction (0.6) of the GCPs were compared.
  swath      at the native level: the 4 corner 16x16 blocks that lie outside the GCP footprint
             polygon are all 0 (at least one corner must be); the nonzero fraction (all pixels)
             is within [--min-nonzero 0.30, --max-nonzero 0.95]; the nonzero pixel count equals
             the footprint's area in pixels (+- its perimeter + 1 %); pixels more than 2 px
             outside the footprint are all 0 and
             pixels more than 2 px inside it are nonzero (tolerating --inside-zero-tol, 1 %, of
             no-data); these two on a strided sample of <= 8M px (4M with --level-sample).
  coarse     every derived level: each pixel == the rounded mean of the nonzero values of the
             2x2 block of its parent (0 if none, never below 1); round-half-up or half-even.
             Full arrays unless --level-sample N > 0 (then three NxN windows per level) or the
             parent has more than 64M px (then three 1024x1024 windows).
  copied     <pol>/conditions and <pol>/quality: every source array exists with the same dtype
             and shape, with identical values.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # zarr v3 consolidated / unstable dtype warnings

try:
    import numpy as np
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr
    from pyproj import CRS, Transformer

    from geozarr_checks import (R, InputError, Loc, consolidated_diff, finish, load_inputs, open_output_root,
                                parse_epsg, root_consolidated, walk_arrays, windows)
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"verify_geozarr_s1: missing reader library ({e}); run it with $LAB_PY_READERS\n")
    sys.exit(2)

REL = 1e-9          # relative tolerance on transforms / bboxes
NEIGH = 2           # +- lines/pixels around a GCP in the source
CORNER = 16         # corner block size at the native level
MARGIN_PX = 2       # footprint margin (output pixels) for the outside/inside checks
FULL_PX = 64_000_000  # read whole levels up to this many pixels
FOOTPRINT_PX = 8_000_000  # footprint tests on at most this many (strided) pixels
LEVEL_RE = re.compile(r"^r(\d+(?:\.\d+)?)(m|km)$")


# ----------------------------------------------------------------------------------- helpers
def close(a: float, b: float, scale: float = 1.0) -> bool:
    """|a - b| <= REL * max(|a|, |b|, scale)."""
    a, b = float(a), float(b)
    return abs(a - b) <= REL * max(abs(a), abs(b), abs(scale), 1e-300)


def t_close(t1, t2) -> bool:
    """Two rasterio-order transforms (a, b, c, d, e, f) equal to REL, the zero terms in pixel units."""
    if t1 is None or t2 is None or len(t1) < 6 or len(t2) < 6:
        return False
    px = max(abs(float(t1[0])), abs(float(t1[4])), 1e-300)
    return all(close(x, y, px) for x, y in zip(list(t1)[:6], list(t2)[:6]))


def fmt_t(t) -> str:
    return "[" + ", ".join(f"{float(v):.15g}" for v in list(t)[:6]) + "]"


def nominal_metres(name: str) -> float | None:
    m = LEVEL_RE.match(name)
    if not m:
        return None
    return float(m.group(1)) * (1000.0 if m.group(2) == "km" else 1.0)


def expected_coarse(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(half-up, half-even, mean) of the nonzero values of every 2x2 block (remainders trimmed);
    0 where the block has no nonzero value, never below 1 otherwise."""
    h, w = parent.shape[0] // 2, parent.shape[1] // 2
    b = parent[: 2 * h, : 2 * w].astype(np.float64).reshape(h, 2, w, 2)
    nz = (b != 0).sum(axis=(1, 3))
    s = b.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(nz > 0, s / np.maximum(nz, 1), 0.0)
    up = np.where(nz > 0, np.maximum(1, np.floor(mean + 0.5)), 0)
    even = np.where(nz > 0, np.maximum(1, np.rint(mean)), 0)
    return up, even, mean


def points_in_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over the points (x, y), polygon (px, py) closed or not."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(px)
    j = n - 1
    for i in range(n):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        if yi != yj:
            cond = (yi > y) != (yj > y)
            xint = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= cond & (x < xint)
        j = i
    return inside


def footprint_status(xs: np.ndarray, ys: np.ndarray, px, py, mx: float, my: float) -> np.ndarray:
    """Per point: +1 clearly inside (the point and the 4 corners of the square +-mx/+-my around it
    all inside), -1 clearly outside (all 5 outside), 0 near the footprint border."""
    n_in = points_in_polygon(xs, ys, px, py).astype(np.int16)
    for dx, dy in ((-mx, -my), (-mx, my), (mx, -my), (mx, my)):
        n_in += points_in_polygon(xs + dx, ys + dy, px, py)
    return np.where(n_in == 5, 1, np.where(n_in == 0, -1, 0)).astype(np.int8)


class Level:
    """One output level as recorded by its group attrs (the grid every check is made against)."""

    def __init__(self, name: str, t: list[float], shape: tuple[int, int]):
        self.name = name
        self.a, self.b, self.c, self.d, self.e, self.f = (float(v) for v in t[:6])
        self.h, self.w = int(shape[0]), int(shape[1])

    @property
    def transform(self):
        return [self.a, self.b, self.c, self.d, self.e, self.f]

    @property
    def bbox(self):
        xs = [self.c, self.c + self.a * self.w]
        ys = [self.f, self.f + self.e * self.h]
        return [min(xs), min(ys), max(xs), max(ys)]

    def rowcol(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel holding each point; a point on an outer edge (within 1e-6 px, float rounding of
        a grid fitted to the extreme GCPs) counts as inside."""
        fr, fc = (y - self.f) / self.e, (x - self.c) / self.a
        fr = np.where((fr < 0) & (fr > -1e-6), 0.0, np.where((fr >= self.h) & (fr < self.h + 1e-6), self.h - 0.5, fr))
        fc = np.where((fc < 0) & (fc > -1e-6), 0.0, np.where((fc >= self.w) & (fc < self.w + 1e-6), self.w - 0.5, fc))
        return np.floor(fr).astype(np.int64), np.floor(fc).astype(np.int64)

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.c + (cols + 0.5) * self.a, self.f + (rows + 0.5) * self.e


# ----------------------------------------------------------------------------------- checks
def check_store(out: Loc):
    cons = root_consolidated(out)
    if cons is None:
        return
    disk = out.metadata_nodes()
    missing, extra, stale = consolidated_diff(out, disk, cons)
    R.add("store: consolidated metadata lists exactly the nodes on storage", not missing and not extra,
          f"{len(disk)} nodes" + (f"; not consolidated: {missing[:6]}" if missing else "")
          + (f"; consolidated but absent: {extra[:6]}" if extra else ""))
    R.add("store: consolidated metadata equals every node's zarr.json", not stale,
          f"stale: {stale[:6]}" if stale else f"{len(set(disk) & set(cons))} nodes compared")


def source_pols(src) -> dict[str, str]:
    """{polarisation: group name} for the source groups holding measurements/grd."""
    out = {}
    for name, g in src.groups():
        if "measurements" in g and "grd" in g["measurements"]:
            m = re.search(r"_([HV][HV])$", name)
            out[m.group(1) if m else name] = name
    return out


def check_multiscales(pol: str, mg) -> list[dict]:
    """Layout checks; returns the layout entries (possibly empty)."""
    p = f"{pol}: multiscales"
    ms = mg.attrs.get("multiscales")
    if not R.add(f"{p}: layout present", isinstance(ms, dict) and isinstance(ms.get("layout"), list)
                 and len(ms["layout"]) > 0, "" if ms else f"attrs keys {sorted(mg.attrs.keys())[:12]}"):
        return []
    layout = ms["layout"]
    names = [e.get("asset") for e in layout]
    issues = []
    noms = [nominal_metres(str(n)) for n in names]
    if any(v is None for v in noms):
        issues.append(f"asset names not rNNm: {names}")
    elif any(b != 2 * a for a, b in zip(noms, noms[1:])):
        issues.append(f"nominal spacings {noms} do not double")
    if layout[0].get("derived_from") is not None:
        issues.append(f"first level {names[0]} has derived_from {layout[0].get('derived_from')!r}")
    for prev, e in zip(layout, layout[1:]):
        n = e.get("asset")
        if e.get("derived_from") != prev.get("asset"):
            issues.append(f"{n}: derived_from {e.get('derived_from')!r} != {prev.get('asset')!r}")
        sc = (e.get("transform") or {}).get("scale")
        if not sc or list(map(float, sc)) != [2.0, 2.0]:
            issues.append(f"{n}: transform.scale {sc} != [2, 2]")
        ps, s = prev.get("spatial:shape"), e.get("spatial:shape")
        if not (ps and s and list(s) == [ps[0] // 2, ps[1] // 2]):
            issues.append(f"{n}: spatial:shape {s} != parent {ps} // 2")
        pt, t = prev.get("spatial:transform"), e.get("spatial:transform")
        if pt and t:
            exp = [pt[0] * 2, pt[1] * 2, pt[2], pt[3] * 2, pt[4] * 2, pt[5]]
            if not t_close(t, exp):
                issues.append(f"{n}: spatial:transform {fmt_t(t)} != parent's x2 {fmt_t(exp)}")
        else:
            issues.append(f"{n}: spatial:transform missing (here or in the parent)")
    R.add(f"{p}: layout {names} consistent (names, derived_from, scale 2, shapes, transforms)",
          not issues, "; ".join(issues[:6]))
    at = dict(mg.attrs)
    first = layout[0]
    gi = []
    if not t_close(at.get("spatial:transform"), first.get("spatial:transform")):
        gi.append(f"spatial:transform {at.get('spatial:transform')} != native {first.get('spatial:transform')}")
    if at.get("spatial:shape") != first.get("spatial:shape"):
        gi.append(f"spatial:shape {at.get('spatial:shape')} != native {first.get('spatial:shape')}")
    R.add(f"{p}: group spatial:transform/spatial:shape == native level's", not gi, "; ".join(gi))
    return layout


def check_level(pol: str, out: Loc, group: str, zg, entry: dict, epsg: int) -> Level | None:
    name = entry.get("asset")
    p = f"{pol}/{name}"
    at = dict(zg.attrs)
    if not R.add(f"{p}: grd, x, y, spatial_ref present",
                 all(k in zg for k in ("grd", "x", "y", "spatial_ref")),
                 f"arrays {sorted(n for n, _ in zg.arrays())}"):
        return None
    grd = zg["grd"]
    lvl = Level(name, at.get("spatial:transform") or [0] * 6, at.get("spatial:shape") or (0, 0))

    # raw encoding of grd
    md = grd.metadata
    codecs = [c.get("name") for c in md.to_dict().get("codecs", [])]
    enc = []
    if grd.dtype != np.uint16:
        enc.append(f"dtype {grd.dtype}")
    if grd.fill_value != 0:
        enc.append(f"fill_value {grd.fill_value!r}")
    if grd.attrs.get("_FillValue") != 0:
        enc.append(f"_FillValue attr {grd.attrs.get('_FillValue')!r}")
    if list(md.dimension_names or []) != ["y", "x"]:
        enc.append(f"dimension_names {md.dimension_names}")
    if not codecs or codecs[0] != "sharding_indexed":
        enc.append(f"not sharded (codecs {codecs})")
    if grd.attrs.get("grid_mapping") != "spatial_ref":
        enc.append(f"grid_mapping {grd.attrs.get('grid_mapping')!r}")
    R.add(f"{p}: grd uint16, fill 0 (+ _FillValue 0), dims (y, x), sharded", not enc,
          "; ".join(enc) or f"shape {grd.shape}, shards {grd.shards}, inner chunks {grd.chunks}")

    # xarray + rioxarray
    try:
        ds = xr.open_dataset(out.store, engine="zarr", group=group, consolidated=True,
                             decode_coords="all", chunks=None, mask_and_scale=False)
        R.add(f"{p}: opens with xarray (zarr v3, consolidated)", True, f"dims {dict(ds.sizes)}")
    except Exception as e:  # noqa: BLE001
        R.add(f"{p}: opens with xarray (zarr v3, consolidated)", False, f"{type(e).__name__}: {e}")
        return lvl
    with R.guard(f"{p}: xarray checks"):
        v = ds["grd"]
        R.add(f"{p}: xarray grd uint16 dims (y, x), _FillValue 0",
              v.dtype == np.uint16 and v.dims == ("y", "x")
              and int(v.attrs.get("_FillValue", v.encoding.get("_FillValue", -1))) == 0,
              f"dtype {v.dtype} dims {v.dims} _FillValue {v.attrs.get('_FillValue', v.encoding.get('_FillValue'))}")
        dsm = xr.open_dataset(out.store, engine="zarr", group=group, consolidated=True,
                              decode_coords="all", chunks=None)
        R.add(f"{p}: xarray default decoding masks 0 (no-data)",
              dsm["grd"].encoding.get("_FillValue") == 0 and dsm["grd"].encoding.get("dtype") == np.uint16,
              f"encoding _FillValue {dsm['grd'].encoding.get('_FillValue')!r} dtype {dsm['grd'].encoding.get('dtype')}")
        crs = ds.rio.crs
        vcrs = v.rio.crs
        wkt = ds["spatial_ref"].attrs.get("crs_wkt") or ds["spatial_ref"].attrs.get("spatial_ref")
        wkt_epsg = CRS.from_wkt(wkt).to_epsg() if wkt else None
        pc = parse_epsg(at.get("proj:code"))
        R.add(f"{p}: CRS EPSG:{epsg} (rioxarray dataset + grd, spatial_ref WKT, proj:code)",
              crs is not None and crs.to_epsg() == epsg and vcrs is not None and vcrs.to_epsg() == epsg
              and wkt_epsg == epsg and pc == epsg,
              f"rio {crs.to_epsg() if crs else None}, grd {vcrs.to_epsg() if vcrs else None}, "
              f"WKT {wkt_epsg}, proj:code {at.get('proj:code')!r}")
        t_gt = list(ds.rio.transform())[:6]
        t_xy = list(ds.rio.transform(recalc=True))[:6]
        st = at.get("spatial:transform")
        lt = entry.get("spatial:transform")
        bad = []
        if not t_close(t_gt, st):
            bad.append(f"rio.transform() {fmt_t(t_gt)}")
        if not t_close(t_xy, st):
            bad.append(f"rio.transform(recalc=True) from x/y {fmt_t(t_xy)}")
        if not t_close(lt, st):
            bad.append(f"layout spatial:transform {lt}")
        gt = ds["spatial_ref"].attrs.get("GeoTransform")
        if gt is not None:
            g = [float(s) for s in str(gt).split()]
            if len(g) != 6 or not t_close([g[1], g[2], g[0], g[4], g[5], g[3]], st):
                bad.append(f"spatial_ref GeoTransform {gt!r}")
        else:
            bad.append("spatial_ref has no GeoTransform")
        R.add(f"{p}: rio.transform() == rio.transform(recalc) == spatial:transform == layout == "
              f"GeoTransform", not bad and st is not None,
              ("; ".join(bad) + f" vs spatial:transform {st}") if bad else fmt_t(st))
        # x/y are centres: edge + (i + 0.5) * step
        xs, ys = ds["x"].values.astype(np.float64), ds["y"].values.astype(np.float64)
        xe = lvl.c + (np.arange(len(xs)) + 0.5) * lvl.a
        ye = lvl.f + (np.arange(len(ys)) + 0.5) * lvl.e
        dx = np.max(np.abs(xs - xe)) if len(xs) else np.inf
        dy = np.max(np.abs(ys - ye)) if len(ys) else np.inf
        tol_x = max(1e-6 * abs(lvl.a), REL * float(np.max(np.abs(xe)) if len(xe) else 1))
        tol_y = max(1e-6 * abs(lvl.e), REL * float(np.max(np.abs(ye)) if len(ye) else 1))
        R.add(f"{p}: x/y are pixel centres of spatial:transform (edge + half a pixel)",
              lvl.b == 0 and lvl.d == 0 and dx <= tol_x and dy <= tol_y and lvl.a > 0 and lvl.e < 0,
              f"max |x - expected| {dx:.3g} (tol {tol_x:.3g}), max |y - expected| {dy:.3g} (tol {tol_y:.3g}); "
              f"x[0]={xs[0]!r} y[0]={ys[0]!r}" if len(xs) and len(ys) else "empty x/y")
        shp = [int(s) for s in v.shape]
        si = []
        if at.get("spatial:shape") != shp:
            si.append(f"spatial:shape {at.get('spatial:shape')} != grd {shp}")
        if entry.get("spatial:shape") != shp:
            si.append(f"layout spatial:shape {entry.get('spatial:shape')} != grd {shp}")
        if [len(ys), len(xs)] != shp:
            si.append(f"len(y), len(x) {[len(ys), len(xs)]} != grd {shp}")
        R.add(f"{p}: spatial:shape == layout shape == grd shape", not si, "; ".join(si) or f"{shp}")
        bb = at.get("spatial:bbox")
        R.add(f"{p}: spatial:bbox == grid edges",
              bool(bb) and len(bb) == 4 and all(close(u, w, lvl.a) for u, w in zip(bb, lvl.bbox)),
              f"{bb} vs {lvl.bbox}")
    return lvl


def read_gcps(sg, ctr: Transformer | None):
    g = sg["conditions/gcp"]
    lat = np.asarray(g["latitude"][...], dtype=np.float64)
    lon = np.asarray(g["longitude"][...], dtype=np.float64)
    line = np.asarray(g["line"][...], dtype=np.int64)
    pixel = np.asarray(g["pixel"][...], dtype=np.int64)
    if lat.shape != lon.shape or lat.ndim != 2 or lat.shape != (len(line), len(pixel)):
        raise ValueError(f"GCP shapes: lat {lat.shape} lon {lon.shape} line {line.shape} pixel {pixel.shape}")
    if ctr is None:
        x, y = lon, lat
    else:
        x, y = ctr.transform(lon, lat)
        x, y = np.asarray(x), np.asarray(y)
    L, P = np.meshgrid(line, pixel, indexing="ij")
    return x, y, L, P


def footprint(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outer ring of the GCP grid: first line, last pixel column, last line reversed, first column."""
    ring = [(0, j) for j in range(x.shape[1])] + [(i, x.shape[1] - 1) for i in range(1, x.shape[0])] \
        + [(x.shape[0] - 1, j) for j in range(x.shape[1] - 2, -1, -1)] + [(i, 0) for i in range(x.shape[0] - 2, 0, -1)]
    return np.array([x[i, j] for i, j in ring]), np.array([y[i, j] for i, j in ring])


def check_gcp_values(pol: str, lvl: Level, ogrd, sgrd, gx, gy, L, P, min_frac: float):
    p = f"{pol}/{lvl.name}: GCP values"
    H, W = sgrd.shape
    nl, np_ = L.shape
    rows, cols = lvl.rowcol(gx, gy)
    inside = (rows >= 0) & (rows < lvl.h) & (cols >= 0) & (cols < lvl.w)
    total = L.size
    checked = skipped_zero = skipped_border = 0
    fails = []
    for i in range(nl):
        for j in range(np_):
            if not inside[i, j]:
                continue
            li, pj = int(L[i, j]), int(P[i, j])
            nb = np.asarray(sgrd[max(0, li - NEIGH): min(H, li + NEIGH + 1), max(0, pj - NEIGH): min(W, pj + NEIGH + 1)])
            if nb.size == 0 or not nb.any():
                skipped_zero += 1
                continue
            r, c = int(rows[i, j]), int(cols[i, j])
            v = int(ogrd[r, c])
            border = i in (0, nl - 1) or j in (0, np_ - 1)
            if v == 0 and border:
                skipped_border += 1
                continue
            checked += 1
            lo, hi = int(nb.min()), int(nb.max())
            if not (lo <= v <= hi):
                fails.append(f"gcp[{i},{j}] line {li} pixel {pj} -> out[{r},{c}] = {v} not in source [{lo}, {hi}]")
    n_in = int(inside.sum())
    R.add(f"{p}: output pixel at each GCP within the source +-{NEIGH} neighbourhood range", not fails,
          f"{checked} of {total} GCPs compared ({n_in} inside the grid, {skipped_zero} all-0 source "
          f"neighbourhoods, {skipped_border} border GCPs with output 0)"
          + (f"; {len(fails)} outside: " + "; ".join(fails[:4]) if fails else ""))
    R.add(f"{p}: at least {min_frac:.0%} of the GCPs compared", checked >= min_frac * total,
          f"{checked}/{total} = {checked / max(total, 1):.1%}")
    return checked, total


def check_swath(pol: str, lvl: Level, ogrd, gx, gy, inside_zero_tol: float, sample: int,
                nonzero_range: tuple[float, float]):
    p = f"{pol}/{lvl.name}: swath"
    fx, fy = footprint(gx, gy)
    # corner blocks
    cb = []
    n_out_corners = n_zero_corners = 0
    for (r0, c0) in ((0, 0), (0, lvl.w - CORNER), (lvl.h - CORNER, 0), (lvl.h - CORNER, lvl.w - CORNER)):
        r0, c0 = max(0, r0), max(0, c0)
        blk = np.asarray(ogrd[r0: r0 + CORNER, c0: c0 + CORNER])
        rr, cc = np.meshgrid(np.arange(r0, r0 + blk.shape[0]), np.arange(c0, c0 + blk.shape[1]), indexing="ij")
        bx, by = lvl.centres(rr.ravel(), cc.ravel())
        outside = not points_in_polygon(bx, by, fx, fy).any()
        nz = int(np.count_nonzero(blk))
        if nz == 0:
            n_zero_corners += 1
        if outside:
            n_out_corners += 1
            if nz:
                cb.append(f"block at ({r0},{c0}) is outside the footprint but has {nz} nonzero px")
    R.add(f"{p}: corner {CORNER}x{CORNER} blocks outside the GCP footprint are all 0 (and at least one is)",
          not cb and n_zero_corners >= 1,
          f"{n_out_corners} of 4 corner blocks outside the footprint, {n_zero_corners} all 0"
          + ("; " + "; ".join(cb) if cb else ""))

    # streamed over row stripes: nonzero fraction, clearly-outside zeros, clearly-inside nonzeros
    step = max(1, int(math.ceil(math.sqrt(lvl.h * lvl.w / (4_000_000 if sample > 0 else FOOTPRINT_PX)))))
    try:
        stripe_h = int(ogrd.shards[0]) if ogrd.shards else int(ogrd.chunks[0])
    except Exception:  # noqa: BLE001
        stripe_h = 256
    stripe_h = max(stripe_h, 1) * max(1, 4_000_000 // max(1, stripe_h * lvl.w))
    nz_total = px_total = 0
    out_nz = out_n = in_zero = in_n = 0
    first_out = None
    mx, my = abs(lvl.a) * MARGIN_PX, abs(lvl.e) * MARGIN_PX
    for r0 in range(0, lvl.h, stripe_h):
        r1 = min(lvl.h, r0 + stripe_h)
        blk = np.asarray(ogrd[r0:r1, :])
        nz_total += int(np.count_nonzero(blk))
        px_total += blk.size
        sub = blk[(-r0) % step:: step, ::step] if step > 1 else blk
        rr = np.arange(r0 + ((-r0) % step), r1, step) if step > 1 else np.arange(r0, r1)
        cc = np.arange(0, lvl.w, step)
        RR, CC = np.meshgrid(rr, cc, indexing="ij")
        X, Y = lvl.centres(RR.ravel(), CC.ravel())
        st = footprint_status(X, Y, fx, fy, mx, my)
        vals = sub.ravel()
        o = st == -1
        out_n += int(o.sum())
        bad = o & (vals != 0)
        out_nz += int(bad.sum())
        if first_out is None and bad.any():
            k = int(np.argmax(bad))
            first_out = (int(RR.ravel()[k]), int(CC.ravel()[k]), int(vals[k]))
        ii = st == 1
        in_n += int(ii.sum())
        in_zero += int((ii & (vals == 0)).sum())
    frac = nz_total / max(1, px_total)
    lo, hi = nonzero_range
    R.add(f"{p}: nonzero fraction within [{lo:.2f}, {hi:.2f}]", lo <= frac <= hi,
          f"{nz_total}/{px_total} = {frac:.3f}")
    # the data covers the footprint: nonzero count ~ footprint area in output pixels
    # (tolerance: one pixel along the perimeter + 1 % of the area)
    fpx, fpy = (fx - lvl.c) / lvl.a, (fy - lvl.f) / lvl.e
    area = 0.5 * abs(float(np.dot(fpx, np.roll(fpy, -1)) - np.dot(fpy, np.roll(fpx, -1))))
    perim = float(np.sum(np.hypot(np.diff(np.append(fpx, fpx[0])), np.diff(np.append(fpy, fpy[0])))))
    tol = perim + 0.01 * area
    R.add(f"{p}: nonzero pixel count == GCP footprint area in pixels (+- perimeter + 1 %)",
          abs(nz_total - area) <= tol,
          f"{nz_total} nonzero vs footprint {area:.0f} px (ratio {nz_total / max(area, 1):.4f}, tol {tol:.0f} px)")
    R.add(f"{p}: pixels > {MARGIN_PX} px outside the GCP footprint are 0", out_nz == 0 and out_n > 0,
          f"{out_nz} nonzero of {out_n} sampled (step {step})"
          + (f"; first at row {first_out[0]} col {first_out[1]} = {first_out[2]}" if first_out else ""))
    zf = in_zero / max(1, in_n)
    R.add(f"{p}: pixels > {MARGIN_PX} px inside the GCP footprint have data (<= {inside_zero_tol:.1%} 0)",
          in_n > 0 and zf <= inside_zero_tol, f"{in_zero} zero of {in_n} sampled = {zf:.4%} (step {step})")


def check_coarse(pol: str, lvl: Level, parent: Level, og, pg, sample: int):
    p = f"{pol}/{lvl.name}: 2x2 nonzero mean of {parent.name}"
    with R.guard(p):
        pa, ca = pg["grd"], og["grd"]
        if ca.shape != (pa.shape[0] // 2, pa.shape[1] // 2):
            R.add(p, False, f"shape {ca.shape} != parent {pa.shape} // 2")
            return
        full = sample <= 0 and pa.shape[0] * pa.shape[1] <= FULL_PX
        wins = windows(*ca.shape, 0 if full else (sample if sample > 0 else 1024))
        n = nz = 0
        err = None
        for ws, wc in wins:
            got = np.asarray(ca[ws, wc]).astype(np.int64)
            par = np.asarray(pa[2 * ws.start: 2 * ws.stop, 2 * wc.start: 2 * wc.stop])
            up, even, mean = expected_coarse(par)
            bad = (got != up) & (got != even)
            n += got.size
            nz += int(np.count_nonzero(got))
            if bad.any():
                k = np.argwhere(bad)[0]
                r, c = int(k[0]) + ws.start, int(k[1]) + wc.start
                err = (f"{int(bad.sum())} px differ; first at ({r},{c}): got {int(got[tuple(k)])}, "
                       f"mean of nonzero {mean[tuple(k)]:.3f} -> {int(up[tuple(k)])}; parent block "
                       f"{par[2 * k[0]: 2 * k[0] + 2, 2 * k[1]: 2 * k[1] + 2].tolist()}")
                break
        scope = "full level" if full else f"{len(wins)} windows"
        R.add(p, err is None, err or f"{scope}: {n} px ({nz} nonzero) equal")


def check_copied(pol: str, sg, og, what: str):
    p = f"{pol}/{what}"
    if what not in sg:
        R.add(f"{p}: source has it", True, "none in the source, nothing to check")
        return
    issues = []
    n = 0
    for path, sa in walk_arrays(sg[what], what):
        n += 1
        if path not in og:
            issues.append(f"{path}: missing")
            continue
        oa = og[path]
        if oa.dtype != sa.dtype or oa.shape != sa.shape:
            issues.append(f"{path}: {oa.dtype}{oa.shape} != source {sa.dtype}{sa.shape}")
            continue
        a, b = np.asarray(oa[...]), np.asarray(sa[...])
        same = np.array_equal(a, b, equal_nan=True) if a.dtype.kind == "f" else np.array_equal(a, b)
        if not same:
            issues.append(f"{path}: values differ")
    R.add(f"{p}: every source array copied (dtype, shape, values)", not issues and n > 0,
          "; ".join(issues[:5]) or f"{n} arrays")


# ----------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="Sentinel-1 GRD EOPF Zarr v2 product (dir or s3://)")
    ap.add_argument("--output", required=True, help="converted GeoZarr v3 store (dir or s3://)")
    ap.add_argument("--crs-epsg", type=int, default=4326, help="expected output CRS (default 4326)")
    ap.add_argument("--level-sample", type=int, default=0, metavar="N",
                    help="coarse levels: compare three NxN windows only; swath: sample ~4M px (0 = all)")
    ap.add_argument("--min-gcp-fraction", type=float, default=0.6,
                    help="fail if fewer GCPs than this fraction were compared (default 0.6)")
    ap.add_argument("--min-nonzero", type=float, default=0.30,
                    help="lowest nonzero fraction of the native level (default 0.30)")
    ap.add_argument("--max-nonzero", type=float, default=0.95,
                    help="highest nonzero fraction of the native level (default 0.95)")
    ap.add_argument("--inside-zero-tol", type=float, default=0.01,
                    help="max fraction of 0 px well inside the footprint (default 0.01)")
    args = ap.parse_args()
    t0 = time.monotonic()
    epsg = args.crs_epsg

    def source_grd(src):
        pols = source_pols(src)
        if not pols:
            raise InputError(f"source {args.source}: no <pol>/measurements/grd group (not an S1 GRD product?)")
        ctr = None if epsg == 4326 else Transformer.from_crs(4326, epsg, always_xy=True)
        CRS.from_epsg(epsg)
        return pols, ctr

    inputs = load_inputs("verify_geozarr_s1", args.source, args.output, source_grd)
    if inputs is None:
        return 2
    src_loc, out_loc, src, (pols, ctr) = inputs

    print(f"# source {args.source} ({', '.join(f'{k}={v}' for k, v in sorted(pols.items()))}); "
          f"output {args.output}; expected EPSG:{epsg}; level-sample {args.level_sample or 'full'}", flush=True)

    with R.guard("store: metadata"):
        check_store(out_loc)
    out_root = open_output_root(out_loc)
    out_groups = sorted(n for n, _ in out_root.groups())
    R.add("store: output root groups == source polarisation groups", out_groups == sorted(pols.values()),
          f"output {out_groups}")

    gcp_counts = {}
    for pol, gname in sorted(pols.items()):
        tp = time.monotonic()
        if gname not in out_root:
            R.add(f"{pol}: group {gname} present", False, "missing in the output")
            continue
        sg, og = src[gname], out_root[gname]
        mpath = f"{gname}/measurements"
        if not R.add(f"{pol}: {gname}/measurements present", "measurements" in og, ""):
            continue
        mg = og["measurements"]
        layout = []
        with R.guard(f"{pol}: multiscales"):
            layout = check_multiscales(pol, mg)
            R.add(f"{pol}: measurements proj:code == EPSG:{epsg}", parse_epsg(mg.attrs.get("proj:code")) == epsg,
                  f"{mg.attrs.get('proj:code')!r}")
        levels: dict[str, Level] = {}
        for entry in layout:
            name = entry.get("asset")
            with R.guard(f"{pol}/{name}: level"):
                if name not in mg:
                    R.add(f"{pol}/{name}: group present", False, f"/{mpath}/{name} missing")
                    continue
                lv = check_level(pol, out_loc, f"{mpath}/{name}", mg[name], entry, epsg)
                if lv is not None:
                    levels[name] = lv
        if not layout or layout[0].get("asset") not in levels:
            R.add(f"{pol}: native level available for the value checks", False, "")
            continue
        native = levels[layout[0]["asset"]]
        ngrd = mg[native.name]["grd"]
        sgrd = sg["measurements/grd"]
        with R.guard(f"{pol}/{native.name}: GCP values"):
            gx, gy, L, P = read_gcps(sg, ctr)
            gcp_counts[pol] = check_gcp_values(pol, native, ngrd, sgrd, gx, gy, L, P, args.min_gcp_fraction)
            with R.guard(f"{pol}/{native.name}: swath"):
                check_swath(pol, native, ngrd, gx, gy, args.inside_zero_tol, args.level_sample,
                            (args.min_nonzero, args.max_nonzero))
        for prev, entry in zip(layout, layout[1:]):
            n, pn = entry.get("asset"), prev.get("asset")
            if n in levels and pn in levels:
                check_coarse(pol, levels[n], levels[pn], mg[n], mg[pn], args.level_sample)
            else:
                R.add(f"{pol}/{n}: 2x2 nonzero mean of {pn}", False, "level or parent did not open")
        for what in ("conditions", "quality"):
            with R.guard(f"{pol}/{what}"):
                check_copied(pol, sg, og, what)
        print(f"#   {pol} checked in {time.monotonic() - tp:.1f} s", flush=True)

    return finish(t0, gcps_compared={k: {"compared": v[0], "total": v[1]} for k, v in gcp_counts.items()})


if __name__ == "__main__":
    sys.exit(main())
