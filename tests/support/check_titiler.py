#!/usr/bin/env python3
"""Render one Web-Mercator tile of a converted GeoZarr group with the lab's TiTiler
(titiler.xarray 2.4.0) and check that it is a real image of the data.

    $LAB_PY_READERS tests/support/check_titiler.py --url s3://bucket/.../<item>.zarr \
        --group measurements/reflectance/r10m --variable b04 [--out tile.png] [--zoom Z]

Needs $TITILER_URL (and, to read the store itself for the cross-checks, $S3_ENDPOINT_URL and
AWS_* for s3:// URLs): source /var/tmp/provisioner-lab/env.sh first.

titiler.xarray 2.4.0 selects the Zarr group with the `group=` query parameter (passed to
xarray.open_dataset(group=...)); the dataset itself is `url=`, the array `variable=`.

Checks, in order (each one is a key of the final JSON line):
  validate  GET /validate?variables=<var>: compatible_with_titiler is true
  info      GET /info: 200, CRS and native bounds; bounds == the group's spatial:bbox and the
            CRS == its proj:code (when the store can be read)
  bounds    GET /info.geojson: lon/lat bbox (falls back to pyproj on the /info bounds)
  tile      the WebMercatorQuad tile holding the data centre at the lowest zoom in 10..12 whose
            tile lies inside the data (else 12), or --zoom: GET .../{z}/{x}/{y}.png with
            rescale=0,0.5: HTTP 200, content-type image/png, decodable, alpha band has 255
            values and the colour bands are not all zero where alpha == 255
  point     GET /point/{lon},{lat} at the centre of a valid pixel near the tile centre: the
            value equals the one read from the store with xarray (same pixel), i.e. TiTiler
            georeferences the group exactly like its x/y coordinates say
Exit 0 if all passed, 1 if one failed, 2 on bad arguments / missing environment.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402


def http_get(base: str, path: str, params: dict, timeout: float):
    url = f"{base.rstrip('/')}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("content-type", ""), r.read(), url
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read(), url
    except urllib.error.URLError as e:
        return 0, "", str(e.reason).encode(), url


def as_json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def decode_png(data: bytes) -> np.ndarray:
    """(bands, h, w) uint8; PIL if available, else rasterio (GDAL PNG driver)."""
    try:
        import io

        from PIL import Image
        im = np.asarray(Image.open(io.BytesIO(data)))
        return im[None, ...] if im.ndim == 2 else np.moveaxis(im, -1, 0)
    except ImportError:
        from rasterio.io import MemoryFile
        with MemoryFile(data) as m, m.open(driver="PNG") as d:
            return d.read()


def open_group(url: str, group: str):
    import rioxarray  # noqa: F401
    import xarray as xr
    kw = {}
    if url.startswith("s3://"):
        ep = os.environ.get("S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        if not ep:
            raise RuntimeError("S3_ENDPOINT_URL not set: cannot read the store for the cross-checks")
        kw["storage_options"] = {
            "endpoint_url": ep, "key": os.environ.get("AWS_ACCESS_KEY_ID"),
            "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
            "client_kwargs": {"region_name": os.environ.get("AWS_REGION") or "us-east-1"}}
    return xr.open_dataset(url, engine="zarr", group=group, consolidated=None, decode_coords="all",
                           chunks=None, **kw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="store URL as TiTiler should read it (s3://... or a path)")
    ap.add_argument("--group", required=True, help="e.g. measurements/reflectance/r10m")
    ap.add_argument("--variable", required=True, help="e.g. b04")
    ap.add_argument("--out", help="write the PNG tile here")
    ap.add_argument("--zoom", type=int, help="force this zoom level")
    ap.add_argument("--rescale", default="0,0.5")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--no-store", action="store_true",
                    help="do not read the store directly (skips the bbox/CRS and point cross-checks)")
    args = ap.parse_args()

    base = os.environ.get("TITILER_URL")
    if not base:
        sys.stderr.write("check_titiler: TITILER_URL is not set (source /var/tmp/provisioner-lab/env.sh)\n")
        return 2
    try:
        import morecantile
        from pyproj import Transformer
    except ImportError as e:
        sys.stderr.write(f"check_titiler: {e}; run with $LAB_PY_READERS\n")
        return 2

    group = args.group.strip("/")
    q = {"url": args.url, "variable": args.variable, "group": group}
    res: dict = {"url": args.url, "group": group, "variable": args.variable, "titiler": base}
    errors: list[str] = []

    # ---- validate
    code, _, body, _ = http_get(base, "/validate", {"url": args.url, "group": group, "variables": args.variable},
                                args.timeout)
    v = (as_json(body) or {}).get(args.variable) if code == 200 else None
    res["validate"] = {"status": code, **(v or {"body": body[:300].decode(errors="replace")})}
    if not (v and v.get("compatible_with_titiler")):
        errors.append(f"/validate: {code} {body[:300]!r}")

    # ---- info
    code, _, body, _ = http_get(base, "/info", q, args.timeout)
    info = as_json(body) if code == 200 else None
    res["info"] = {"status": code}
    if not info:
        errors.append(f"/info -> {code}: {body[:500]!r}")
        print(json.dumps({"ok": False, **res, "errors": errors}))
        return 1
    res["info"].update({k: info.get(k) for k in ("crs", "bounds", "dtype", "width", "height", "nodata_type")})
    crs_uri = str(info.get("crs") or "")
    epsg = crs_uri.rstrip("/").rsplit("/", 1)[-1] if "EPSG" in crs_uri.upper() else None

    ds = None
    if not args.no_store:
        try:
            ds = open_group(args.url, group)
            at = ds.attrs
            res["store"] = {"spatial:bbox": at.get("spatial:bbox"), "proj:code": at.get("proj:code"),
                            "rio_crs": str(ds.rio.crs)}
            bb = at.get("spatial:bbox")
            if not (bb and len(bb) == 4 and np.allclose(bb, info["bounds"], rtol=0, atol=1e-6)):
                errors.append(f"/info bounds {info['bounds']} != group spatial:bbox {bb}")
            if at.get("proj:code") and (not epsg or at["proj:code"].upper() != f"EPSG:{epsg}"):
                errors.append(f"/info crs {crs_uri} != group proj:code {at.get('proj:code')}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"reading the store directly: {type(e).__name__}: {e}")

    # ---- lon/lat bounds
    code, _, body, _ = http_get(base, "/info.geojson", q, args.timeout)
    gj = as_json(body) if code == 200 else None
    if gj and gj.get("bbox"):
        lonlat = [float(b) for b in gj["bbox"]]
        res["bounds_lonlat_from"] = "/info.geojson"
    else:
        if not epsg:
            errors.append(f"no lon/lat bounds: /info.geojson -> {code} and /info crs {crs_uri!r}")
            print(json.dumps({"ok": False, **res, "errors": errors}))
            return 1
        tr = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
        lonlat = list(tr.transform_bounds(*info["bounds"], densify_pts=21))
        res["bounds_lonlat_from"] = "pyproj(/info bounds)"
    res["bounds_lonlat"] = lonlat

    # ---- tile
    tms = morecantile.tms.get("WebMercatorQuad")
    clon, clat = (lonlat[0] + lonlat[2]) / 2, (lonlat[1] + lonlat[3]) / 2
    if args.zoom is not None:
        z = args.zoom
    else:
        z = 12
        for zz in (10, 11, 12):
            b = tms.bounds(tms.tile(clon, clat, zz))
            if b.left >= lonlat[0] and b.right <= lonlat[2] and b.bottom >= lonlat[1] and b.top <= lonlat[3]:
                z = zz
                break
    t = tms.tile(clon, clat, z)
    res["tile"] = {"z": t.z, "x": t.x, "y": t.y}
    code, ctype, body, turl = http_get(base, f"/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png",
                                       {**q, "rescale": args.rescale}, args.timeout)
    res["tile"].update({"status": code, "content_type": ctype, "bytes": len(body),
                        "request": turl.replace(base.rstrip("/"), "")})
    if code != 200 or not ctype.startswith("image/png"):
        errors.append(f"tile -> {code} {ctype}: {body[:500]!r}")
    else:
        if args.out:
            with open(args.out, "wb") as f:
                f.write(body)
            res["tile"]["saved"] = args.out
        try:
            img = decode_png(body)
            nb = img.shape[0]
            if nb in (2, 4):
                alpha, colour = img[-1], img[:-1]
            else:
                alpha, colour = np.full(img.shape[1:], 255, np.uint8), img
                errors.append(f"PNG has {nb} band(s): no alpha/mask band")
            valid = alpha == 255
            res["tile"]["png"] = {
                "bands": int(nb), "size": [int(img.shape[1]), int(img.shape[2])],
                "alpha_255_fraction": round(float(valid.mean()), 4),
                "colour_min_max": [int(colour[:, valid].min()) if valid.any() else None,
                                   int(colour[:, valid].max()) if valid.any() else None],
            }
            if not valid.any():
                errors.append("PNG alpha has no 255 values (fully transparent tile)")
            elif not colour[:, valid].any():
                errors.append("PNG colour bands are all zero where alpha == 255")
        except Exception as e:  # noqa: BLE001
            errors.append(f"PNG decode: {type(e).__name__}: {e}")

    # ---- point (georeferencing cross-check against the store)
    if ds is not None and args.variable in ds and epsg:
        try:
            to_xy = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
            to_ll = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
            tb = tms.bounds(t)
            px, py = to_xy.transform((tb.left + tb.right) / 2, (tb.bottom + tb.top) / 2)
            xs, ys = ds["x"].values.astype(np.float64), ds["y"].values.astype(np.float64)
            j0, i0 = int(np.abs(xs - px).argmin()), int(np.abs(ys - py).argmin())
            win = ds[args.variable][max(0, i0 - 8): i0 + 9, max(0, j0 - 8): j0 + 9].values
            ok_idx = np.argwhere(~np.isnan(win)) if win.dtype.kind == "f" else np.argwhere(np.ones_like(win, bool))
            if len(ok_idx) == 0:
                errors.append(f"point: no valid pixel near ({i0},{j0}) to probe")
            else:
                ci, cj = i0 - max(0, i0 - 8), j0 - max(0, j0 - 8)
                di, dj = min(ok_idx.tolist(), key=lambda k: (k[0] - ci) ** 2 + (k[1] - cj) ** 2)
                i, j = max(0, i0 - 8) + int(di), max(0, j0 - 8) + int(dj)
                want = float(win[di, dj])
                lon, lat = to_ll.transform(xs[j], ys[i])
                # float(): numpy 2 would print np.float64(...) into the URL
                code, _, body, _ = http_get(base, f"/point/{float(lon)!r},{float(lat)!r}", q, args.timeout)
                pj = as_json(body) if code == 200 else None
                got = (pj or {}).get("values", [None])[0]
                res["point"] = {"status": code, "pixel": [i, j], "x": xs[j], "y": ys[i],
                                "lonlat": [lon, lat], "titiler": got, "store": want}
                if got is None or not np.isclose(float(got), want, rtol=1e-6, atol=0):
                    errors.append(f"/point at pixel ({i},{j}) -> {code} {got!r}, store has {want!r}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"point check: {type(e).__name__}: {e}")

    res["errors"] = errors
    print(json.dumps({"ok": not errors, **res}, default=str))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
