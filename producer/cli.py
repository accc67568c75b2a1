"""`python -m producer`: send clickstream events to Kafka from the command line.

    python -m producer --rate 2000 --duration 60
    python -m producer --rate 0 --count 200000      # as fast as the broker takes them

Without --count or --duration it runs until SIGTERM/SIGINT, which stop it
cleanly: what was handed to the client is flushed and it exits 0. Defaults
come from lakehouse.settings (PRODUCER_*, KAFKA_*).
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from datetime import datetime, timezone

import typer

from lakehouse.settings import get_settings
from producer.generator import EventGenerator, GeneratorConfig
from producer.sender import DEFAULT_PRODUCER_CONFIG, ProduceStats, produce

app = typer.Typer(add_completion=False, help=__doc__)


def _iso(value: str | None) -> datetime:
    if not value:
        return datetime.now(timezone.utc)
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class _Reporter:
    """A progress bar on a terminal; a periodic plain line in a log file."""

    def __init__(self, total: int | None, tty: bool) -> None:
        self.last = (time.monotonic(), 0)
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="msg", unit_scale=True, smoothing=0.1)

    def __call__(self, stats: ProduceStats) -> None:
        now, sent = time.monotonic(), stats.sent
        t_prev, sent_prev = self.last
        self.last = (now, sent)
        if self.bar is not None:
            self.bar.update(sent - self.bar.n)
            return
        recent = (sent - sent_prev) / max(now - t_prev, 1e-9)
        print(
            f"producer sent={sent} failed={stats.failed} rate={recent:.0f}/s "
            f"avg={stats.rate:.0f}/s elapsed={stats.elapsed_s:.0f}s",
            flush=True,
        )

    def close(self, stats: ProduceStats) -> None:
        if self.bar is not None:
            self.bar.update(stats.sent - self.bar.n)
            self.bar.close()


@app.command()
def main(
    rate: float = typer.Option(None, help="Events per second; 0 = as fast as possible. Default PRODUCER_RATE."),
    count: int = typer.Option(None, help="Stop after this many messages."),
    duration: float = typer.Option(None, help="Stop after this many seconds."),
    seed: int = typer.Option(None, help="Generator seed. Default PRODUCER_SEED."),
    duplicate_fraction: float = typer.Option(None, help="Default PRODUCER_DUPLICATE_FRACTION."),
    late_fraction: float = typer.Option(None, help="Default PRODUCER_LATE_FRACTION."),
    malformed_fraction: float = typer.Option(None, help="Default PRODUCER_MALFORMED_FRACTION."),
    oversize_share: float = typer.Option(0.01, help="Share of malformed messages that are ~1 MB."),
    initial_users: int = typer.Option(100),
    start: str = typer.Option(None, help="Event time of the first message (ISO-8601); default now."),
    events_per_second: float = typer.Option(
        None, help="Event-time spacing; default the rate (event time follows the wall clock)."),
    bootstrap_servers: str = typer.Option(None, help="Default KAFKA_BOOTSTRAP_SERVERS."),
    topic: str = typer.Option(None, help="Default KAFKA_TOPIC."),
    compression: str = typer.Option(DEFAULT_PRODUCER_CONFIG["compression_type"], help="lz4, zstd, gzip or none."),
    linger_ms: int = typer.Option(DEFAULT_PRODUCER_CONFIG["linger_ms"]),
    batch_size: int = typer.Option(DEFAULT_PRODUCER_CONFIG["batch_size"]),
    log_every: float = typer.Option(5.0, help="Seconds between progress reports."),
) -> None:
    overrides = {"kafka_bootstrap_servers": bootstrap_servers} if bootstrap_servers else {}
    settings = get_settings(**overrides)
    rate = settings.producer_rate if rate is None else rate
    config = GeneratorConfig(
        seed=settings.producer_seed if seed is None else seed,
        start=_iso(start),
        events_per_second=events_per_second or rate or 1000.0,
        duplicate_fraction=_pick(duplicate_fraction, settings.producer_duplicate_fraction),
        late_fraction=_pick(late_fraction, settings.producer_late_fraction),
        malformed_fraction=_pick(malformed_fraction, settings.producer_malformed_fraction),
        initial_users=initial_users,
        oversize_share=oversize_share,
    )
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        print(f"producer: {signal.Signals(signum).name}, flushing and stopping", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if duration:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()

    messages = EventGenerator(config).iter_messages()
    if count is not None:
        messages = itertools.islice(messages, count)
    reporter = _Reporter(count, sys.stderr.isatty())
    print(f"producer: topic={topic or settings.kafka_topic} servers={settings.kafka_bootstrap_servers} "
          f"rate={'max' if not rate else rate}/s seed={config.seed} start={config.start.isoformat()}", flush=True)
    stats = produce(
        messages, settings, rate or None, topic=topic, stop=stop, on_progress=reporter,
        progress_every_s=log_every, compression_type=None if compression == "none" else compression,
        linger_ms=linger_ms, batch_size=batch_size,
    )
    reporter.close(stats)
    kinds = " ".join(f"{k}={v}" for k, v in sorted(stats.by_kind.items()))
    print(f"producer done: sent={stats.sent} failed={stats.failed} in {stats.elapsed_s:.1f}s "
          f"({stats.rate:.0f}/s) {kinds}", flush=True)
    for err in stats.errors:
        print(f"producer error: {err}", file=sys.stderr)
    if stats.failed:
        raise typer.Exit(1)


def _pick(value, default):
    return default if value is None else value
