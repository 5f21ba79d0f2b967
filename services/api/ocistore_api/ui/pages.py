"""The operators' web page: server-rendered views over the registry, and one action (delete).

Every view asks the API's one decision (`auth.guard`) before it reads anything: the
repository list is the catalog's (`Kind.CATALOG`, then only what `readable` admits), a
repository's page needs `read` on it, storage and maintenance views `Kind.ADMIN`, and a
delete `delete` on the repository, exactly as `DELETE /v2/<name>/manifests/<ref>` does,
through the same handler. Nothing here is cached: each view reads the store when it is asked
for, and the views that walk a whole repository or store (usage, the GC dry run) are pages of
their own that only an admin's explicit click opens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ocistore import gc_history
from ocistore.auth import DELETE, READ, Kind, Need
from ocistore.digests import Digest
from ocistore.errors import ErrorCode, RegistryError
from ocistore.gc import collect_repository
from ocistore.gc_report import GCReport
from ocistore.jsondoc import DocumentError, loads
from ocistore.mediatypes import INDEXES
from ocistore.messaging import EventEmitter, QueueStat, queue_stats
from ocistore.names import is_valid_name, is_valid_tag
from ocistore.registry import Registry, Store
from ocistore.registry.catalog import catalog_page, list_layouts
from ocistore.registry.index import ImageIndex, tag_of
from ocistore.registry.manifests import MAX_MANIFEST_BYTES, manifest_info
from ocistore.registry.tags import paginate
from ocistore.scrub_report import load_report, report_rows
from ocistore.statistics import RepoStatistics
from ocistore.usage import Usage, measure

from .. import manifest_routes
from ..auth import guard, readable
from ..body import read_limited
from .csrf import Tokens
from .render import css, page, repo_url

log = logging.getLogger("ocistore.api.ui")

PAGE_SIZE = 50
MAX_PAGE = 1000
TAGS_PER_PAGE = 100
UNTAGGED_SHOWN = 200
TOP_REPOSITORIES = 100  # rows of the per-repository tables on the store-wide views
_FORM_LIMIT = 8192
# An image's config type is what `artifactType` falls back to; shown only when it says more.
_IMAGE_CONFIGS = frozenset({"application/vnd.oci.image.config.v1+json",
                            "application/vnd.docker.container.image.v1+json"})


@dataclass
class Viewer:
    """Who is looking, and which links to show them (each the same decision the view will ask)."""

    user: str | None
    admin: bool


@dataclass
class ManifestRow:
    digest: str
    media_type: str
    size: int
    tags: list[str] = field(default_factory=list)
    artifact_type: str | None = None
    subject: str | None = None
    platforms: list[str] = field(default_factory=list)
    referrers: list[dict[str, str]] = field(default_factory=list)
    pushed: float | None = None
    pulled: float | None = None


class UI:
    def __init__(self, registry: Registry, emitter: EventEmitter) -> None:
        self.registry = registry
        self.emitter = emitter
        self.tokens = Tokens(registry.default)

    # -- the decision, and what it shows ----------------------------------------------------

    async def _admit(self, request: Request, need: Need) -> Response | None:
        """None when the request may go on; else the API's refusal (401 with its challenge, so a
        browser asks for a login, or 403), as a page."""
        refused = await guard(request, need)
        if refused is None:
            return None
        headers = {k: v for k, v in refused.headers.items() if k.lower() == "www-authenticate"}
        status = refused.status_code
        return page("message.html", status, headers, viewer=None, title="Not allowed" if status == 403 else
                    "Login required", text="You may not see this page." if status == 403 else
                    "This page needs a login.")

    async def _may(self, request: Request, need: Need) -> bool:
        """Whether the caller, already let in, would be allowed `need`: to show a link or not."""
        access = request.app.state.access
        if access is None or not access.enabled:
            return True
        return bool((await access.decide(request.headers.getlist("authorization"), need)).allowed)

    async def _viewer(self, request: Request) -> Viewer:
        identity = getattr(request.state, "identity", None)
        return Viewer(getattr(identity, "user", None), await self._may(request, Need(Kind.ADMIN)))

    async def _error(self, request: Request, exc: RegistryError) -> Response:
        return page("message.html", exc.status, viewer=await self._viewer(request), title=exc.code.message,
                    text=f"{exc.message}" + (f": {exc.detail}" if exc.detail else ""))

    # -- routes ---------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=302)

    async def repositories(self, request: Request) -> Response:
        if (refused := await self._admit(request, Need(Kind.CATALOG))) is not None:
            return refused
        viewer = await self._viewer(request)
        n = _number(request.query_params.get("n"), PAGE_SIZE, MAX_PAGE)
        last = request.query_params.get("last") or None
        if last is not None and len(last) > 255:
            last = last[:255]
        started = time.perf_counter()
        names, more = await catalog_page(self.registry, last, n, readable(request))
        rows = []
        for name in names:
            idx = await _index_or_none(self.registry.store_for(name), name)
            rows.append({"name": name, "tags": len(idx.sorted_tags()) if idx else 0,
                         "manifests": len({d["digest"] for d in idx.manifests}) if idx else 0})
        return page("repositories.html", viewer=viewer, rows=rows, n=n, last=last,
                    next_last=names[-1] if more and names else None, seconds=time.perf_counter() - started)

    async def css(self, request: Request) -> Response:
        return css()

    async def repository_route(self, request: Request) -> Response:
        """`/ui/repo/<name>`, and `/ui/repo/<name>/-/<view>` (no name component can be `-`)."""
        rest = request.path_params["rest"]
        name, _, view = rest.partition("/-/")
        if not is_valid_name(name):
            return page("message.html", 404, viewer=None, title="No such page", text="Not a repository name.")
        try:
            if view == "" and request.method == "GET":
                return await self.repository(request, name)
            if view == "storage" and request.method == "GET":
                return await self.repository_storage(request, name)
            if view == "delete" and request.method == "GET":
                return await self.confirm_delete(request, name)
            if view == "delete" and request.method == "POST":
                return await self.delete(request, name)
        except RegistryError as exc:
            return await self._error(request, exc)
        return page("message.html", 404, viewer=None, title="No such page", text="No such view.")

    async def repository(self, request: Request, name: str) -> Response:
        if (refused := await self._admit(request, Need.on(name, READ))) is not None:
            return refused
        viewer = await self._viewer(request)
        store = self.registry.store_for(name)
        idx = await store.index.require(name)
        stats = await store.statistics.load(name)
        may_delete = await self._may(request, Need.on(name, DELETE))
        tags = idx.sorted_tags()
        tags_last = request.query_params.get("tags_last") or None
        shown, more = paginate(tags, TAGS_PER_PAGE, tags_last)
        rows = await _manifest_rows(store, name, idx, stats)
        tag_rows = [(t, rows[idx.by_tag[t]["digest"]]) for t in shown if idx.by_tag[t]["digest"] in rows]
        untagged = sorted((r for r in rows.values() if not r.tags), key=lambda r: r.digest)
        await _platforms(store, name, [r for _, r in tag_rows] + untagged[:UNTAGGED_SHOWN])
        tagged = list({id(r): r for _, r in tag_rows}.values())
        return page("repository.html", viewer=viewer, name=name, tag_rows=tag_rows, tagged=tagged, tags_total=len(tags),
                    tags_next=shown[-1] if more and shown else None, untagged=untagged[:UNTAGGED_SHOWN],
                    untagged_total=len(untagged), may_delete=may_delete,
                    deleted=request.query_params.get("deleted"))

    async def repository_storage(self, request: Request, name: str) -> Response:
        if (refused := await self._admit(request, Need(Kind.ADMIN))) is not None:
            return refused
        viewer = await self._viewer(request)
        store = self.registry.store_for(name)
        await store.index.require(name)
        started = time.perf_counter()
        usage = (await measure(store, name)).repositories.get(name, Usage())
        gc = await collect_repository(store, name, dry_run=True) if store.config.gc else None
        return page("repository_storage.html", viewer=viewer, name=name, usage=usage, gc=gc,
                    gc_delay=store.config.gc_delay, seconds=time.perf_counter() - started, now=time.time())

    async def storage(self, request: Request) -> Response:
        if (refused := await self._admit(request, Need(Kind.ADMIN))) is not None:
            return refused
        viewer = await self._viewer(request)
        started = time.perf_counter()
        stores = [await _store_figures(store) for store in self.registry.stores.values()]
        return page("storage.html", viewer=viewer, stores=stores, seconds=time.perf_counter() - started,
                    now=time.time(), top=TOP_REPOSITORIES)

    async def maintenance(self, request: Request) -> Response:
        if (refused := await self._admit(request, Need(Kind.ADMIN))) is not None:
            return refused
        viewer = await self._viewer(request)
        stores = []
        for store in self.registry.stores.values():
            report = await load_report(store)
            history = list(reversed(await gc_history.load(store)))
            stores.append({"route": store.route or "/", "gc": store.config.gc, "gc_delay": store.config.gc_delay,
                           "history": history, "scrub": report, "findings": report_rows(report)})
        single = self.emitter.redis_ok() is None
        queues: list[QueueStat] = []
        queue_error = None
        try:
            queues = await asyncio.to_thread(queue_stats, self.emitter.broker)
        except Exception as exc:  # Redis down: say so, the rest of the page stands
            queue_error = f"{type(exc).__name__}: {exc}"
        return page("maintenance.html", viewer=viewer, stores=stores, single=single, queues=queues,
                    queue_error=queue_error, now=time.time())

    # -- delete: a confirmation page, then a POST carrying its token ----------------------

    def _reference(self, ref: str | None) -> str:
        if ref and (is_valid_tag(ref) or _is_digest(ref)):
            return ref
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"reference": (ref or "")[:140]},
                            message="not a tag or a digest")

    async def confirm_delete(self, request: Request, name: str) -> Response:
        if (refused := await self._admit(request, Need.on(name, DELETE))) is not None:
            return refused
        viewer = await self._viewer(request)
        ref = self._reference(request.query_params.get("ref"))
        store = self.registry.store_for(name)
        idx = await store.index.require(name)
        if ":" in ref:
            if ref not in idx.by_digest:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"digest": ref})
            digest, tags = ref, sorted(t for d in idx.manifests if d["digest"] == ref and (t := tag_of(d)))
        else:
            if ref not in idx.by_tag:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"tag": ref})
            digest, tags = idx.by_tag[ref]["digest"], [ref]
        token = await self.tokens.issue(request, "delete", name, ref)
        return page("confirm.html", viewer=viewer, name=name, ref=ref, digest=digest, tags=tags,
                    is_tag=":" not in ref, token=token, action=repo_url(name, "delete"))

    async def delete(self, request: Request, name: str) -> Response:
        if (refused := await self._admit(request, Need.on(name, DELETE))) is not None:
            return refused
        too_large = RegistryError(ErrorCode.SIZE_INVALID, {"limit": _FORM_LIMIT}, message="form too large")
        form = parse_qs((await read_limited(request, _FORM_LIMIT, too_large)).decode("utf-8", "replace"))
        ref = self._reference(_one(form, "ref"))
        cross_site = request.headers.get("sec-fetch-site") == "cross-site"
        if cross_site or not await self.tokens.check(request, _one(form, "token"), "delete", name, ref):
            log.info("ui: delete of %s:%s refused: %s", name, ref,
                     "a cross-site request" if cross_site else "no valid confirmation token")
            return page("message.html", 403, viewer=await self._viewer(request), title="Not confirmed",
                        text="This delete did not come from this registry's confirmation page (its token is "
                             "missing, expired or for other credentials). Nothing was deleted.")
        store = self.registry.store_for(name)
        # The API's own DELETE handler: the same checks, the same events, the same answer.
        await manifest_routes.delete_manifest(request, store, name, ref)
        log.info("ui: %s deleted %s:%s", getattr(request.state.identity, "user", None) or "anonymous", name, ref)
        return RedirectResponse(repo_url(name, deleted=ref), status_code=303)


# -- reading helpers --------------------------------------------------------------------


def _number(text: str | None, default: int, most: int) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 6:
        return default
    return max(1, min(int(text), most))


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values and len(values) == 1 else None


def _is_digest(ref: str) -> bool:
    try:
        Digest.parse(ref)
    except RegistryError:
        return False
    return True


async def _index_or_none(store: Store, name: str) -> ImageIndex | None:
    try:
        return await store.index.read(name)
    except RegistryError:
        return None  # a corrupt index.json: listed, and its own page says why


async def _manifest_rows(store: Store, name: str, idx: ImageIndex, stats: RepoStatistics) -> dict[str, ManifestRow]:
    """One row per digest the index lists, with its tags, what it is, and what refers to it.

    Referrers are found as the referrers API finds them: every listed manifest's `subject`,
    read from the memo of manifests' facts (a first view of a repository reads each manifest once)."""
    rows: dict[str, ManifestRow] = {}
    for desc in idx.manifests:
        digest = desc["digest"]
        row = rows.get(digest)
        if row is None:
            media_type = desc.get("mediaType")
            row = rows[digest] = ManifestRow(digest, media_type if isinstance(media_type, str) else "",
                                             int(desc.get("size") or 0))
            try:
                info = await manifest_info(store, name, Digest.parse(digest))
            except RegistryError:
                info = None
            if info is not None:
                row.media_type = row.media_type or info.media_type
                row.artifact_type = info.artifact_type if info.artifact_type not in _IMAGE_CONFIGS else None
                row.subject = info.subject
            times = stats.of_digest(digest)
            if times is not None:
                row.pushed, row.pulled = times.pushed, times.pulled
        if (tag := tag_of(desc)) is not None and is_valid_tag(tag):
            row.tags.append(tag)
    for row in rows.values():
        if row.subject and row.subject in rows:
            rows[row.subject].referrers.append({"digest": row.digest, "artifact_type": row.artifact_type or "",
                                                "media_type": row.media_type})
    for row in rows.values():
        row.tags.sort()
        row.referrers.sort(key=lambda r: (r["artifact_type"], r["digest"]))
        for tag in row.tags:  # a tag's own push time, where it is later than its manifest's
            times = stats.of_tag(tag, row.digest)
            if times is not None and times.pushed and (row.pushed is None or times.pushed > row.pushed):
                row.pushed = times.pushed
    return rows


