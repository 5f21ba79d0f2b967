"""Two API replicas on one S3 bucket, one of them a separate host (its own network namespace,
a veth pair), cut off from Redis for real (its packets to Redis dropped) while both take tags
for one repository. Not one acknowledged tag may be lost: the cut-off replica refuses writes
(503) rather than writing under a lock the other cannot see, and pulls go on."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import push_random_image
from tests.moto import MotoServer
from tests.servers import BIN, RedisServer, free_port, require_tool, stop_process, wait_http

TAGS = 60
CUT_AT = 15


def sh(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")


class Host:
    """A network namespace joined to this one by a veth pair: another host, as far as TCP goes."""

    def __init__(self, tag: int) -> None:
        for tool in ("ip", "iptables", "nsenter"):
            require_tool(tool)
        self.name = f"ocs{tag}"
        self.host_ip, self.ip = f"10.231.{tag % 250}.1", f"10.231.{tag % 250}.2"
        self.veth = f"ocs{tag}h"

    def create(self) -> None:
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", f"{self.veth[:-1]}n")
        sh("ip", "link", "set", f"{self.veth[:-1]}n", "netns", self.name)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        self.run("ip", "addr", "add", f"{self.ip}/30", "dev", f"{self.veth[:-1]}n")
        self.run("ip", "link", "set", f"{self.veth[:-1]}n", "up")
        self.run("ip", "link", "set", "lo", "up")

    def enter(self) -> list[str]:
        """Run in the namespace: nsenter joins it and nothing else (`ip netns exec` also
        remounts /sys, which a chroot, such as make fresh-check's, does not allow)."""
        return ["nsenter", f"--net=/run/netns/{self.name}"]

    def run(self, *args: str) -> None:
        sh(*self.enter(), *args)

    def popen(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen([*self.enter(), *args], stdout=out, stderr=subprocess.STDOUT)

    def cut(self, ip: str, port: int) -> None:
        """Drop every packet this host sends to ip:port: connections hang, as in a partition."""
        self.run("iptables", "-A", "OUTPUT", "-d", ip, "-p", "tcp", "--dport", str(port), "-j", "DROP")

    def heal(self) -> None:
        self.run("iptables", "-F", "OUTPUT")

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)


@pytest.fixture
def other_host() -> Iterator[Host]:
    host = Host(os.getpid() % 10000)
    host.remove()
    host.create()
    try:
        yield host
    finally:
        host.remove()


def write_config(path: Path, address: str, port: int, redis_url: str, moto: MotoServer, bucket: str) -> Path:
    path.write_text(json.dumps({
        "distSpecVersion": "1.1.0",
        "storage": {"rootDirectory": str(path.parent / "data"), "storageDriver": moto.driver_params(bucket),
                    "remoteCache": False},
        "http": {"address": address, "port": str(port)},
        "redis": redis_url,
        "log": {"level": "info"},
    }))
    return path


def test_a_replica_cut_off_from_redis_refuses_writes_and_no_tag_is_lost(
        tmp_path: Path, other_host: Host) -> None:
    redis = RedisServer(tmp_path, host=other_host.host_ip)
    moto = MotoServer(tmp_path, host=other_host.host_ip)
    procs: list[subprocess.Popen[bytes]] = []
    redis.start()
    moto.start()
    try:
        bucket = moto.new_bucket()
        near_port, far_port = free_port(), free_port()
        near_cfg = write_config(tmp_path / "near.json", "127.0.0.1", near_port, redis.url, moto, bucket)
        far_cfg = write_config(tmp_path / "far.json", other_host.ip, far_port, redis.url, moto, bucket)
        with open(tmp_path / "near.log", "ab") as out:
            procs.append(subprocess.Popen([str(BIN / "ocistore-api"), str(near_cfg)], stdout=out,
                                          stderr=subprocess.STDOUT))
        # Its own /tmp, as a container has: a lock kept there would exclude nobody else.
        (tmp_path / "far-tmp").mkdir()
        procs.append(other_host.popen("env", f"TMPDIR={tmp_path / 'far-tmp'}", str(BIN / "ocistore-api"),
                                      str(far_cfg), log=tmp_path / "far.log"))
        near_url, far_url = f"http://127.0.0.1:{near_port}", f"http://{other_host.ip}:{far_port}"
        wait_http(f"{near_url}/v2/", procs[0])
        wait_http(f"{far_url}/v2/", procs[1])

        repo = "partition/app"
        with httpx.Client(base_url=near_url, timeout=60) as near:
            image = push_random_image(near, repo, "base")
        acknowledged: list[str] = []
        refused: list[int] = []
        failures: list[str] = []
        lock = threading.Lock()
        cut = threading.Event()

        def tagger(url: str, side: str) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                for i in range(TAGS):
                    if side == "far" and i == CUT_AT:
                        other_host.cut(other_host.host_ip, redis.port)
                        cut.set()
                    tag = f"{side}-{i}"
                    resp = client.put(f"/v2/{repo}/manifests/{tag}", content=image.manifest,
                                      headers={"Content-Type": image.media_type})
                    with lock:
                        if resp.status_code == 201:
                            acknowledged.append(tag)
                        elif side == "far" and cut.is_set() and resp.status_code == 503:
                            refused.append(i)
                        else:
                            failures.append(f"{tag}: {resp.status_code} {resp.text[:200]}")

        threads = [threading.Thread(target=tagger, args=(near_url, "near")),
                   threading.Thread(target=tagger, args=(far_url, "far"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with httpx.Client(base_url=far_url, timeout=60) as far:
            # Pulls go on from the cut-off replica.
            assert far.get(f"/v2/{repo}/manifests/base").status_code == 200
        other_host.heal()

        assert not failures, failures[:5]
        assert refused, "the cut-off replica never refused a write: the test proved nothing"
        with httpx.Client(base_url=near_url, timeout=60) as near:
            stored = set(near.get(f"/v2/{repo}/tags/list", params={"n": 1000}).json()["tags"])
        lost = sorted(set(acknowledged) - stored)
        print(f"{len(acknowledged)} tags acknowledged, {len(refused)} refused by the cut-off replica, "
              f"{len(lost)} lost")
        assert not lost, f"{len(lost)} acknowledged tags lost: {lost[:10]}"
    finally:
        for p in procs:
            stop_process(p)
        moto.stop()
        redis.stop()
