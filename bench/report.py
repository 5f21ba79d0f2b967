"""Turning samples into figures: rates, CPU cost, ratio against the target, table and JSON.

A figure's value is the median rate over its repeats (robust to one noisy run on a 2-core box);
its CPU cost is total server CPU over total work, which is steadier than a median of small numbers.
On S3 the storage service's (moto's) CPU while serving each registry is charged the same way, and
the S3 requests each server sent are reported per operation (or per MB for bulk figures), by action.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from workloads import Sample

PEER, OCISTORE = "peer", "ocistore"


@dataclass(frozen=True)
class Figure:
    """What a figure measures and the ratio ocistore/peer it is expected to reach."""

    title: str
    unit: str
    bulk: bool

    @property
    def target(self) -> float:
        """Bulk transfer must at least match the peer; small operations must be twice as fast."""
        return 1.0 if self.bulk else 2.0

    @property
    def cpu_unit(self) -> str:
        """Server CPU is charged per GB moved, or per 1,000 operations."""
        return "s/GB" if self.bulk else "s/1k ops"


FIGURES = {
    "blob_push_monolithic": Figure("blob push, monolithic (POST+PUT)", "MB/s", bulk=True),
    "blob_push_chunked": Figure("blob push, chunked (PATCH+PUT)", "MB/s", bulk=True),
    "blob_pull": Figure("blob pull, sha256 verified", "MB/s", bulk=True),
    "small_blob_push": Figure("4 KiB blob push (POST+PUT), c=16", "ops/s", bulk=False),
    "manifest_put": Figure("manifest PUT by new tag, c=16", "ops/s", bulk=False),
    "manifest_get": Figure("manifest GET by tag, c=16", "ops/s", bulk=False),
    "blob_head": Figure("blob HEAD, c=16", "ops/s", bulk=False),
    "tags_list_full": Figure("tags list, whole", "lists/s", bulk=False),
    "tags_list_paged": Figure("tags list, paged via Link", "lists/s", bulk=False),
    "catalog": Figure("catalog of 500, n=1000 via Link", "walks/s", bulk=False),
    "catalog_paged": Figure("catalog of 500, n=100 via Link", "walks/s", bulk=False),
    "catalog_large": Figure("catalog of 10,500, n=1000 via Link", "walks/s", bulk=False),
    "catalog_large_paged": Figure("catalog of 10,500, n=100 via Link", "walks/s", bulk=False),
}


@dataclass(frozen=True)
class Measured:
    """One server's result for one figure."""

    value: float
    cpu: float
    client_cpu: float
    storage_cpu: float | None
    # S3 requests per operation (per MB for bulk figures), by action; None where not counted.
    requests: dict[str, float] | None
    samples: list[Sample]

    @classmethod
    def of(cls, figure: Figure, samples: list[Sample]) -> Measured:
        """Aggregate the repeats of one figure on one server."""
        scale = 1e6 if figure.bulk else 1.0
        per_cpu = 1e9 if figure.bulk else 1e3
        units = sum(s.units for s in samples)
        storage = [s.storage_cpu for s in samples if s.storage_cpu is not None]
        return cls(
            value=statistics.median(s.units / s.seconds / scale for s in samples),
            cpu=sum(s.server_cpu for s in samples) / units * per_cpu,
            client_cpu=sum(s.client_cpu for s in samples) / units * per_cpu,
            storage_cpu=sum(storage) / units * per_cpu if len(storage) == len(samples) else None,
            requests=_requests_per_unit(samples, units / scale),
            samples=samples,
        )


def _requests_per_unit(samples: list[Sample], units: float) -> dict[str, float] | None:
    """Requests by action over all repeats, divided by the work done; None unless every repeat counted."""
    if any(s.requests is None for s in samples):
        return None
    total: dict[str, int] = {}
    for sample in samples:
        for action, n in (sample.requests or {}).items():
            total[action] = total.get(action, 0) + n
    return {action: n / units for action, n in sorted(total.items())}


