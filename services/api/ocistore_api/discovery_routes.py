"""Tags list, catalog and referrers, with the spec's `n`/`last` pagination."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from ocistore.digests import Digest
from ocistore.errors import ErrorCode, RegistryError
from ocistore.mediatypes import OCI_INDEX
from ocistore.registry import Registry, Store, catalog, referrers, tags
from ocistore.wire import wire_int

from .auth import readable
from .responses import json_response

MAX_PAGE = 10000


def _page_params(request: Request) -> tuple[int | None, str | None]:
    n_text = request.query_params.get("n")
    n = None
    if n_text is not None and n_text != "":
        value = wire_int(n_text)
        if value is None:
            raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, {"n": n_text[:40]},
                                message="n must be at most 19 ASCII digits")
        n = min(value, MAX_PAGE)
    return n, request.query_params.get("last") or None


def _paged(request: Request, items: list[str], base: str, key: str, extra: dict[str, object]) -> Response:
    n, last = _page_params(request)
    page, more = tags.paginate(items, n, last)
    return _answer(base, key, extra, page, more, n)


def _answer(base: str, key: str, extra: dict[str, object], page: list[str], more: bool, n: int | None) -> Response:
    """A page, with the `Link` to the next when more follow."""
    headers = {}
    if more and page:
        headers["Link"] = f'<{base}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
    return json_response({**extra, key: page}, headers=headers)


async def list_tags(request: Request, store: Store, name: str, _: str) -> Response:
    items = await tags.list_tags(store, name)
    return _paged(request, items, f"/v2/{name}/tags/list", "tags", {"name": name})


async def list_catalog(request: Request, registry: Registry) -> Response:
    """Only the repositories the caller may read, a page read from the repository index."""
    n, last = _page_params(request)
    names, more = await catalog.catalog_page(registry, last, n, readable(request))
    return _answer("/v2/_catalog", "repositories", {}, names, more, n)


async def list_referrers(request: Request, store: Store, name: str, ref: str) -> Response:
    subject = Digest.parse(ref)
    artifact_type = request.query_params.get("artifactType") or None
    index = await referrers.referrers(store, name, subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return json_response(index, headers=headers, media_type=OCI_INDEX)
