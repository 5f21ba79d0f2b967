"""What only the S3 driver has: multipart writes, appends rebuilt from the stored object,
its parameters and credential chain, S3 failures as registry errors, the stale-upload
sweep, and zot's minimal IAM policy enforced for real by moto.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from ocistore.config import S3DriverConfig
from ocistore.config.drivers import MIB
from ocistore.errors import ErrorCode, RegistryError
from ocistore.storage import PathNotFound
from ocistore.storage.s3 import S3Driver, calls, pieces
from tests.moto import MotoServer, zot_s3_policy
from tests.moto import moto_iam as moto_iam
from tests.servers import free_port

Body = Callable[[S3Driver], Awaitable[None]]
CHUNK = 5 * MIB


def run(params: dict[str, Any], body: Body) -> None:
    async def main() -> None:
        driver = S3Driver.from_params(params)
        try:
            await body(driver)
        finally:
            await driver.close()

    asyncio.run(main())


def record_calls(driver: S3Driver, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The S3 operations the driver makes from now on, in order."""
    calls: list[str] = []
    original = driver._call

    async def recording(op: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(op)
        return await original(op, *args, **kwargs)

    monkeypatch.setattr(driver, "_call", recording)
    return calls


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


@pytest.fixture
def bucket(moto_s3: MotoServer) -> Iterator[str]:
    name = moto_s3.new_bucket()
    yield name
    leftovers = moto_s3.keys(name) + [f"upload of {u['Key']}" for u in moto_s3.uploads(name)]
    moto_s3.remove_bucket(name)
    assert not leftovers, f"left behind: {leftovers}"


@pytest.fixture
def params(moto_s3: MotoServer, bucket: str) -> dict[str, Any]:
    return moto_s3.driver_params(bucket, rootdirectory="/ocistore", chunksize=CHUNK)


def test_appends_never_copy_what_came_before(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each append is a segment object of its own: a chunked upload costs O(bytes), not O(bytes²)."""
    first, more, last = os.urandom(6 * MIB), os.urandom(3 * MIB), os.urandom(MIB)

    async def body(d: S3Driver) -> None:
        await d.put_content("u/session", first)
        calls = record_calls(d, monkeypatch)
        for piece in (more, last):
            w = await d.writer("u/session", append=True)
            await w.write(piece)
            await w.close()
        assert w.size == len(first) + len(more) + len(last)
        assert "UploadPartCopy" not in calls and "GetObject" not in calls
        assert (await d.stat("u/session")).size == len(first) + len(more) + len(last)
        assert await collect(d.read_stream("u/session")) == first + more + last
        assert await collect(d.read_stream("u/session", 6 * MIB - 10, 20)) == (first + more)[6 * MIB - 10:6 * MIB + 10]
        assert await d.get_content("u/session") == first + more + last
        with pytest.raises(PathNotFound):
            await d.writer("u/missing", append=True)
        await d.delete("u")

    run(params, body)


def test_moving_an_appended_object_concatenates_once(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The move to the blob's place joins the pieces: large ones server-side, small ones streamed."""
    large, small, tail = os.urandom(6 * MIB), os.urandom(MIB), os.urandom(6 * MIB)

    async def body(d: S3Driver) -> None:
        await d.put_content("u/session", b"")
        for piece in (large, small, tail):
            w = await d.writer("u/session", append=True)
            await w.write(piece)
            await w.close()
        calls = record_calls(d, monkeypatch)
        await d.move("u/session", "b/blob")
        assert "UploadPartCopy" in calls and "GetObject" in calls
        assert await d.get_content("b/blob") == large + small + tail
        assert not await d.exists("u/session")
        with pytest.raises(PathNotFound):
            await d.list("u")
        # A small appended object becomes a single PutObject.
        await d.put_content("u/small", b"")
        w = await d.writer("u/small", append=True)
        await w.write(b"abc")
        await w.close()
        await d.move("u/small", "b/small")
        assert await d.get_content("b/small") == b"abc"
        await d.delete("b")

    run(params, body)


def test_a_large_write_goes_out_in_parts_while_written(
    params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(20 * MIB)

    async def body(d: S3Driver) -> None:
        calls = record_calls(d, monkeypatch)
        w = await d.writer("big")
        for i in range(0, 11 * MIB, MIB):
            await w.write(data[i:i + MIB])
        assert calls.count("UploadPart") == 2  # parts leave as they fill: memory stays at one part
        for i in range(11 * MIB, len(data), MIB):
            await w.write(data[i:i + MIB])
        await w.close()
        assert calls.count("UploadPart") == 4 and "PutObject" not in calls
        info = await d.stat("big")
        assert info.size == len(data) and info.ident.endswith("-4")
        assert await collect(d.read_stream("big")) == data
        assert await collect(d.read_stream("big", 7 * MIB + 3, 2 * MIB)) == data[7 * MIB + 3:9 * MIB + 3]
        await d.delete("big")

    run(params, body)


def test_listings_follow_continuation(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "LIST_PAGE", 2)
    files = ["d/a/1", "d/a/2", "d/a/3", "d/b/1", "d/c", "d/e", "d/f"]

    async def body(d: S3Driver) -> None:
        for f in files:
            await d.put_content(f, b"x")
        assert sorted(await d.list("d")) == ["a/", "b/", "c", "e", "f"]
        assert sorted([f.path async for f in d.walk("d")]) == files
        await d.delete("d/a")
        assert sorted([f.path async for f in d.walk("d")]) == files[3:]
        await d.delete("d")
        assert not await d.exists("d")

    run(params, body)


def test_copies_past_the_copy_limit_go_in_parts(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # S3 copies at most 5 GiB in one request; a lower limit here takes the same path cheaply.
    monkeypatch.setattr(pieces, "MAX_COPY", 8 * MIB)
    data = os.urandom(12 * MIB)

    async def body(d: S3Driver) -> None:
        await d.put_content("c/src", data)
        calls = record_calls(d, monkeypatch)
        await d.link("c/src", "c/linked")
        await d.move("c/src", "c/moved")
        assert calls.count("UploadPartCopy") == 4 and "CopyObject" not in calls
        w = await d.writer("c/moved", append=True)
        await w.write(b"tail")
        await w.close()
        assert calls.count("UploadPartCopy") == 4  # an append copies nothing
        assert await d.get_content("c/linked") == data
        assert await d.get_content("c/moved") == data + b"tail"
        assert not await d.exists("c/src")
        await d.delete("c")

    run(params, body)


def test_touch_past_the_copy_limit_renews_in_parts(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer over 5 GiB must be renewable too (GC's age): CopyObject refuses it."""
    monkeypatch.setattr(pieces, "MAX_COPY", 8 * MIB)
    data = os.urandom(12 * MIB)

    async def body(d: S3Driver) -> None:
        await d.put_content("t/big", data)
        before = (await d.stat("t/big")).mtime
        await asyncio.sleep(1.1)  # LastModified has a resolution of one second
        calls = record_calls(d, monkeypatch)
        await d.touch("t/big")
        assert calls.count("UploadPartCopy") == 2 and "CopyObject" not in calls
        assert (await d.stat("t/big")).mtime > before
        assert await d.get_content("t/big") == data
        await d.delete("t")

    run(params, body)


def test_an_empty_file_and_reads_at_its_end(params: dict[str, Any]) -> None:
    async def body(d: S3Driver) -> None:
        w = await d.writer("empty")
        await w.close()
        assert (await d.stat("empty")).size == 0
        assert await collect(d.read_stream("empty")) == b""
        await d.put_content("five", b"12345")
        assert await collect(d.read_stream("five", 5)) == b""
        assert await collect(d.read_stream("five", 2, 0)) == b""
        with pytest.raises(PathNotFound):
            await collect(d.read_stream("nope", 0, 0))
        await d.delete("empty")
        await d.delete("five")

    run(params, body)


def test_a_stream_left_early_frees_its_connection(params: dict[str, Any]) -> None:
    data = os.urandom(4 * MIB)

    async def body(d: S3Driver) -> None:
        await d.put_content("blob", data)
        for _ in range(3):
            stream = cast(AsyncGenerator[bytes, None], d.read_stream("blob"))
            assert len(await anext(stream)) == MIB
            await stream.aclose()
        assert await d.get_content("blob") == data
        await d.delete("blob")

    run(params, body)


def test_rootdirectory_scopes_the_keys(moto_s3: MotoServer, bucket: str) -> None:
    async def body(d: S3Driver) -> None:
        await d.put_content("r/file", b"x")
        assert moto_s3.keys(bucket) == ["some/root/r/file"]
        assert [f.path async for f in d.walk("")] == ["r/file"]
        assert await d.list("") == ["r/"]
        await d.delete("r")
        assert await d.list("") == []

    run(moto_s3.driver_params(bucket, rootdirectory="some/root/"), body)


def test_parameters_are_checked() -> None:
    base = {"name": "s3", "bucket": "b", "region": "us-east-1"}
    given = {"Name": "s3", "Bucket": "b", "RegionEndpoint": "127.0.0.1:9000", "Secure": "false",
             "ForcePathStyle": True, "RootDirectory": "/ocistore/", "ChunkSize": "6291456"}
    parsed = S3DriverConfig.model_validate(given, context={"file": True})
    assert parsed.regionendpoint == "http://127.0.0.1:9000" and parsed.forcepathstyle
    assert parsed.rootdirectory == "ocistore" and parsed.chunksize == 6 * MIB
    assert parsed.storageclass == "STANDARD" and not parsed.skipverify
    bad: list[tuple[dict[str, Any], str]] = [
        ({"bucket": "b", "acl": "private"}, "acl"),
        ({"region": "us-east-1"}, "bucket"),
        ({**base, "chunksize": MIB}, "chunksize"),
        ({**base, "chunksize": True}, "chunksize"),
        ({**base, "secure": "maybe"}, "secure"),
        ({**base, "storageclass": "GLACIER"}, "storageclass"),
        ({**base, "regionendpoint": "ftp://host"}, "regionendpoint"),
        ({**base, "rootdirectory": "a/../b"}, "rootdirectory"),
        ({**base, "accesskey": "k"}, "secretkey"),
        ({**base, "name": "gcs"}, "name"),
        ({**base, "Bucket": "c"}, "Bucket"),
    ]
    for given, named in bad:
        with pytest.raises(ValueError, match=named):
            S3Driver.from_params(given)


def test_a_missing_bucket_is_unavailable_at_once(moto_s3: MotoServer, caplog: pytest.LogCaptureFixture) -> None:
    async def body(d: S3Driver) -> None:
        for call in (d.stat("x"), d.put_content("x", b"1"), d.get_content("x")):
            started = time.monotonic()
            with pytest.raises(RegistryError) as caught:
                await call
            assert time.monotonic() - started < 2
            assert caught.value.code is ErrorCode.UNAVAILABLE
            assert caught.value.detail == {"operation": "ListObjectsV2", "bucket": "no-such-bucket",
                                           "code": "NoSuchBucket"}

    with caplog.at_level(logging.WARNING, logger="ocistore.storage.s3"):
        run(moto_s3.driver_params("no-such-bucket"), body)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("no-such-bucket" in line and "NoSuchBucket" in line for line in lines)


def test_an_unreachable_endpoint_is_unavailable_not_a_hang(moto_s3: MotoServer) -> None:
    async def body(d: S3Driver) -> None:
        started = time.monotonic()
        with pytest.raises(RegistryError) as caught:
            await d.get_content("x")
        assert time.monotonic() - started < 15  # three attempts with jittered back-off
        assert caught.value.code is ErrorCode.UNAVAILABLE
        assert caught.value.detail["code"] == "EndpointConnectionError"

    run(moto_s3.driver_params("b", regionendpoint=f"http://127.0.0.1:{free_port()}"), body)


def test_stale_multipart_uploads_are_aborted(moto_s3: MotoServer, bucket: str, params: dict[str, Any]) -> None:
    admin = moto_s3.client()
    outside = admin.create_multipart_upload(Bucket=bucket, Key="elsewhere/file")["UploadId"]

    async def body(d: S3Driver) -> None:
        w = await d.writer("r/.uploads/abandoned")
        await w.write(os.urandom(CHUNK))  # one part out: a multipart upload exists
        assert sorted(u["Key"] for u in moto_s3.uploads(bucket)) == ["elsewhere/file", "ocistore/r/.uploads/abandoned"]
        # moto reports every upload as initiated in 2010, so only bounds beyond that are testable.
        assert await d.abort_stale_multipart_uploads(100 * 365 * 86400) == 0
        assert await d.abort_stale_multipart_uploads(0) == 1
        assert [u["Key"] for u in moto_s3.uploads(bucket)] == ["elsewhere/file"]
        await w.cancel()  # its upload is gone already: no error

    run(params, body)
    admin.abort_multipart_upload(Bucket=bucket, Key="elsewhere/file", UploadId=outside)


def test_credentials_come_from_the_standard_chain(
    moto_iam: MotoServer, iam_bucket: str, zot_keys: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    params = moto_iam.driver_params(iam_bucket)
    del params["accesskey"], params["secretkey"]

    async def body(d: S3Driver) -> None:
        await d.put_content("creds", b"ok")
        assert await d.get_content("creds") == b"ok"
        await d.delete("creds")

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", zot_keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", zot_keys[1])
    run(params, body)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(RegistryError) as caught:
        run(params, body)
    assert caught.value.detail["code"] == "SignatureDoesNotMatch"

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[registry]\naws_access_key_id = {zot_keys[0]}\naws_secret_access_key = {zot_keys[1]}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "registry")
    run(params, body)


# -- zot's minimal policy, enforced by moto's IAM -------------------------------------------


@pytest.fixture(scope="module")
def iam_bucket(moto_iam: MotoServer) -> str:
    return moto_iam.new_bucket()


@pytest.fixture(scope="module")
def zot_keys(moto_iam: MotoServer, iam_bucket: str) -> tuple[str, str]:
    """Keys of a user allowed exactly zot's policy on the bucket."""
    return moto_iam.create_user("zot", zot_s3_policy(iam_bucket))


def test_zot_s3_policy_is_enough_and_enforced(
    moto_iam: MotoServer, iam_bucket: str, zot_keys: tuple[str, str]
) -> None:
    access, secret = zot_keys
    params = moto_iam.driver_params(iam_bucket, accesskey=access, secretkey=secret, chunksize=CHUNK)
    large = os.urandom(6 * MIB)

    async def body(d: S3Driver) -> None:
        await d.put_content("r/a/small", b"small")
        assert await d.get_content("r/a/small") == b"small"
        w = await d.writer("r/a/large")
        await w.write(large)
        await w.close()
        for path, first in (("r/a/large", large), ("r/a/small", b"small")):
            w = await d.writer(path, append=True)
            await w.write(b"+more")
            await w.close()
            assert await collect(d.read_stream(path, len(first) - 2)) == first[-2:] + b"+more"
        w = await d.writer("r/a/cancelled")
        await w.write(large)
        await w.cancel()
        assert sorted(await d.list("r/a")) == ["large", "small"]
        assert (await d.stat("r/a")).is_dir
        await d.move("r/a/small", "r/b/moved")
        await d.link("r/a/large", "r/c/linked")
        assert sorted([f.path async for f in d.walk("r")]) == ["r/a/large", "r/b/moved", "r/c/linked"]
        w = await d.writer("r/.uploads/stale")
        await w.write(large)
        assert await d.abort_stale_multipart_uploads(0) == 1
        await d.delete("r/b/moved")
        await d.delete("r")  # DeleteObjects, and DeleteObject for what moto refuses
        assert [f async for f in d.walk("")] == []

    run(params, body)
    assert moto_iam.keys(iam_bucket) == [] and moto_iam.uploads(iam_bucket) == []

    # Outside the policy: another bucket, and the bucket's own configuration.
    other = moto_iam.new_bucket()

    async def elsewhere(d: S3Driver) -> None:
        with pytest.raises(RegistryError) as caught:
            await d.put_content("x", b"1")
        assert caught.value.code is ErrorCode.UNAVAILABLE and caught.value.detail["code"] == "AccessDenied"

    run(moto_iam.driver_params(other, accesskey=access, secretkey=secret), elsewhere)
    moto_iam.remove_bucket(other)
    as_zot = moto_iam.client(keys=zot_keys)
    for op, args in (("delete_bucket", {}), ("put_bucket_policy", {"Policy": "{}"})):
        with pytest.raises(ClientError, match="AccessDenied"):
            getattr(as_zot, op)(Bucket=iam_bucket, **args)


def test_a_store_that_ignores_conditional_writes_is_found_out(params: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Some S3-compatible stores accept If-Match/If-None-Match and ignore them: a fenced write
    there would pass whatever changed, so the driver probes first and says so."""
    async def body(d: S3Driver) -> None:
        real = d._call

        async def ignoring(op: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
            kwargs.pop("IfMatch", None)
            kwargs.pop("IfNoneMatch", None)
            return await real(op, *args, **kwargs)

        monkeypatch.setattr(d, "_call", ignoring)
        await d.replace_content("f/index.json", b"v1", None)
        assert d._unconditional
        await d.replace_content("f/index.json", b"v2", None)  # unfenced now, as logged
        assert await d.get_content("f/index.json") == b"v2"
        assert await d.list("") == ["f/"]  # the probe left nothing behind
        await d.delete("f")

    run(params, body)
