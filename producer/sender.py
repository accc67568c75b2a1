"""Send generated messages to Kafka at a steady rate (kafka-python).

`produce()` is the one sending loop: the CLI, the pipeline program, the tests
and the benchmarks all call it. It paces by wall clock (message i is due at
t0 + i / rate; rate None = as fast as the broker takes them), batches with
linger and lz4, reports its rate through a callback, and on stop (an Event the
caller sets, e.g. from SIGTERM) flushes what it has handed to the client.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from lakehouse.kafka_clients import client_config
from lakehouse.settings import Settings
from producer.generator import Message

#: Client tuning (batching measured on a 2-core machine, see docs/streaming.md).
#: acks=all with the idempotent producer (kafka-python's default when retries
#: are left unset): a send counts as done only once the broker has it in the
#: log, and a retry after a broker restart never writes a record twice.
DEFAULT_PRODUCER_CONFIG = dict(
    acks="all",
    enable_idempotence=True,
    compression_type="lz4",
    linger_ms=20,
    batch_size=512 * 1024,
    # oversize test messages (~1 MB) must still reach the topic to be quarantined
    max_request_size=4 * 1024 * 1024,
)


@dataclass
class ProduceStats:
    sent: int = 0  # handed to the client and acknowledged (failures are counted apart)
    failed: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    by_kind: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class ProducerError(RuntimeError):
    """Nothing can be sent: no broker answered, or the topic has no partitions."""


def make_producer(settings: Settings, **overrides) -> KafkaProducer:
    config = dict(DEFAULT_PRODUCER_CONFIG)
    config.update(overrides)
    try:
        return KafkaProducer(**client_config(settings), **config)
    except (KafkaConnectionError, KafkaTimeoutError) as exc:
        raise ProducerError(
            f"no Kafka broker answered at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): "
            f"{exc}. Is the stack up (`make status`)?") from None


def _key_partitioner(client: KafkaProducer, topic: str) -> Callable[[bytes], int]:
    """Kafka's default key partitioner (murmur2), memoised per key: the same
    partitions as the client would pick, without its per-send cost (keys are
    user ids, a few thousand distinct)."""
    from kafka.partitioner.default import murmur2

    try:
        partitions = sorted(client.partitions_for(topic))  # waits for metadata
    except KafkaTimeoutError:
        raise ProducerError(
            f"topic {topic!r} has no partitions the broker would name within "
            f"{client.config['max_block_ms'] / 1000:.0f} s: it does not exist (the stack creates "
            f"KAFKA_TOPIC at `make up`; the broker creates no topic on first use), or this client "
            f"may not describe it") from None
    cache: dict[bytes, int] = {}

    def partition_of(key: bytes) -> int:
        p = cache.get(key)
        if p is None:
            p = cache[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        return p

    return partition_of


def produce(
    messages: Iterable[Message],
    settings: Settings,
    rate: float | None = None,
    *,
    topic: str | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[ProduceStats], None] | None = None,
    progress_every_s: float = 5.0,
    producer: KafkaProducer | None = None,
    **producer_config,
) -> ProduceStats:
    """Send every message (until `stop` is set), then flush; returns what was
    sent. Failed sends do not raise: they are counted in `stats.failed` (with
    the first errors) so the caller decides; the CLI exits non-zero. When
    nothing can be sent (no broker answers, no such topic) it raises
    ProducerError."""
    topic = topic or settings.kafka_topic
    own = producer is None
    client = producer or make_producer(settings, **producer_config)
    stats = ProduceStats()
    lock = threading.Lock()

    def failed(exc: BaseException) -> None:
        with lock:
            stats.failed += 1
            if len(stats.errors) < 10:
                stats.errors.append(repr(exc))

    t0 = time.monotonic()
    handed = 0
    try:
        partition_of = _key_partitioner(client, topic)
        t0 = time.monotonic()  # the pace starts once the topic's partitions are known
        next_report = t0 + progress_every_s
        for msg in messages:
            if stop is not None and stop.is_set():
                break
            if rate:
                due = t0 + handed / rate
                ahead = due - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
            client.send(topic, key=msg.key, value=msg.value, partition=partition_of(msg.key)).add_errback(failed)
            handed += 1
            stats.bytes += len(msg.value)
            stats.by_kind[msg.kind] += 1
            if on_progress is not None and handed % 256 == 0:
                now = time.monotonic()
                if now >= next_report:
                    next_report = now + progress_every_s
                    stats.sent, stats.elapsed_s = handed - stats.failed, now - t0
                    on_progress(stats)
    finally:
        client.flush()
        stats.elapsed_s = time.monotonic() - t0
        stats.sent = handed - stats.failed
        if own:
            client.close()
    return stats
