"""Small kafka-python helpers the measurements share."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from lakehouse.kafka_clients import client_config
from lakehouse.settings import Settings


def create_topic(settings: Settings, name: str, partitions: int | None = None) -> None:
    admin = KafkaAdminClient(**client_config(settings), request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(name, partitions or settings.kafka_partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def high_watermarks(settings: Settings, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Partition -> high watermark (the offset the next record gets), from the
    broker's ListOffsets answer."""
    consumer = KafkaConsumer(**client_config(settings), enable_auto_commit=False,
                             group_id=None, request_timeout_ms=int(timeout * 1000))
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise TimeoutError(f"no partitions of {topic} after {timeout:.0f}s")
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(parts)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


def delete_topic(settings: Settings, name: str) -> bool:
    """Delete a topic; False when the broker refused (not fatal for the benchmark)."""
    admin = KafkaAdminClient(**client_config(settings), request_timeout_ms=10_000)
    try:
        admin.delete_topics([name])
        return True
    except Exception:  # noqa: BLE001 - best effort: retention removes it later anyway
        return False
    finally:
        admin.close()
