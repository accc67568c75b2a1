"""Broker ceiling: kafka-python alone, producing the producer's own messages
(same generator settings, same sizes, same client configuration: acks=all,
idempotent, lz4) to the embedded Apache Kafka broker as fast as it can. The messages are generated before the
clock starts, so this is the most one kafka-python client pushes through the
broker on this machine; the pipeline's landed rate is measured against it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import islice

from bench.kafka_util import create_topic, delete_topic
from bench.stats import rate
from lakehouse.settings import Settings


def pregenerate(settings: Settings, n: int) -> list:
    from bench.ingest import INGEST_DAY, messages

    return list(islice(messages(settings, seed=7, start=INGEST_DAY, events_per_second=20_000), n))


def measure_ceiling(settings: Settings, messages: Sequence, topic: str) -> dict:
    """Send every message to a fresh ``topic``; events/s from the first send to
    the flush returning. Fails loudly if any send failed. The topic is
    deleted afterwards (its log would otherwise stay on disk until retention)."""
    from producer.sender import make_producer

    create_topic(settings, topic)
    producer = make_producer(settings)
    try:
        producer.partitions_for(topic)  # metadata outside the clock
        t0 = time.perf_counter()
        futures = [producer.send(topic, key=m.key, value=m.value) for m in messages]
        producer.flush()
        seconds = time.perf_counter() - t0
    finally:
        producer.close()
    deleted = delete_topic(settings, topic)
    failed = [f for f in futures if f.failed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(futures)} sends failed, first: {failed[0].exception!r}")
    return {"events": len(messages), "seconds": seconds, "events_per_s": rate(len(messages), seconds),
            "bytes": sum(len(m.value) for m in messages), "topic_deleted": deleted}
