"""The operators' web page, served by the API at `/ui/` (see pages.py)."""

from __future__ import annotations

from starlette.applications import Starlette

from ocistore.messaging import EventEmitter
from ocistore.registry import Registry

from .pages import UI

__all__ = ["register"]


def register(app: Starlette, registry: Registry, emitter: EventEmitter) -> None:
    """`/` sends a browser to `/ui/`; the page's routes, each behind the API's own decision."""
    ui = UI(registry, emitter)
    app.add_route("/", ui.root, methods=["GET"])
    app.add_route("/ui", ui.root, methods=["GET"])
    app.add_route("/ui/", ui.repositories, methods=["GET"])
    app.add_route("/ui/ui.css", ui.css, methods=["GET"])
    app.add_route("/ui/storage", ui.storage, methods=["GET"])
    app.add_route("/ui/maintenance", ui.maintenance, methods=["GET"])
    app.add_route("/ui/repo/{rest:path}", ui.repository_route, methods=["GET", "POST"])
