"""`ocistore.tls.ServerTLS` on a clock of the test's own: when the files are looked at, and
what a bad pair leaves in place."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ocistore.config.tls import TLSConfig
from ocistore.tls import ServerTLS
from tests.tls.conftest import PKI


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_files_are_looked_at_once_a_second_at_most(pki: PKI) -> None:
    clock = Clock()
    tls = ServerTLS(TLSConfig(cert=str(pki.cert), key=str(pki.key)), clock)
    first = tls.current
    assert tls.maybe_reload() is False  # unchanged, and not yet due
    renewed = pki.ca.issue("localhost")
    replace(pki.key, renewed.key_pem())
    replace(pki.cert, renewed.cert_pem)
    clock.now += 0.5
    assert tls.maybe_reload() is False and tls.current is first
    clock.now += 0.5
    assert tls.maybe_reload() is True and tls.current is not first
    clock.now += 5
    assert tls.maybe_reload() is False  # due, but nothing changed
    assert tls.reloads == 1


def test_a_bad_pair_keeps_the_context_and_is_logged_once(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tls = ServerTLS(TLSConfig(cert=str(pki.cert), key=str(pki.key)), clock)
    first = tls.current
    replace(pki.cert, pki.ca.issue("localhost").cert_pem)
    with caplog.at_level(logging.ERROR, "ocistore.tls"):
        for _ in range(3):
            clock.now += 1
            assert tls.maybe_reload() is False
    assert tls.current is first
    errors = [r for r in caplog.records if "not reloaded" in r.getMessage()]
    assert len(errors) == 1 and "http.tls.key" in errors[0].getMessage()


def test_a_requested_reload_reads_the_files_whatever_the_interval(pki: PKI) -> None:
    clock = Clock()
    tls = ServerTLS(TLSConfig(cert=str(pki.cert), key=str(pki.key)), clock)
    first = tls.current
    tls.request_reload()
    assert tls.maybe_reload() is True and tls.current is not first  # read again although unchanged
    assert tls.current.minimum_version.name == "TLSv1_2"
