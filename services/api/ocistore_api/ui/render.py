"""HTML from Jinja2 templates, every value escaped (autoescape on for every template).

Nothing a client or a stored document supplies is ever marked safe: repository names, tags,
digests, media types, annotations and scrub details all go through Jinja2's escaping.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.responses import Response

HERE = Path(__file__).parent
CSS = (HERE / "ui.css").read_bytes()

# No script runs, nothing is framed, forms post only here; pages say who is logged in, so no cache keeps them.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def size(n: int) -> str:
    """Exact bytes first (what the tests and `ocistore du --json` compare), then a rounded unit."""
    if abs(n) < 1024:
        return f"{n:,} B"
    value, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while abs(value) >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{n:,} B ({value:.1f} {units[0]})"


def when(t: float | None) -> str:
    if not t:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def short(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}:{hex_[:12]}…" if len(hex_) > 12 else digest


def repo_url(name: str, *parts: str, **query: str | int | None) -> str:
    """`/ui/repo/<name>[/-/<part>...][?query]`; names and tags are of safe characters, quoted anyway."""
    url = "/ui/repo/" + quote(name, safe="/") + "".join(f"/-/{quote(p, safe='')}" for p in parts)
    return url + query_string(**query)


def query_string(**query: str | int | None) -> str:
    kept = {k: str(v) for k, v in query.items() if v is not None}
    return f"?{urlencode(kept)}" if kept else ""


_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_env.filters.update(size=size, when=when, short=short)
_env.globals.update(repo_url=repo_url, query_string=query_string)


def page(template: str, status: int = 200, headers: dict[str, str] | None = None, **values: Any) -> Response:
    body = _env.get_template(template).render(**values)
    return Response(body.encode(), status_code=status, media_type="text/html; charset=utf-8",
                    headers={**HEADERS, **(headers or {})})


def css() -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600",
                                                          "X-Content-Type-Options": "nosniff"})
