"""Emitting the event contract's events from request handlers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ocistore.events import EventName, make_event
from ocistore.messaging import EventEmitter
from ocistore.registry import Store


def emit(request: Request, name: EventName, store: Store, repo: str, **fields: Any) -> None:
    emitter: EventEmitter = request.app.state.emitter
    emitter.emit(make_event(name, store.route, repo, **fields))
