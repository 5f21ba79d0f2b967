"""`ocistore-gc-worker CONFIG`: a process of the gc pool of the scaled topology."""

from __future__ import annotations

from ocistore.commandline import command_parser, load_config_or_exit
from ocistore.events import Queue
from ocistore.logs import handle_signals, setup_logging
from ocistore.messaging import setup_broker
from ocistore.metrics import serve_metrics
from ocistore.workers import run_until_signalled, start_worker


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("ocistore-gc-worker", "Run garbage collection (queue gc) and dedupe jobs (queue dedupe).")
    parser.add_argument("config", help="zot-format config file with a redis URL")
    parser.add_argument("--threads", type=int, default=2, help="concurrent jobs (default 2)")
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

    actors.configure(config, broker)
    actors.schedule_reconcile(config, broker)
    worker = start_worker(broker, [Queue.GC.value, Queue.DEDUPE.value], args.threads)
    run_until_signalled(worker, actors.sweep_tickers(config, broker))
