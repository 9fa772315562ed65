#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# Setup half of bench/s3.sh: creates the bench bucket in a running sov-s3, uploads COUNT objects
# of each size with boto3 and writes the same bytes under the nginx document root, then writes
# the presigned URLs the wrk script rotates through. Everything it makes goes under OUT_DIR:
#   get-<size>.paths  presigned GET path?query lines for the uploaded objects
#   put-<size>.paths  presigned PUT path?query lines for a separate set of keys
#   put-<size>.body   the fixed body every PUT of that size sends
#   check-<size>.url  one full presigned GET URL and  check-<size>.sha256  its object's digest
# Usage: s3-setup.py ENDPOINT ACCESS_KEY SECRET REGION BUCKET COUNT NGINX_ROOT OUT_DIR SIZE...
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

# SigV4 caps a presigned URL's lifetime at seven days; the bench needs minutes, but a long
# expiry keeps a slow machine from measuring 403s.
EXPIRES = 7 * 24 * 3600


def main():
    if len(sys.argv) < 10:
        sys.exit(f"usage: {sys.argv[0]} ENDPOINT ACCESS_KEY SECRET REGION BUCKET COUNT "
                 "NGINX_ROOT OUT_DIR SIZE...")
    endpoint, ak, sk, region, bucket, count, nginx_root, out = sys.argv[1:9]
    count = int(count)
    sizes = [int(s) for s in sys.argv[9:]]

    cfg = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                 retries={"max_attempts": 1}, max_pool_connections=16)
    s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                        aws_access_key_id=ak, aws_secret_access_key=sk,
                                        config=cfg)
    s3.create_bucket(Bucket=bucket,
                     CreateBucketConfiguration={"LocationConstraint": region})
    os.makedirs(os.path.join(nginx_root, bucket), exist_ok=True)

    def presign(op, key):
        url = s3.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key},
                                        ExpiresIn=EXPIRES)
        # wrk takes the host from its command line; the script sends path and query.
        return url[len(endpoint):]

    for size in sizes:
        keys = [f"obj-{size}-{i:04d}" for i in range(count)]

        def upload(key):
            data = os.urandom(size)
            with open(os.path.join(nginx_root, bucket, key), "wb") as f:
                f.write(data)
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            return hashlib.sha256(data).hexdigest()

        with ThreadPoolExecutor(8) as pool:
            digests = list(pool.map(upload, keys))

        with open(os.path.join(out, f"get-{size}.paths"), "w") as f:
            f.writelines(presign("get_object", k) + "\n" for k in keys)
        with open(os.path.join(out, f"put-{size}.paths"), "w") as f:
            f.writelines(presign("put_object", f"put-{size}-{i:04d}") + "\n"
                         for i in range(count))
        with open(os.path.join(out, f"put-{size}.body"), "wb") as f:
            f.write(os.urandom(size))
        with open(os.path.join(out, f"check-{size}.url"), "w") as f:
            f.write(endpoint + presign("get_object", keys[0]) + "\n")
        with open(os.path.join(out, f"check-{size}.sha256"), "w") as f:
            f.write(digests[0] + "\n")


if __name__ == "__main__":
    main()
