"""`ocistore-api CONFIG`: one stateless API replica of the scaled topology."""

from __future__ import annotations

from ocistore.auth import Access
from ocistore.commandline import EXIT_USAGE, command_parser, load_config_or_exit
from ocistore.config import ConfigError
from ocistore.logs import handle_signals, setup_logging
from ocistore.messaging import EventEmitter, setup_broker
from ocistore.registry import Registry

from . import server
from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(
        "ocistore-api",
        "Serve the Distribution API as one replica of the scaled topology: events go to the workers through "
        "Redis. For a single process with everything inside, use `ocistore serve`.",
    )
    parser.add_argument("config", help="zot-format config file; needs a redis URL (or OCISTORE_REDIS_URL)")
    parser.add_argument("--port", type=int, help="listen on this port instead of the config's")
    args = parser.parse_args(argv)
    config = load_config_or_exit(args.config, parser.prog)
    if not config.redis_url:
        parser.error("the config has no redis URL; use `ocistore serve` for one process")
    if args.port is not None:
        config = config.with_port(args.port)
    setup_logging(config)
    handle_signals(args.config)
    try:
        access = Access(config.http)
    except ConfigError as exc:
        parser.exit(EXIT_USAGE, f"{parser.prog}: {exc}\n")
    broker = setup_broker(config.redis_url)
    emitter = EventEmitter(broker, config.redis_url)
    registry = Registry.from_config(config)
    try:
        server.run(create_app(registry, emitter, config.metrics, access), config)
    finally:
        emitter.close()
