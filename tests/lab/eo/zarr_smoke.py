#!/usr/bin/env python3
"""End-to-end smoke check of the eo lab: write a tiny georeferenced Zarr (v3) to the S3
mock with the readers stack, ask TiTiler for /info and one tile of it, clean up.

Needs the environment of $LAB_STATE/env.sh (S3_ENDPOINT_URL, AWS_*, TITILER_URL).
Run with $LAB_PY_READERS.
"""
import json
import os
import urllib.error
import urllib.request
import uuid

import boto3
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from botocore.config import Config

endpoint = os.environ["S3_ENDPOINT_URL"]
titiler = os.environ["TITILER_URL"]
bucket = f"lab-smoke-{uuid.uuid4().hex[:12]}"
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))


def get(path):
    try:
        with urllib.request.urlopen(titiler + path, timeout=60) as r:
            return r.status, r.headers.get("content-type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type"), e.read()


s3.create_bucket(Bucket=bucket)
try:
    # 64 x 64 grid of 0.01 degree pixels around 10.5E 46.5N, EPSG:4326
    x = 10.0 + 0.01 * (np.arange(64) + 0.5)
    y = 47.0 - 0.01 * (np.arange(64) + 0.5)
    ds = xr.Dataset({"v": (("y", "x"), np.linspace(0, 1, 64 * 64, dtype="float32").reshape(64, 64))},
                    coords={"x": x, "y": y})
    ds = ds.rio.write_crs("EPSG:4326")
    ds.to_zarr(f"s3://{bucket}/cube.zarr", mode="w",
               storage_options={"endpoint_url": endpoint, "key": os.environ["AWS_ACCESS_KEY_ID"],
                                "secret": os.environ["AWS_SECRET_ACCESS_KEY"]})

    code, _, body = get(f"/info?url=s3://{bucket}/cube.zarr&variable=v")
    assert code == 200, f"/info -> {code}: {body[:300]!r}"
    info = json.loads(body)
    assert "4326" in json.dumps(info.get("crs")), f"unexpected crs: {info.get('crs')}"
    code, ctype, body = get(f"/tiles/WebMercatorQuad/8/135/90.png?url=s3://{bucket}/cube.zarr"
                            "&variable=v&rescale=0,1")
    assert code == 200 and ctype == "image/png", f"tile -> {code} {ctype}: {body[:300]!r}"
    print(f"ok: /info bounds={info.get('bounds')}, tile {len(body)} B")
finally:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
    s3.delete_bucket(Bucket=bucket)
