"""The FastAPI application: the Distribution API plus health endpoints.

All of `/v2/<name>/...` goes through one route and a table keyed by (endpoint, method):
repository names contain slashes, so path templates would be ambiguous, and the raw
path must be checked before anything is decoded. Every route but `/livez` and `/readyz`
asks `auth.guard` first, once the name is known to be valid and before the handler reads
anything of the repository, so a refusal never tells whether it exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp

from ocistore.auth import Access, Kind, Need
from ocistore.config import Config, MetricsConfig
from ocistore.errors import ErrorCode, RegistryError
from ocistore.logs import on_hangup
from ocistore.messaging import EventEmitter, queue_stats
from ocistore.metrics import CONTENT_TYPE_LATEST, exposition
from ocistore.registry import Registry, Store
from ocistore.scraped import dependency_families, queue_families, scrub_families
from ocistore.scrub_report import load_report, report_rows
from ocistore.storage import PathNotFound
from ocistore.usage import measure

from . import blob_routes, discovery_routes, manifest_routes, ui, upload_routes
from .auth import guard, route_need
from .failures import KeepConnection, http_exception, storage_failure, unexpected
from .paths import parse_path
from .responses import empty, error_response, json_response

log = logging.getLogger("ocistore.api")

Handler = Callable[[Request, Store, str, str], Awaitable[Response]]

_TABLE: dict[tuple[str, str], Handler] = {
    ("blob", "GET"): blob_routes.get_blob,
    ("blob", "HEAD"): blob_routes.get_blob,
    ("blob", "DELETE"): blob_routes.delete_blob,
    ("upload", "POST"): upload_routes.start_upload,
    ("upload", "GET"): upload_routes.upload_status,
    ("upload", "PATCH"): upload_routes.patch_upload,
    ("upload", "PUT"): upload_routes.finish_upload,
    ("upload", "DELETE"): upload_routes.cancel_upload,
    ("manifest", "GET"): manifest_routes.get_manifest,
    ("manifest", "HEAD"): manifest_routes.get_manifest,
    ("manifest", "PUT"): manifest_routes.put_manifest,
    ("manifest", "DELETE"): manifest_routes.delete_manifest,
    ("tags", "GET"): discovery_routes.list_tags,
    ("referrers", "GET"): discovery_routes.list_referrers,
}
_GONE = {"upload": ErrorCode.BLOB_UPLOAD_UNKNOWN, "blob": ErrorCode.BLOB_UNKNOWN,
         "manifest": ErrorCode.MANIFEST_UNKNOWN}
_METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]
_ALLOWED = {kind: ", ".join(m for k, m in _TABLE if k == kind) for kind, _ in _TABLE}
# Fixed paths with routes of their own: another method there reaches `dispatch` (its route
# takes every method), which must answer 405 for them, not 404.
_FIXED_ALLOWED = {b"/v2/": "GET, HEAD", b"/v2": "GET, HEAD", b"/v2/_catalog": "GET"}


class RegistryApp(FastAPI):
    """FastAPI with `KeepConnection` outside even Starlette's own error middleware."""

    def build_middleware_stack(self) -> ASGIApp:
        return KeepConnection(super().build_middleware_stack())


