"""The embedded Apache Kafka broker: storage formatted once and refused a
second time, bad input (a port taken, a log of another cluster, a full disk,
a corrupt segment) each a one-line error that deletes nothing, the topic, an
external broker (BROKER_EMBEDDED=false), and every common client with every
codec Kafka defines: kafka-python, librdkafka (confluent-kafka, Debian's kcat)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from lakehouse.platform import broker, stack
from lakehouse.platform.errors import PlatformError
from lakehouse.platform.services import services
from tests.conftest import make_settings
from tests.kafka_helpers import fresh_topic, read_topic

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")


def tree(path: Path) -> dict[str, int]:
    """Every file under path with its size: what 'nothing was deleted' compares.
    A running broker's `*.tmp` files are left out: Kafka writes its checkpoint
    files to a `.tmp` sibling and renames it, so one may come and go between
    two listings."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.suffix == ".tmp":
            continue
        try:
            if p.is_file():
                out[str(p.relative_to(path))] = p.stat().st_size
        except FileNotFoundError:
            continue
    return out


def produce_acked(settings, topic: str, n: int, partition: int = 0) -> list[tuple[int, int]]:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list, acks="all")
    try:
        futures = [producer.send(topic, key=b"k", value=b"v%06d" % i * 10, partition=partition) for i in range(n)]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


# --- configuration (no broker needed) ----------------------------------------------------
def test_broker_config_is_one_loopback_node_with_replication_1(tmp_path):
    settings = make_settings(tmp_path / "run", broker_heap="384m")
    props = broker.server_properties(settings)
    port = broker.host_port(settings)[1]
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{settings.broker_controller_port}"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{settings.broker_controller_port}"
    for key in ("default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr"):
        assert props[key] == "1", key
    assert props["log.dirs"] == str(settings.run_dir / "kafka")
    assert props["log.retention.hours"] == "168" and int(props["log.retention.bytes"]) == 4 * 1024**3
    assert props["log.message.timestamp.before.max.ms"] == str(168 * 3_600_000)
    assert props["log.cleaner.dedupe.buffer.size"] == str(16 * 1024**2)
    broker.write_config(settings)
    cmd = broker.server_command(settings)
    assert "-Xmx384m" in cmd and cmd[-2] == "kafka.Kafka"
    assert cmd[cmd.index("-cp") + 1].endswith("kafka/*")
    svc = next(s for s in services(settings) if s.name == "broker")
    assert svc.stopsignal == "TERM" and svc.stopwaitsecs >= 60
    assert (settings.broker_controller_port, "BROKER_CONTROLLER_PORT") in svc.extra_ports
    with pytest.raises(PlatformError, match="BROKER_HEAP"):
        broker.jvm_options(make_settings(tmp_path / "run2", broker_heap="lots"))


def test_cluster_ids_are_kafka_uuids():
    ids = {broker.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_external_broker_means_no_broker_program(tmp_path):
    settings = make_settings(tmp_path / "run", broker_embedded=False)
    assert "broker" not in {s.name for s in services(settings)}


# --- one stack of its own, taken through the bad cases in turn -----------------------------
@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("broker") / "run")
    try:
        stack.up(settings, groups=("core",))
        yield settings
    finally:
        stack.clean(settings)


def test_log_is_formatted_once_and_a_second_format_is_refused(own_stack):
    logs = broker.log_dir(own_stack)
    cid = broker.cluster_id_path(own_stack).read_text().strip()
    assert broker.read_meta(logs / "meta.properties")["cluster.id"] == cid
    before = tree(logs)
    with pytest.raises(PlatformError, match="formatting the Kafka log .* failed: .*already formatted"):
        broker.format_storage(own_stack, cid)
    with pytest.raises(PlatformError, match="formatting the Kafka log .* failed: .*Invalid cluster.id"):
        broker.format_storage(own_stack, broker.new_cluster_id())
    assert broker.read_meta(logs / "meta.properties")["cluster.id"] == cid
    assert set(before) <= set(tree(logs))


