"""A local S3-compatible server (moto's) for the object-storage dataset tests.

Usage: s3_fixture.py PORT DIR [iam]
Starts moto's server on 127.0.0.1:PORT, creates bucket "prefs" holding data/a.jsonl,
data/b.jsonl.gz and data/c.parquet (written by pyarrow) with the rows in DIR/rows.jsonl,
prints "ready" and serves until killed. Moto takes any credentials; with "iam" it checks
them as S3 does: it creates a user allowed to read, turns checking on and prints
"ready ACCESS_KEY_ID SECRET_ACCESS_KEY", the only credentials it then accepts.
"""
import gzip
import io
import json
import sys
import time

import boto3
import pyarrow.json as pj
import pyarrow.parquet as pq
from moto import settings
from moto.server import ThreadedMotoServer

port, folder = int(sys.argv[1]), sys.argv[2]
iam = len(sys.argv) > 3 and sys.argv[3] == "iam"
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
server.start()
endpoint = "http://127.0.0.1:%d" % port
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="fixture", aws_secret_access_key="fixture")
s3.create_bucket(Bucket="prefs")
rows = open(folder + "/rows.jsonl", "rb").read()
s3.put_object(Bucket="prefs", Key="data/a.jsonl", Body=rows)
s3.put_object(Bucket="prefs", Key="data/b.jsonl.gz", Body=gzip.compress(rows))
table = pj.read_json(io.BytesIO(rows))
buf = io.BytesIO()
pq.write_table(table, buf)
s3.put_object(Bucket="prefs", Key="data/c.parquet", Body=buf.getvalue())
if iam:
    users = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id="fixture", aws_secret_access_key="fixture")
    users.create_user(UserName="reader")
    users.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}))
    key = users.create_access_key(UserName="reader")["AccessKey"]
    # From here on every request is checked: signed with a known key, and allowed by its policy.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    print("ready", key["AccessKeyId"], key["SecretAccessKey"], flush=True)
else:
    print("ready", flush=True)
while True:
    time.sleep(3600)
