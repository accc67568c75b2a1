"""Small kafka-python helpers the measurements share."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from lakehouse.settings import Settings


def create_topic(settings: Settings, name: str, partitions: int | None = None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(name, partitions or settings.kafka_partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def high_watermarks(settings: Settings, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Partition -> high watermark, taken from fetch responses: Tansu's
    ListOffsets("latest") returns the last batch's base offset (DESIGN.md),
    the fetch response's high watermark is right on Tansu and Apache Kafka."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_list,
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=1,
        fetch_max_bytes=1024,
        max_partition_fetch_bytes=1024,
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        out: dict[int, int] = {}
        for tp in tps:
            # fetch from just below the end the client believes in (may be a
            # batch base offset on Tansu); the response carries the true mark.
            consumer.seek_to_end(tp)
            guess = consumer.position(tp)
            consumer.seek(tp, max(0, guess - 1))
        while len(out) < len(tps) and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None:
                    out[tp.partition] = hw
        if len(out) < len(tps):
            raise TimeoutError(f"no high watermark for {topic} partitions {sorted(set(p.partition for p in tps) - set(out))}")
        return out
    finally:
        consumer.close()


def delete_topic(settings: Settings, name: str) -> bool:
    """Delete a topic; False when the broker refused (not fatal for the benchmark)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list, request_timeout_ms=10_000)
    try:
        admin.delete_topics([name])
        return True
    except Exception:  # noqa: BLE001 - best effort, memory only
        return False
    finally:
        admin.close()
