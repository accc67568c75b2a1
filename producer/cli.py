"""`python -m producer`: send clickstream events to Kafka from the command line.

    python -m producer --rate 2000 --duration 60
    python -m producer --rate 0 --count 200000      # as fast as the broker takes them

Without --count or --duration it runs until SIGTERM/SIGINT, which stop it
cleanly: what was handed to the client is flushed and it exits 0. Defaults
come from lakehouse.settings (PRODUCER_*, KAFKA_*).
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from enum import Enum

import typer
from pydantic import ValidationError

from lakehouse.kafka_clients import KafkaOptionsError, client_config
from lakehouse.settings import describe, get_settings
from producer.generator import EventGenerator, GeneratorConfig
from producer.sender import DEFAULT_PRODUCER_CONFIG, ProducerError, ProduceStats, produce

app = typer.Typer(add_completion=False, help=__doc__)


def _iso(value: str | None) -> datetime | None:
    """--start: an ISO-8601 time, UTC when it names no offset."""
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time, e.g. 2026-12-06T08:00:00Z") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


class Compression(str, Enum):
    """Record batch codecs kafka-python writes (`none`: uncompressed)."""

    lz4 = "lz4"
    zstd = "zstd"
    gzip = "gzip"
    snappy = "snappy"
    none = "none"


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
    rate: float = typer.Option(None, min=0, help="Events per second; 0 = as fast as possible. Default PRODUCER_RATE."),
    count: int = typer.Option(None, min=0, help="Stop after this many messages."),
    duration: float = typer.Option(None, min=0, help="Stop after this many seconds."),
    seed: int = typer.Option(None, help="Generator seed. Default PRODUCER_SEED."),
    duplicate_fraction: float = typer.Option(None, min=0, max=1, help="Default PRODUCER_DUPLICATE_FRACTION."),
    late_fraction: float = typer.Option(None, min=0, max=1, help="Default PRODUCER_LATE_FRACTION."),
    malformed_fraction: float = typer.Option(None, min=0, max=1, help="Default PRODUCER_MALFORMED_FRACTION."),
    oversize_share: float = typer.Option(0.01, min=0, max=1, help="Share of malformed messages that are ~1 MB."),
    initial_users: int = typer.Option(100, min=1),
    start: str = typer.Option(None, callback=_iso, help="Event time of the first message (ISO-8601, UTC unless "
                              "it names an offset); default now."),
    events_per_second: float = typer.Option(
        None, min=0, help="Event-time spacing; default the rate (event time follows the wall clock)."),
    bootstrap_servers: str = typer.Option(None, help="Default KAFKA_BOOTSTRAP_SERVERS."),
    topic: str = typer.Option(None, help="Default KAFKA_TOPIC."),
    compression: Compression = typer.Option(DEFAULT_PRODUCER_CONFIG["compression_type"],
                                            help="Record batch codec."),
    linger_ms: int = typer.Option(DEFAULT_PRODUCER_CONFIG["linger_ms"], min=0),
    batch_size: int = typer.Option(DEFAULT_PRODUCER_CONFIG["batch_size"], min=1),
    log_every: float = typer.Option(5.0, min=0.1, help="Seconds between progress reports."),
    workers: int = typer.Option(1, min=1, help="Sending processes (each its own generator stream); "
                                "more than 1 only for rates one Python process cannot reach."),
) -> None:
    overrides = {"kafka_bootstrap_servers": bootstrap_servers} if bootstrap_servers else {}
    try:
        settings = get_settings(**overrides)
        client_config(settings)  # KAFKA_OPTIONS the Python client cannot take: refused before any send
    except ValidationError as exc:
        _fail(describe(exc), 2)
    except KafkaOptionsError as exc:
        _fail(str(exc), 2)
    rate = settings.producer_rate if rate is None else rate
    try:
        config = GeneratorConfig(
            seed=settings.producer_seed if seed is None else seed,
            start=start or datetime.now(timezone.utc),
            events_per_second=events_per_second or rate or 1000.0,
            duplicate_fraction=_pick(duplicate_fraction, settings.producer_duplicate_fraction),
            late_fraction=_pick(late_fraction, settings.producer_late_fraction),
            malformed_fraction=_pick(malformed_fraction, settings.producer_malformed_fraction),
            initial_users=initial_users,
            oversize_share=oversize_share,
        )
    except ValueError as exc:  # what the options' own ranges cannot say (the fractions' sum)
        _fail(str(exc), 2)
    stop = multiprocessing.get_context("fork").Event() if workers > 1 else threading.Event()

    def on_signal(signum, _frame) -> None:
        print(f"producer: {signal.Signals(signum).name}, flushing and stopping", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if duration:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()

    reporter = _Reporter(count, sys.stderr.isatty())
    print(f"producer: topic={topic or settings.kafka_topic} servers={settings.kafka_bootstrap_servers} "
          f"rate={'max' if not rate else rate}/s seed={config.seed} start={config.start.isoformat()} "
          f"workers={workers}", flush=True)
    send_kw = dict(topic=topic, progress_every_s=log_every, linger_ms=linger_ms, batch_size=batch_size,
                   compression_type=None if compression is Compression.none else compression.value)
    try:
        if workers == 1:
            stats = produce(_messages(config, count), settings, rate or None, stop=stop, on_progress=reporter,
                            **send_kw)
        else:
            stats = _produce_in_processes(workers, config, count, settings, rate, stop, reporter, send_kw)
    except ProducerError as exc:
        _fail(str(exc), 1)
    reporter.close(stats)
    kinds = " ".join(f"{k}={v}" for k, v in sorted(stats.by_kind.items()))
    print(f"producer done: sent={stats.sent} failed={stats.failed} in {stats.elapsed_s:.1f}s "
          f"({stats.rate:.0f}/s) {kinds}", flush=True)
    for err in stats.errors:
        print(f"producer error: {err}", file=sys.stderr)
    if stats.failed:
        raise typer.Exit(1)


def _messages(config: GeneratorConfig, count: int | None):
    messages = EventGenerator(config).iter_messages()
    return itertools.islice(messages, count) if count is not None else messages


def _worker_config(config: GeneratorConfig, index: int, workers: int) -> GeneratorConfig:
    """Worker i: its own seed (so its own event_ids) and 1/workers of the event rate."""
    return dataclasses.replace(config, seed=config.seed * 1000 + index,
                               events_per_second=config.events_per_second / workers)


def _worker(index, workers, config, count, settings, rate, stop, queue, send_kw) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent coordinates the stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    share = None if count is None else count // workers + (index < count % workers)
    try:
        stats = produce(
            _messages(_worker_config(config, index, workers), share), settings,
            (rate / workers) if rate else None, stop=stop,
            on_progress=lambda st: queue.put(("progress", index, st)), **send_kw,
        )
    except ProducerError as exc:
        queue.put(("failed", index, str(exc)))
        return
    queue.put(("done", index, stats))


def _produce_in_processes(workers, config, count, settings, rate, stop, reporter, send_kw) -> ProduceStats:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(i, workers, config, count, settings, rate, stop, queue, send_kw))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    latest: dict[int, ProduceStats] = {}
    done: set[int] = set()
    while len(done) < workers:
        try:
            kind, index, st = queue.get(timeout=1.0)
        except Exception:  # noqa: BLE001 -- queue.Empty: check the workers are alive
            if all(not p.is_alive() for p in procs) and queue.empty():
                break
            continue
        if kind == "failed":  # nothing can be sent: the others stop too
            stop.set()
            for proc in procs:
                proc.join(timeout=60)
            raise ProducerError(st)
        latest[index] = st
        if kind == "done":
            done.add(index)
        elif index == 0:  # one combined line per report period
            reporter(_combine(latest.values()))
    for proc in procs:
        proc.join(timeout=60)
    total = _combine(latest.values())
    if len(done) < workers:
        total.failed += 1
        total.errors.append(f"{workers - len(done)} worker(s) died without reporting")
    return total


def _combine(parts) -> ProduceStats:
    total = ProduceStats()
    for st in parts:
        total.sent += st.sent
        total.failed += st.failed
        total.bytes += st.bytes
        total.elapsed_s = max(total.elapsed_s, st.elapsed_s)
        total.by_kind.update(st.by_kind)
        total.errors += st.errors
    return total


def _pick(value, default):
    return default if value is None else value