def test_the_running_broker_uses_the_small_cleaner_map(own_stack):
    """The broker took the configuration it was given (DescribeConfigs of the
    node): the log cleaner's map is 16 MB of heap, not Kafka's 128 MB."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=own_stack.kafka_bootstrap_list)
    try:
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(broker.NODE_ID))],
                                        config_filter="all")
    finally:
        admin.close()
    values = {key: data["value"] for key, data in answer["broker"][str(broker.NODE_ID)].items()}
    assert values["log.cleaner.dedupe.buffer.size"] == str(broker.CLEANER_DEDUPE_BUFFER) == str(16 * 1024**2)
    assert values["log.cleaner.enable"] == "true"


def test_topic_has_the_configured_partitions_and_creating_it_again_is_a_noop(own_stack):
    admin = KafkaAdminClient(bootstrap_servers=own_stack.kafka_bootstrap_list)
    try:
        (desc,) = admin.describe_topics([own_stack.kafka_topic])
        assert len(desc["partitions"]) == own_stack.kafka_partitions
        broker.ensure_topic(own_stack)
        broker.ensure_topic(own_stack)
        (desc,) = admin.describe_topics([own_stack.kafka_topic])
        assert len(desc["partitions"]) == own_stack.kafka_partitions
    finally:
        admin.close()


def test_a_record_stamped_older_than_the_retention_is_refused_and_deletes_nothing(own_stack):
    """Kafka deletes a segment by its largest record timestamp, the producer's:
    a record stamped before the retention would go at the next retention check,
    unread. The broker refuses it at once; one stamped just inside is kept."""
    import time

    from kafka.errors import InvalidTimestampError

    topic = fresh_topic(own_stack, partitions=1)
    retention_ms = own_stack.broker_retention_hours * 3_600_000
    now_ms = int(time.time() * 1000)
    producer = KafkaProducer(bootstrap_servers=own_stack.kafka_bootstrap_list, acks="all", retries=0)
    try:
        # one send each: the broker refuses a whole record batch for one such record
        assert producer.send(topic, value=b"inside", timestamp_ms=now_ms - retention_ms + 3_600_000) \
            .get(timeout=30).offset == 0
        for ts in (now_ms - retention_ms - 60_000, 0):
            with pytest.raises(InvalidTimestampError):
                producer.send(topic, value=b"old", timestamp_ms=ts).get(timeout=30)
    finally:
        producer.close()
    assert [r.value for r in read_topic(own_stack, topic, 1)] == [b"inside"]


def test_down_and_up_keep_the_log_and_the_cluster(own_stack):
    topic = fresh_topic(own_stack, "keep")
    acked = produce_acked(own_stack, topic, 500)
    cid = broker.cluster_id_path(own_stack).read_text()
    assert stack.down(own_stack)
    assert (broker.log_dir(own_stack) / broker.CLEAN_SHUTDOWN).exists(), "no controlled shutdown"
    assert stack.up(own_stack, groups=("core",)).started == ["postgres", "broker"]
    assert broker.cluster_id_path(own_stack).read_text() == cid
    got = read_topic(own_stack, topic, len(acked))
    assert sorted((r.partition, r.offset) for r in got) == sorted(acked)
    assert [r.value for r in sorted(got, key=lambda r: r.offset)] == [b"v%06d" % i * 10 for i in range(500)]


def test_controller_port_taken_gives_one_line_error(own_stack, tmp_path):
    settings = make_settings(tmp_path / "run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", settings.broker_controller_port))
        s.listen()
        try:
            with pytest.raises(PlatformError, match=f"port {settings.broker_controller_port} for broker .* "
                                                    "BROKER_CONTROLLER_PORT in .env"):
                stack.up(settings, groups=("core",))
        finally:
            stack.clean(settings)


def _down_then(settings, change) -> tuple[dict, PlatformError]:
    """Stop the stack, apply `change`, start again: the error, and the log
    listing from before the change (which must still be there)."""
    stack.down(settings)
    before = tree(broker.log_dir(settings))
    change()
    with pytest.raises(PlatformError) as err:
        stack.up(settings, groups=("core",))
    assert "\n" not in str(err.value)
    return before, err.value


def test_log_of_another_cluster_is_refused_and_kept(own_stack):
    kept = broker.cluster_id_path(own_stack)
    mine = kept.read_text()
    try:
        before, err = _down_then(own_stack, lambda: kept.write_text(broker.new_cluster_id() + "\n"))
        assert "belongs to cluster" in str(err) and "nothing was deleted" in str(err)
        assert tree(broker.log_dir(own_stack)) == before
        assert stack.process_states(own_stack).get("broker") != "RUNNING"
    finally:
        kept.write_text(mine)
        stack.up(own_stack, groups=("core",))


def test_full_disk_at_start_is_refused(own_stack):
    free_mb = shutil.disk_usage(own_stack.run_dir).free // 2**20
    full = own_stack.model_copy(update={"broker_min_free_mb": free_mb + 10_000})
    before, err = _down_then(full, lambda: None)
    assert "MB free on the disk of" in str(err) and "BROKER_MIN_FREE_MB" in str(err)
    assert tree(broker.log_dir(own_stack)) == before
    stack.down(own_stack)  # the failed start wrote its settings for the launcher
    stack.up(own_stack, groups=("core",))


def test_corrupt_segment_after_an_unclean_stop_is_not_truncated(own_stack):
    """Kafka's recovery after an unclean stop truncates a segment at its first
    bad batch and drops every record after it: the stack refuses instead,
    names the segment and keeps every byte."""
    topic = fresh_topic(own_stack, "corrupt", partitions=1)
    produce_acked(own_stack, topic, 3000)
    logs = broker.log_dir(own_stack)
    segment = logs / f"{topic}-0" / "00000000000000000000.log"

    def corrupt_after_crash():
        (logs / broker.CLEAN_SHUTDOWN).unlink()  # as after kill -9
        data = bytearray(segment.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 256] = b"\xde\xad\xbe\xef" * 64
        segment.write_bytes(bytes(data))

    _, err = _down_then(own_stack, corrupt_after_crash)
    damaged = segment.read_bytes()
    assert f"{segment} is corrupt" in str(err) and "BROKER_RECOVERY_TRUNCATE" in str(err)
    assert "nothing was deleted" in str(err)
    assert segment.read_bytes() == damaged  # not truncated
    # a torn last batch (a write cut short, never acknowledged) is Kafka's to recover
    intact = damaged[: len(damaged) // 4]
    assert broker.segments_to_recover(own_stack)
    segment.write_bytes(intact)
    broker.check_recovery(own_stack)  # no error: the tail is torn, nothing valid after it
    stack.up(own_stack, groups=("core",))
    got = read_topic(own_stack, topic, 1, timeout_s=10)
    assert 0 < len(got) < 3000


def test_external_broker_gets_the_topic(own_stack, tmp_path):
    """BROKER_EMBEDDED=false: no broker program; `up` creates the topic on
    KAFKA_BOOTSTRAP_SERVERS (here the other stack's broker)."""
    topic = f"external-{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path / "run", broker_embedded=False,
                             kafka_bootstrap_servers=own_stack.kafka_bootstrap_servers, kafka_topic=topic)
    try:
        result = stack.up(settings, groups=("core",))
        assert result.started == ["postgres"]
        assert not broker.log_dir(settings).exists()
        admin = KafkaAdminClient(bootstrap_servers=own_stack.kafka_bootstrap_list)
        try:
            assert topic in admin.list_topics()
        finally:
            admin.close()
    finally:
        stack.clean(settings)