def aggregate(samples: dict[str, list[Sample]]) -> dict[str, dict[str, Measured]]:
    """Figure key -> server name -> result, in `FIGURES` order, for the figures that were measured."""
    table: dict[str, dict[str, Measured]] = {}
    for key, figure in FIGURES.items():
        per_server = {name: [s for s in taken if s.figure == key] for name, taken in samples.items()}
        table[key] = {name: Measured.of(figure, got) for name, got in per_server.items() if got}
    return {key: row for key, row in table.items() if row}


def ratio(row: dict[str, Measured]) -> float | None:
    """ocistore's value over the peer's, when both were measured."""
    if PEER in row and OCISTORE in row and row[PEER].value > 0:
        return row[OCISTORE].value / row[PEER].value
    return None


def render(table: dict[str, dict[str, Measured]]) -> str:
    """The human-readable table: values, ratio with its target and verdict, server CPU cost, and
    the storage service's CPU cost while serving each server when it was metered (S3)."""
    metered = any(m.storage_cpu is not None for row in table.values() for m in row.values())
    head = (f"{'figure':36} {'unit':7} {'peer':>9} {'ocistore':>9} {'ratio':>7} {'target':>8}  "
            f"{'peer cpu':>9} {'ocistore cpu':>12} " + (f"{'peer moto':>9} {'oci moto':>9} " if metered else "")
            + f"{'':8}")
    lines = [head, "-" * len(head)]
    for key, row in table.items():
        figure = FIGURES[key]
        r = ratio(row)
        verdict = "" if r is None else ("ok" if r >= figure.target else "MISS")
        storage = (f"{_num(row, PEER, 'storage_cpu'):>9} {_num(row, OCISTORE, 'storage_cpu'):>9} "
                   if metered else "")
        lines.append(
            f"{figure.title:36} {figure.unit:7} {_num(row, PEER, 'value'):>9} "
            f"{_num(row, OCISTORE, 'value'):>9} {'-' if r is None else f'{r:.2f}x':>7} "
            f"{f'>={figure.target:.1f}x':>8} {verdict:4} {_num(row, PEER, 'cpu'):>9} "
            f"{_num(row, OCISTORE, 'cpu'):>12} {storage}{figure.cpu_unit}"
        )
    if metered:
        lines.append("(moto: the S3 server's own CPU while serving that registry, in the same units)")
    return "\n".join(lines + _render_requests(table))


def _render_requests(table: dict[str, dict[str, Measured]]) -> list[str]:
    """Storage requests per operation (per MB for bulk figures) of each server, total then by action."""
    rows = [(key, name, m.requests) for key, row in table.items() for name, m in row.items()
            if m.requests is not None]
    if not rows:
        return []
    lines = ["", "S3 requests per operation (bulk figures: per MB), by action:"]
    for key, name, requests in rows:
        by_action = "  ".join(f"{action} {n:.3g}" for action, n in (requests or {}).items())
        lines.append(f"  {FIGURES[key].title:36} {name:8} {sum((requests or {}).values()):7.3g}  {by_action}")
    return lines


def as_json(table: dict[str, dict[str, Measured]]) -> dict[str, Any]:
    """The figures as plain data for results/latest.json, raw samples included."""
    out: dict[str, Any] = {}
    for key, row in table.items():
        figure = FIGURES[key]
        out[key] = {
            "title": figure.title, "unit": figure.unit, "cpu_unit": figure.cpu_unit,
            "target_ratio": figure.target, "ratio": ratio(row),
            "servers": {name: _measured_json(m) for name, m in row.items()},
        }
    return out


def _measured_json(m: Measured) -> dict[str, Any]:
    """One server's aggregate and raw samples."""
    return {
        "value": m.value, "server_cpu": m.cpu, "client_cpu": m.client_cpu, "storage_cpu": m.storage_cpu,
        "requests_per_unit": m.requests,
        "samples": [{"seconds": s.seconds, "units": s.units, "server_cpu": s.server_cpu,
                     "client_cpu": s.client_cpu, "storage_cpu": s.storage_cpu, "requests": s.requests}
                    for s in m.samples],
    }


def _num(row: dict[str, Measured], server: str, attr: str) -> str:
    """A table cell: the attribute with precision that suits its size, or '-' if not measured."""
    value: float | None = getattr(row[server], attr) if server in row else None
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"
