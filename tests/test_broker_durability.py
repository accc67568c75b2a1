"""Durability of the embedded Apache Kafka broker with the whole pipeline
running as `make up` runs it (supervisord: PostgreSQL, broker, the streams
program): `down` then `up`, and a crash of the whole stack (every process
killed at once) then `up`, keep every record and both queries continue from
their checkpoints; `kill -9` of the broker during ingest loses and doubles
nothing the producer had acknowledged (acks=all), and the streams resume by
themselves. Bronze is read with the `deltalake` package."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest
from deltalake import DeltaTable
from kafka import KafkaConsumer, TopicPartition

from lakehouse import catalog
from lakehouse.platform import stack
from lakehouse.polling import wait_for
from producer.generator import EventGenerator, GeneratorConfig
from producer.sender import make_producer
from tests.conftest import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# --- readers ----------------------------------------------------------------------------
def landed(settings) -> list[tuple[int, int]]:
    """(partition, offset) of every row of bronze/events and bronze/quarantine."""
    out: list[tuple[int, int]] = []
    for table in (catalog.BRONZE_EVENTS, catalog.BRONZE_QUARANTINE):
        try:
            t = DeltaTable(table.path(settings)).to_pyarrow_table(columns=["kafka_partition", "kafka_offset"])
        except Exception:  # noqa: BLE001 - not created yet
            continue
        out += zip(t.column("kafka_partition").to_pylist(), t.column("kafka_offset").to_pylist())
    return out


def topic_records(settings) -> set[tuple[int, int]]:
    """Every (partition, offset) of the topic: 0 .. end offset - 1 per partition."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_list, group_id=None)
    try:
        tps = [TopicPartition(settings.kafka_topic, p) for p in consumer.partitions_for_topic(settings.kafka_topic)]
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
    finally:
        consumer.close()
    assert all(s == 0 for s in starts.values()), f"the log start moved: {starts}"
    return {(tp.partition, o) for tp, end in ends.items() for o in range(end)}


def all_landed(settings, want: int):
    def check():
        keys = landed(settings)
        return len(keys) >= want and set(keys) == topic_records(settings)
    return check


def realtime_total(settings) -> int:
    with psycopg2.connect(settings.pg_dsn("writer")) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(event_count), 0) FROM realtime.events_per_minute")
        total = int(cur.fetchone()[0])
    conn.close()
    return total