def create_app(registry: Registry, emitter: EventEmitter, metrics_config: MetricsConfig | None = None,
               access: Access | None = None) -> FastAPI:
    """The registry's routes; metrics at zot's `extensions.metrics.prometheus.path`, unless disabled.

    `access` is the config's authentication and access control; None lets every request in."""
    metrics_config = metrics_config or MetricsConfig()
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        flusher = asyncio.create_task(registry.keep_flushing_statistics())
        # Each store's repository index is built while the server already answers: a catalog
        # request waits for it, every other request goes on.
        builder = asyncio.create_task(registry.build_repository_indexes())
        yield
        builder.cancel()
        flusher.cancel()
        await registry.flush_statistics()
        await registry.close()

    app = RegistryApp(title="ocistore", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
                      exception_handlers={Exception: unexpected, HTTPException: http_exception})
    app.state.emitter = emitter
    app.state.access = access

    def reload_access(config: Config | None) -> str | None:
        """SIGHUP: the reread config's authentication and access control replace the running
        ones whole (a config that does not load them leaves those in force)."""
        if config is None:
            current: Access | None = app.state.access
            if current is not None and current.ldap is not None:
                current.ldap.reload()
                return "LDAP logins forgotten"
            return None
        fresh = Access(config.http)
        app.state.access = fresh
        # A new Access remembers no login: with LDAP, that is what an operator reloads for.
        return "authentication and access control reloaded" + ("; LDAP logins forgotten" if fresh.ldap else "")

    on_hangup(reload_access)

    async def dispatch(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        try:
            if raw.split(b"?", 1)[0] in _FIXED_ALLOWED:
                raise RegistryError(ErrorCode.METHOD_UNKNOWN, {"method": request.method},
                                    headers={"Allow": _FIXED_ALLOWED[raw.split(b"?", 1)[0]]})
            if request.method == "POST" and raw.endswith(b"/blobs/uploads"):
                raw += b"/"
            route = parse_path(raw.decode("latin-1"))
            handler = _TABLE.get((route.kind, request.method))
            if handler is None:
                raise RegistryError(ErrorCode.METHOD_UNKNOWN, {"method": request.method},
                                    headers={"Allow": _ALLOWED[route.kind]})
            store = registry.store_for(route.name)
            try:
                if access is not None:
                    refused = await guard(request, await route_need(request, access, store, route))
                    if refused is not None:
                        return refused
                return await handler(request, store, route.name, route.arg)
            except PathNotFound:
                # Something went away under us (a concurrent cancel, GC of a stale session).
                raise RegistryError(_GONE.get(route.kind, ErrorCode.NAME_UNKNOWN), {"name": route.name}) from None
            except OSError as exc:
                full = storage_failure(exc, store.route)
                if full is None:
                    raise
                raise full from None
        except RegistryError as exc:
            return error_response(exc)
        except ClientDisconnect:
            log.info("client went away during %s %s", request.method, request.url.path)
            return empty(400)

    async def base(request: Request) -> Response:
        return await guard(request, Need(Kind.PROBE)) or json_response({})

    async def catalog(request: Request) -> Response:
        if (refused := await guard(request, Need(Kind.CATALOG))) is not None:
            return refused
        try:
            return await discovery_routes.list_catalog(request, registry)
        except RegistryError as exc:
            return error_response(exc)

    async def livez(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def dependencies() -> dict[str, bool]:
        """Whether each shared dependency answers: every store's storage, and Redis if configured."""
        found = {f"storage:{store.route or '/'}": await _storage_ok(store) for store in registry.stores.values()}
        redis_ok = await asyncio.to_thread(emitter.redis_ok)
        if redis_ok is not None:
            found["redis"] = redis_ok
        return found

    async def readyz(request: Request) -> Response:
        """200 whenever this replica can answer: what it depends on is shared by every replica, so
        a dependency down would take them all out of the load balancer at once.  It is reported in
        the body (and in `ocistore_dependency_up`), for monitoring to page on."""
        found = await dependencies()
        return json_response({"status": "ok" if all(found.values()) else "degraded", "dependencies": found})

    async def metrics(request: Request) -> Response:
        if (refused := await guard(request, Need(Kind.METRICS))) is not None:
            return refused
        reports = {store.route or "/": await load_report(store) for store in registry.stores.values()}
        try:
            queues = queue_families(await asyncio.to_thread(queue_stats, emitter.broker))
        except Exception as exc:  # Redis down: ocistore_dependency_up says so; the rest is still served
            log.debug("queue depths not read: %s", exc)
            queues = []
        scraped = [*dependency_families(await dependencies()), *scrub_families(reports), *queues]
        return Response(exposition(scraped), media_type=CONTENT_TYPE_LATEST)

    async def usage(request: Request) -> Response:
        """Logical and physical bytes per store and repository (one walk of each store)."""
        if (refused := await guard(request, Need(Kind.ADMIN))) is not None:
            return refused
        return json_response({store.route or "/": (await measure(store)).as_dict()
                              for store in registry.stores.values()})

    async def scrub_report(request: Request) -> Response:
        if (refused := await guard(request, Need(Kind.ADMIN))) is not None:
            return refused
        reports = {store.route or "/": await load_report(store) for store in registry.stores.values()}
        return json_response({
            route: {"passes": r.passes, "last_pass_end": r.last_pass_end, "findings": report_rows(r)}
            for route, r in reports.items()
        })

    app.add_route("/v2/", base, methods=["GET", "HEAD"])
    app.add_route("/v2", base, methods=["GET", "HEAD"])
    app.add_route("/v2/_catalog", catalog, methods=["GET"])
    app.add_route("/v2/{rest:path}", dispatch, methods=_METHODS)
    app.add_route("/livez", livez, methods=["GET"])
    app.add_route("/readyz", readyz, methods=["GET"])
    if metrics_config.enable:
        app.add_route(metrics_config.prometheus.path, metrics, methods=["GET"])
    app.add_route("/scrub/report", scrub_report, methods=["GET"])
    app.add_route("/storage/usage", usage, methods=["GET"])
    ui.register(app, registry, emitter)  # the operators' web page at /ui/ (and / sends a browser there)
    return app


async def _storage_ok(store: Store) -> bool:
    try:
        await store.driver.list("")
    except Exception:
        log.exception("storage of %s is not reachable", store.route or "/")
        return False
    return True