async def _platforms(store: Store, name: str, rows: list[ManifestRow]) -> None:
    """The platforms an index names, for the rows shown (one small read per index)."""
    for row in rows:
        if row.media_type not in INDEXES or row.platforms:
            continue
        try:
            body = await store.blobs.read_small(name, Digest.parse(row.digest), MAX_MANIFEST_BYTES)
            doc = loads(body, max_bytes=MAX_MANIFEST_BYTES) if body is not None else None
        except (RegistryError, DocumentError, OSError):
            continue
        children = doc.get("manifests") if isinstance(doc, dict) else None
        for child in children if isinstance(children, list) else []:
            platform = child.get("platform") if isinstance(child, dict) else None
            if isinstance(platform, dict):
                row.platforms.append("/".join(str(platform[k]) for k in ("os", "architecture", "variant")
                                              if isinstance(platform.get(k), str) and platform[k]))
            elif isinstance(child, dict) and isinstance(child.get("artifactType"), str):
                row.platforms.append(f"artifact {child['artifactType']}")


async def _store_figures(store: Store) -> dict[str, Any]:
    """One store's usage (one walk of its blobs) and what GC would reclaim now (a dry run of
    every layout): the whole store is read, every time this view is asked for."""
    usage = await measure(store)
    reports: list[GCReport] = []
    if store.config.gc:
        for name in await list_layouts(store):
            reports.append(await collect_repository(store, name, dry_run=True))
    gc = {"bytes_freed": sum(r.bytes_freed for r in reports),
          "physical_bytes_freed": sum(r.physical_bytes_freed for r in reports),
          "held_back_bytes": sum(r.held_back_bytes for r in reports),
          "manifests": sum(len(r.manifests) for r in reports), "blobs": sum(len(r.blobs) for r in reports),
          "uploads": sum(len(r.uploads) for r in reports),
          "errors": [r for r in reports if r.error or r.unreadable]}
    reclaim = sorted((r for r in reports if r.bytes_freed or r.held_back_bytes),
                     key=lambda r: (-r.physical_bytes_freed, -r.bytes_freed, r.repo))
    biggest = sorted(usage.repositories.items(), key=lambda item: (-item[1].physical, item[0]))
    return {"route": store.route or "/", "usage": usage.total, "repositories": len(usage.repositories),
            "biggest": biggest[:TOP_REPOSITORIES], "gc_on": store.config.gc, "gc_delay": store.config.gc_delay,
            "gc": gc, "reclaim": reclaim[:TOP_REPOSITORIES], "reclaim_total": len(reclaim)}
