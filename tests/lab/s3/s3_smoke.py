#!/usr/bin/env python3
"""Smoke check of an S3 endpoint with boto3: create a bucket, put/get an object, delete both.

Usage: s3_smoke.py [--expect-denied] ENDPOINT ACCESS_KEY SECRET_KEY
With --expect-denied the create_bucket call must be refused (403: bad signature).
"""
import sys
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

args = sys.argv[1:]
expect_denied = args[:1] == ["--expect-denied"]
endpoint, key, secret = args[1:] if expect_denied else args

s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=key,
    aws_secret_access_key=secret,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                  connect_timeout=5, read_timeout=10),
)
bucket = f"lab-smoke-{uuid.uuid4().hex[:12]}"

if expect_denied:
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as e:
        code = e.response["ResponseMetadata"]["HTTPStatusCode"]
        if code == 403:
            print(f"denied as expected ({e.response['Error']['Code']})")
            sys.exit(0)
        sys.exit(f"expected 403, got {code}: {e}")
    s3.delete_bucket(Bucket=bucket)
    sys.exit("request with a wrong secret was accepted")

s3.create_bucket(Bucket=bucket)
try:
    s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello lab")
    body = s3.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read()
    assert body == b"hello lab", body
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")
finally:
    s3.delete_bucket(Bucket=bucket)
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert bucket not in names, f"{bucket} still listed"
print(f"ok: {bucket} created, object round-tripped, deleted")
