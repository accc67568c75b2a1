"""Helpers for tests against the real broker: fresh topics, recreating a
topic, reading a topic back. Imported by the broker, producer and stream
data-loss tests."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from lakehouse.settings import Settings


def fresh_topic(settings: Settings, prefix: str = "t", partitions: int = 3) -> str:
    """A new, uniquely named topic, so tests never see each other's records."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def recreate_topic(settings: Settings, name: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    try:
        admin.delete_topics([name])
        for _ in range(50):
            if name not in admin.list_topics():
                break
            time.sleep(0.1)
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every record of the topic (assign/seek, no group), waiting for `expected`."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_list, group_id=None,
                             enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=50_000).values():
                out.extend(records)
        # one more short poll: nothing beyond `expected` may be there
        for records in consumer.poll(timeout_ms=300).values():
            out.extend(records)
        return out
    finally:
        consumer.close()