# --- clients and codecs -------------------------------------------------------------------
def test_librdkafka_produces_with_every_codec_and_consumes(own_stack):
    from confluent_kafka import Producer

    topic = fresh_topic(own_stack, "rdkafka", partitions=1)
    sent = []
    for codec in CODECS:
        producer = Producer({"bootstrap.servers": own_stack.kafka_bootstrap_servers, "acks": "all",
                             "compression.codec": codec, "linger.ms": 5})
        errors = []
        for i in range(200):
            value = f"{codec}-{i}-".encode() * 20
            producer.produce(topic, value=value, key=codec.encode(),
                             on_delivery=lambda err, msg: err and errors.append(err))
            sent.append(value)
        assert producer.flush(30) == 0 and not errors, errors
    assert _librdkafka_read(own_stack, topic, len(sent)) == sent
    # and kafka-python reads what librdkafka compressed, every codec
    assert [r.value for r in read_topic(own_stack, topic, len(sent))] == sent


def _librdkafka_read(settings, topic: str, expected: int) -> list[bytes]:
    """Partition 0 of `topic` from the start, read by librdkafka (confluent-kafka),
    waiting up to a minute for `expected` values."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"g-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        for _ in range(120):
            got += [m.value() for m in consumer.consume(500, timeout=0.5) if not m.error()]
            if len(got) >= expected:
                break
        return got
    finally:
        consumer.close()


def test_kafka_python_produces_with_every_codec_and_librdkafka_reads_it(own_stack):
    topic = fresh_topic(own_stack, "kpy", partitions=1)
    sent = []
    for codec in CODECS:
        producer = KafkaProducer(bootstrap_servers=own_stack.kafka_bootstrap_list, acks="all", compression_type=codec)
        for i in range(200):
            sent.append(f"{codec}-{i}-".encode() * 20)
            producer.send(topic, value=sent[-1], partition=0)
        producer.flush()
        producer.close()
    assert _librdkafka_read(own_stack, topic, len(sent)) == sent


def test_kcat_produces_and_consumes(own_stack):
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat not found: `scripts/bootstrap.sh --with-browser` (make test) installs Debian's kcat")
    topic = fresh_topic(own_stack, "kcat", partitions=1)
    lines = [f"line-{i}" for i in range(100)]
    res = subprocess.run([kcat, "-b", own_stack.kafka_bootstrap_servers, "-t", topic, "-P", "-z", "snappy",
                          "-X", "acks=all"], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([kcat, "-b", own_stack.kafka_bootstrap_servers, "-t", topic, "-C", "-o", "beginning",
                          "-e", "-q"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == lines
    assert [r.value.decode() for r in read_topic(own_stack, topic, len(lines))] == lines
