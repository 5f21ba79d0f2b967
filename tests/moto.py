"""moto's server mode on a free loopback port: the S3 (and DynamoDB) the tests talk to.

aioboto3 speaks HTTP through aiohttp, which moto's in-process decorators cannot intercept,
so the tests run the real `moto_server` (from `moto[server]`) as a child process.  A
missing `moto_server` is a failure, never a skip.

`moto_s3` is the session's plain server: tests isolate themselves with a fresh bucket each
(`new_bucket`).  `MotoServer(iam_bootstrap=True)` enforces IAM: moto authenticates every
request after its first `INITIAL_NO_AUTH_ACTION_COUNT` ones, which are spent on creating an
admin user whose keys then drive the set-up (buckets, users, policies) like a real account.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.servers import BIN, env_without_proxy, free_port, stop_process, wait_http

REGION = "us-east-1"
# The unauthenticated calls of the IAM bootstrap: CreateUser, PutUserPolicy, CreateAccessKey.
IAM_BOOTSTRAP_CALLS = 3
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def zot_s3_policy(bucket: str) -> dict[str, Any]:
    """The minimal policy zot documents for its S3 storage driver."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListMultipartUploadParts",
                           "s3:AbortMultipartUpload"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
        ],
    }


class MotoServer:
    """`moto_server` as a child process, with its log kept for failures."""

    def __init__(self, workdir: Path, iam_bootstrap: bool = False, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.iam = iam_bootstrap
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.log_path = workdir / "moto.log"
        # Without IAM moto accepts any keys; with it, `start` replaces these with an admin's.
        self.access_key = "testing"
        self.secret_key = "testing"
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: dict[str, Any] = {}

    def start(self) -> MotoServer:
        env = env_without_proxy()
        if self.iam:
            env["MOTO_ENABLE_IAM"] = "1"
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(IAM_BOOTSTRAP_CALLS)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command(), "-H", self.host, "-p", str(self.port)],
            stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
        )
        logf.close()
        # moto's own API: a request to a service's URL would spend an unauthenticated call.
        wait_http(f"{self.url}/moto-api/", self.proc)
        if self.iam:
            self.access_key, self.secret_key = self.create_user("admin", ALLOW_ALL)
        return self

    def command(self) -> list[str]:
        """The server's argv before its host and port options (the bench runs a counting moto)."""
        # This environment's moto, never one on PATH: a system Python's moto 5.2.1 was
        # seen rejecting IAM-signed requests whose query string holds '%2F'.
        server = BIN / "moto_server"
        if not server.exists():
            raise RuntimeError(f"{server} is missing; run `make test`, which installs moto[server]")
        return [str(server)]

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, service: str = "s3", keys: tuple[str, str] | None = None) -> Any:
        """A (synchronous) boto3 client, with the server's keys unless `keys` are given."""
        access, secret = keys or (self.access_key, self.secret_key)
        key = f"{service}:{access}:{secret}"
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service, endpoint_url=self.url, region_name=REGION,
                aws_access_key_id=access, aws_secret_access_key=secret)
        return self._clients[key]

    def create_user(self, name: str, policy: dict[str, Any]) -> tuple[str, str]:
        """An IAM user with one inline policy; returns its access key and secret."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every key in the bucket."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def uploads(self, bucket: str) -> list[dict[str, Any]]:
        """The bucket's unfinished multipart uploads."""
        return list(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def remove_bucket(self, bucket: str) -> None:
        s3 = self.client()
        for upload in self.uploads(bucket):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for key in self.keys(bucket):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)

    def driver_params(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """A zot `storageDriver` block for this server (extra keys override)."""
        return {
            "name": "s3", "region": REGION, "bucket": bucket, "regionendpoint": self.url,
            "forcepathstyle": True, "accesskey": self.access_key, "secretkey": self.secret_key, **extra,
        }


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the session; import this fixture into a conftest to use it."""
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moto_iam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server that enforces IAM; import this fixture into a test module to use it."""
    server = MotoServer(tmp_path_factory.mktemp("moto-iam"), iam_bootstrap=True).start()
    try:
        yield server
    finally:
        server.stop()
