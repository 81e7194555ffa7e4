"""TiTiler (titiler.xarray 2.4.0) for the test lab, patched to stay off the network.

For s3:// URLs, titiler.xarray.io.open_zarr() guesses the bucket's region with
httpx.get("https://<bucket>.s3.amazonaws.com") (_find_bucket_region). Offline that is
a 500 ("Name or service not known"); online it would leak requests to AWS. The lab
answers it from $AWS_REGION instead. The S3 endpoint and credentials come from the
environment, which obstore reads: AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION (set by tests/lab/eo/component.sh).
"""

import os

import titiler.xarray.io as _io

if not hasattr(_io, "_find_bucket_region"):  # the patch is pinned to titiler.xarray 2.4.0
    raise RuntimeError("titiler.xarray.io._find_bucket_region is gone: re-check the lab patch")

_io._find_bucket_region = lambda bucket, use_https=True: os.environ.get("AWS_REGION", "us-east-1")

from titiler.xarray.main import app  # noqa: E402,F401
