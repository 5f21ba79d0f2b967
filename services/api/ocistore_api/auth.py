"""The HTTP side of `ocistore.auth`: what a route needs, and the 401/403 answers.

The decision is `Access.decide`'s; this module only turns a request into a `Need` (the
actions zot maps each method to) and a refusal into the spec's error envelope, with
`WWW-Authenticate` on a 401. Every route but `/livez` and `/readyz` goes through `guard`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from ocistore.auth import (
    ANONYMOUS,
    CREATE,
    DELETE,
    READ,
    Access,
    Decision,
    Identity,
    Need,
    Outcome,
    manifest_write_actions,
)
from ocistore.errors import ErrorCode, RegistryError
from ocistore.names import is_valid_name
from ocistore.registry import Store

from .paths import Route
from .responses import error_response
from .tls import client_certificate

log = logging.getLogger("ocistore.api.auth")


async def route_need(request: Request, access: Access, store: Store, route: Route) -> Need:
    """zot's mapping: GET and HEAD read, DELETE deletes, anything else creates; a manifest PUT
    creates or updates by whether its tags exist; a mount also reads its `from`."""
    method = request.method
    if method in ("GET", "HEAD"):
        return Need.on(route.name, READ)
    if method == "DELETE":
        return Need.on(route.name, DELETE)
    if route.kind == "manifest" and method == "PUT":
        # Only access control cares which of the two, and only it pays for reading the index.
        index = await store.index.read(route.name) if access.policies.enabled else None
        tags = index.sorted_tags() if index is not None else []
        actions = manifest_write_actions(tags, route.arg, request.query_params.getlist("tag"))
        return Need.on(route.name, *sorted(actions))
    need = Need.on(route.name, CREATE)
    source = request.query_params.get("from")
    if route.kind == "upload" and "mount" in request.query_params and source and source != route.name \
            and is_valid_name(source):
        need = need.also(source, READ)
    return need


async def guard(request: Request, need: Need) -> Response | None:
    """None when the request may go on (its identity kept on `request.state`), else the refusal."""
    access: Access | None = request.app.state.access
    if access is None or not access.enabled:
        request.state.identity = ANONYMOUS
        return None
    decision = await access.decide(request.headers.getlist("authorization"), need, client_certificate(request.scope))
    if decision.allowed:
        request.state.identity = decision.identity
        return None
    if decision.delay:
        await asyncio.sleep(decision.delay)
    log.info("%s %s refused (%s) for %s: %s", request.method, request.url.path, decision.outcome.value,
             decision.identity.user or "anonymous", decision.reason)
    return error_response(refusal(decision, access.realm))


def refusal(decision: Decision, realm: str) -> RegistryError:
    if decision.outcome is Outcome.DENY:
        return RegistryError(ErrorCode.DENIED, {"reason": decision.reason})
    if decision.challenge is not None:
        return RegistryError(ErrorCode.UNAUTHORIZED, {"reason": decision.reason},
                             headers={"WWW-Authenticate": decision.challenge})
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return RegistryError(ErrorCode.UNAUTHORIZED, {"reason": decision.reason},
                         headers={"WWW-Authenticate": f'Basic realm="{quoted}"'})


def readable(request: Request) -> Callable[[str], bool] | None:
    """What the caller may read, for the catalog and a mount without `from`; None: everything."""
    access: Access | None = request.app.state.access
    if access is None:
        return None
    identity: Identity = getattr(request.state, "identity", ANONYMOUS)
    return access.readable(identity)
