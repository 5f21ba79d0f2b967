"""`ocistore-scrub-worker CONFIG`: a process of the scrub pool of the scaled topology."""

from __future__ import annotations

from ocistore.commandline import add_rate_argument, command_parser, load_config_or_exit
from ocistore.events import Queue
from ocistore.logs import handle_signals, setup_logging
from ocistore.messaging import setup_broker
from ocistore.metrics import serve_metrics
from ocistore.workers import run_until_signalled, start_worker

from . import DEFAULT_RATE


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("ocistore-scrub-worker", "Run scrub passes from the scrub queue.")
    parser.add_argument("config", help="zot-format config file with a redis URL")
    add_rate_argument(parser, DEFAULT_RATE, ", so scrub never starves the API")
    parser.add_argument("--metrics-port", type=int,
                        help="serve this worker's Prometheus series on this port (none by default)")
    args = parser.parse_args(argv)
    config = load_config_or_exit(args.config, parser.prog)
    setup_logging(config)
    handle_signals(args.config)
    if args.metrics_port is not None:
        serve_metrics(args.metrics_port)
    broker = setup_broker(config.redis_url)
    from . import actors

    actors.configure(config, args.rate)
    worker = start_worker(broker, [Queue.SCRUB.value], threads=1)
    ticker = actors.pass_ticker(config, broker)
    run_until_signalled(worker, [ticker] if ticker else [])