def checkpoint_files(settings) -> dict[str, str]:
    """Spark's offset and commit logs and the query ids of every checkpoint:
    relative path -> sha256 (what was written must never change)."""
    root = Path(settings.checkpoint_dir)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and (p.name == "metadata" or rel.parent.name in ("offsets", "commits")) and not p.name.startswith("."):
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def doubled(keys: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (partition, offset) keys that landed more than once."""
    return [k for k, c in Counter(keys).items() if c > 1]


def rewritten(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Checkpoint files (checkpoint_files) present in both whose content changed."""
    return [f for f, h in before.items() if f in after and after[f] != h]


def last_batch(files: dict[str, str]) -> dict[str, int]:
    """Query checkpoint -> highest committed batch id."""
    out: dict[str, int] = {}
    for rel in files:
        parts = Path(rel).parts
        if len(parts) >= 2 and parts[-2] == "commits" and parts[-1].isdigit():
            key = str(Path(*parts[:-2]))
            out[key] = max(out.get(key, -1), int(parts[-1]))
    return out


# --- producing with acks=all, recording what the broker acknowledged -------------------------
class AckedProducer:
    """Sends messages with the pipeline's producer settings (acks=all,
    idempotent) and records each acknowledged (partition, offset)."""

    def __init__(self, settings):
        self.settings = settings
        self.acked: list[tuple[int, int]] = []
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def _ok(self, meta):
        with self._lock:
            self.acked.append((meta.partition, meta.offset))

    def _err(self, exc):
        with self._lock:
            self.failed.append(repr(exc))

    def send(self, msgs, rate: float | None = None) -> None:
        producer = make_producer(self.settings)
        try:
            t0 = time.monotonic()
            for i, m in enumerate(msgs):
                if rate:
                    ahead = t0 + i / rate - time.monotonic()
                    if ahead > 0.002:
                        time.sleep(ahead)
                producer.send(self.settings.kafka_topic, key=m.key, value=m.value).add_callback(self._ok).add_errback(self._err)
            producer.flush()
        finally:
            producer.close()


def generate(n: int, start: datetime, seed: int):
    config = GeneratorConfig(seed=seed, start=start, events_per_second=200.0, malformed_fraction=0.005,
                             oversize_share=0.0)
    return EventGenerator(config).messages(n)


def pipeline_settings(tmp_path, **overrides):
    return make_settings(tmp_path / "run", producer_enabled=False, streams_enabled=True, **overrides)


def streams_pid(settings) -> int:
    return stack._proxy(settings).supervisor.getProcessInfo("streams")["pid"]  # noqa: SLF001


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One stack for the file (PostgreSQL, broker, the streams): each test
    checks the whole topic against bronze + quarantine, whatever an earlier
    test left in both."""
    settings = pipeline_settings(tmp_path_factory.mktemp("durability"))
    try:
        stack.up(settings, groups=("core", "pipeline"))
        yield settings
    finally:
        stack.clean(settings)


# --- make down / make up -----------------------------------------------------------------------
def test_down_and_up_and_a_crash_keep_every_record_and_the_streams_continue(pipeline):
    settings = pipeline
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1)
    first = generate(100_000, start, seed=21)
    earlier, realtime_earlier = topic_records(settings), realtime_total(settings)  # another test's
    producer = AckedProducer(settings)
    producer.send(first)
    assert not producer.failed and len(producer.acked) == len(first), producer.failed[:3]
    wait_for(all_landed(settings, len(earlier) + len(first)), 900, "100,000 records in bronze + quarantine",
             every=5)
    wait_for(lambda: realtime_total(settings) > realtime_earlier, 300, "realtime rows", every=2)
    before_files = checkpoint_files(settings)
    before_batches = last_batch(before_files)
    assert before_batches, f"no checkpoint commits under {settings.checkpoint_dir}"
    realtime_before = realtime_total(settings)

    assert stack.down(settings)
    stack.up(settings, groups=("core", "pipeline"))
    # the topic came back whole: same records, same offsets
    assert topic_records(settings) == earlier | set(producer.acked)

    second = generate(20_000, start + timedelta(minutes=30), seed=22)
    producer.send(second)
    assert not producer.failed and len(producer.acked) == len(first) + len(second)
    wait_for(all_landed(settings, len(earlier) + len(producer.acked)), 900, "the next 20,000 records", every=5)
    wait_for(lambda: realtime_total(settings) > realtime_before, 300, "realtime counting again", every=2)

    keys = landed(settings)
    dupes = doubled(keys)
    assert not dupes, f"{len(dupes)} records landed twice, e.g. {dupes[:5]}"
    assert set(keys) == earlier | set(producer.acked) == topic_records(settings)
    # A batch's checkpoint commit follows its Delta commit; raw landing's
    # first batch after a start also compacts bronze before it ends.
    wait_for(lambda: all(last_batch(checkpoint_files(settings)).get(q, -1) > b for q, b in before_batches.items()),
             300, "both queries' checkpoints to go on", every=2)
    after_files = checkpoint_files(settings)
    changed = rewritten(before_files, after_files)
    assert not changed, f"checkpoint files rewritten: {changed[:5]}"
    for f in before_files:
        if Path(f).name == "metadata":
            assert after_files.get(f) == before_files[f], f"checkpoint {f} replaced (a new query id)"
    after_batches = last_batch(after_files)
    for query, batch in before_batches.items():
        assert after_batches.get(query, -1) > batch, f"{query} did not continue its checkpoint"
    # `make status` says where each stream is: all read, nothing waiting on the topic
    wait_for(lambda: all(f"{q}: batch " in status(settings) for q in ("raw-landing", "fast-aggregation"))
             and status(settings).count(f"; 0 records of {settings.kafka_topic} not read yet") == 2,
             120, "`lakehouse status` to show both streams caught up", every=2)

    # A crash of the whole stack (the machine's, a power cut that spares the
    # disk's cache) while the streams land: supervisord and every program at
    # once, PostgreSQL and the broker without their clean shutdowns.
    realtime_before, landed_before = realtime_total(settings), len(landed(settings))
    third = generate(10_000, start + timedelta(minutes=45), seed=23)
    producer.send(third)
    assert not producer.failed and len(producer.acked) == len(first) + len(second) + len(third)
    wait_for(lambda: len(landed(settings)) > landed_before, 300, "the streams landing the next records", every=0.2)
    before_files = checkpoint_files(settings)
    crash(settings)
    stack.up(settings, groups=("core", "pipeline"))
    assert topic_records(settings) == earlier | set(producer.acked)
    wait_for(all_landed(settings, len(earlier) + len(producer.acked)), 900, "every record after the crash",
             every=5)
    keys = landed(settings)
    dupes = doubled(keys)
    assert not dupes, f"{len(dupes)} records landed twice after the crash, e.g. {dupes[:5]}"
    assert set(keys) == earlier | set(producer.acked)
    wait_for(lambda: realtime_total(settings) > realtime_before, 300, "realtime counting after the crash", every=2)
    after_files = checkpoint_files(settings)
    changed = rewritten(before_files, after_files)
    assert not changed, f"checkpoint files rewritten after the crash: {changed[:5]}"


def crash(settings) -> None:
    """SIGKILL supervisord and every process under it at once (each frozen
    first, so none sees another go); the run directory keeps their pid
    files, locks and half-written files, as after a power cut."""
    import signal

    import psutil

    root = psutil.Process(stack.supervisord_pid(settings))
    procs = [root, *root.children(recursive=True)]
    assert len(procs) > 5, procs
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, alive


def status(settings) -> str:
    """What `lakehouse status` (make status) prints for the stack in `settings.run_dir`."""
    from typer.testing import CliRunner

    from lakehouse.platform.cli import app

    result = CliRunner().invoke(app, ["status"], env={"LAKEHOUSE_RUN_DIR": str(settings.run_dir)})
    assert result.exit_code == 0, result.output
    return result.output


# --- kill -9 of the broker ----------------------------------------------------------------------
def test_broker_kill_9_during_ingest_loses_nothing_acknowledged(pipeline):
    settings = pipeline
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=3)
    msgs = generate(40_000, start, seed=31)
    earlier = topic_records(settings)  # another test's
    supervisor = stack._proxy(settings).supervisor  # noqa: SLF001
    producer = AckedProducer(settings)
    warm = 2_000
    producer.send(msgs[:warm])  # the streams are landing before the paced run starts
    wait_for(lambda: len(landed(settings)) > len(earlier), 600, "the streams landing records", every=1)
    sender = threading.Thread(target=producer.send, args=(msgs[warm:], 1000.0))
    sender.start()
    wait_for(lambda: len(producer.acked) >= warm + 8_000, 120, "ingest under way", every=0.2)
    old = supervisor.getProcessInfo("broker")["pid"]
    acked_at_kill = len(producer.acked)
    log_at_kill = (settings.log_dir / "broker.log").stat().st_size
    import os
    import signal

    os.kill(old, signal.SIGKILL)
    wait_for(lambda: supervisor.getProcessInfo("broker")["statename"] == "RUNNING"
             and supervisor.getProcessInfo("broker")["pid"] not in (0, old), 180, "the broker restarted", every=0.5)
    sender.join(300)
    assert not sender.is_alive()
    assert acked_at_kill < len(msgs), "the kill came after the last send"
    assert not producer.failed, f"{len(producer.failed)} sends failed: {producer.failed[:3]}"
    assert len(producer.acked) == len(msgs)

    wait_for(all_landed(settings, len(earlier) + len(msgs)), 900, "every record in bronze + quarantine", every=5)
    keys = landed(settings)
    dupes = doubled(keys)
    assert not dupes, f"{len(dupes)} records landed twice, e.g. {dupes[:5]}"
    assert set(producer.acked) <= set(keys), "acknowledged records missing from bronze"
    assert len(set(producer.acked)) == len(producer.acked)  # idempotent producer: no record written twice
    broker_log = settings.log_dir / "broker.log"
    with open(broker_log, "rb") as f:
        f.seek(log_at_kill if broker_log.stat().st_size >= log_at_kill else 0)  # 0: rotated since (20 MB)
        log = f.read().decode(errors="replace")
    # the restarted broker found no clean-shutdown file: it was killed, not stopped. (The check was
    # "recover" anywhere in the log, which every start's config dump, num.recovery.threads.per.data.dir,
    # and its RECOVERY state already print.)
    assert "since no clean shutdown file was found" in log, log[-3000:]
    assert stack.process_states(settings)["streams"] == "RUNNING"
    progress = json.dumps(stack.process_states(settings))
    assert "FATAL" not in progress
