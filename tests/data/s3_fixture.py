"""A local S3-compatible server (moto's) for the object-storage dataset tests.

Usage: s3_fixture.py PORT DIR
Starts moto's server on 127.0.0.1:PORT, creates bucket "prefs" holding data/a.jsonl,
data/b.jsonl.gz and data/c.parquet (written by pyarrow) with the rows in DIR/rows.jsonl,
prints "ready" and serves until killed.
"""
import gzip
import io
import sys
import time

import boto3
import pyarrow.json as pj
import pyarrow.parquet as pq
from moto.server import ThreadedMotoServer

port, folder = int(sys.argv[1]), sys.argv[2]
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
server.start()
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%d" % port, region_name="us-east-1",
                  aws_access_key_id="fixture", aws_secret_access_key="fixture")
s3.create_bucket(Bucket="prefs")
rows = open(folder + "/rows.jsonl", "rb").read()
s3.put_object(Bucket="prefs", Key="data/a.jsonl", Body=rows)
s3.put_object(Bucket="prefs", Key="data/b.jsonl.gz", Body=gzip.compress(rows))
table = pj.read_json(io.BytesIO(rows))
buf = io.BytesIO()
pq.write_table(table, buf)
s3.put_object(Bucket="prefs", Key="data/c.parquet", Body=buf.getvalue())
print("ready", flush=True)
while True:
    time.sleep(3600)
