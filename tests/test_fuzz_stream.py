"""Fuzzing the real path: more than 10,000 generated message values
(tests/fuzz_strategies.py: arbitrary bytes, JSON of every type, valid and
near-miss events, values around the size limit, plus byte-level mutants)
sent to the running stack's topic by both common clients with every codec
(kafka-python and confluent-kafka; none, gzip, snappy, lz4, zstd), with keys
and without, some with explicit Kafka timestamps. The running streams
program must land each record in exactly one of bronze/events and
bronze/quarantine (by partition and offset), with the verdict and reason of
the validation rules, and never restart.
"""

from __future__ import annotations

import random
import re
import time

import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse import catalog, validation
from lakehouse.platform import stack
from lakehouse.polling import wait_for
from tests.conftest import make_settings
from tests.fuzz_strategies import message_values
from tests.test_validation_properties import mutants

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIN_MESSAGES = 10_000
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


@pytest.fixture(scope="module")
def stream_stack(tmp_path_factory):
    """PostgreSQL, the broker and the streams program; no producer: only the fuzz's records."""
    s = make_settings(tmp_path_factory.mktemp("fuzz") / "run", producer_enabled=False)
    try:
        stack.up(s, groups=("core", "pipeline"))
        yield s
    finally:
        stack.clean(s)


#: Well-formed events of the producer mixed in, stamped now: how many of the
#: generated values are valid varies with the generation and the clock (468
#: of ~12,800 in one run), so the valid path gets a known share of its own.
PRODUCER_EVENTS = 1_000


def generated_values() -> list[bytes | None]:
    from datetime import datetime, timezone
    from itertools import islice

    from producer.generator import EventGenerator, GeneratorConfig

    values: list[bytes | None] = []

    # derandomize: a fixed seed. The values still differ a little between
    # processes (14,130, 14,335 and 14,690 messages in three runs on one
    # machine, 14,000 in two CI runs; cause not found), so not every failure
    # reproduces from the seed alone.
    @settings(max_examples=400, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(message_values, st.integers(0, 2**32)), min_size=5, max_size=10))
    def collect(drawn):
        for value, seed in drawn:
            values.append(value)
            values.extend(mutants(value, seed)[:4])

    collect()
    producer = EventGenerator(GeneratorConfig(seed=14, start=datetime.now(timezone.utc), duplicate_fraction=0.0,
                                              late_fraction=0.0, malformed_fraction=0.0))
    values += [m.value for m in islice(producer.iter_messages(), PRODUCER_EVENTS)]
    random.Random(14).shuffle(values)
    return values


def _streams_info(s) -> dict:
    """The process manager's record of the streams program (state, pid, start time)."""
    return stack._proxy(s).supervisor.getProcessInfo("streams")


def _streams_process(s) -> tuple[int, int]:
    info = _streams_info(s)
    assert info["statename"] == "RUNNING", info
    return info["pid"], info["start"]


def send_kafka_python(s, batch, codec: str) -> list[tuple]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap_list, acks="all", linger_ms=20,
                             compression_type=None if codec == "none" else codec, max_request_size=2_000_000)
    futures = [(value, producer.send(s.kafka_topic, key=key, value=value, timestamp_ms=ts)) for key, value, ts in batch]
    producer.flush(120)
    out = []
    for value, fut in futures:
        meta = fut.get(timeout=120)
        out.append((meta.partition, meta.offset, meta.timestamp, value))
    producer.close()
    return out


def send_confluent(s, batch, codec: str) -> list[tuple]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": s.kafka_bootstrap_servers, "acks": "all", "linger.ms": 20,
                         "compression.codec": codec, "message.max.bytes": 2_000_000, "enable.idempotence": True})
    out, errors = [], []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            out.append((msg.partition(), msg.offset(), msg.timestamp()[1], msg.value()))

    for key, value, ts in batch:
        kw = {"timestamp": ts} if ts is not None else {}
        while True:
            try:
                producer.produce(s.kafka_topic, key=key, value=value, on_delivery=delivered, **kw)
                break
            except BufferError:
                producer.poll(0.5)
        producer.poll(0)
    assert producer.flush(120) == 0
    assert errors == []
    return out


def test_every_fuzzed_record_lands_once_with_its_verdict_and_the_stream_never_restarts(stream_stack):
    s = stream_stack
    wait_for(lambda: stack.process_states(s).get("streams") == "RUNNING", 300, "the streams program", every=2)
    pid, started = _streams_process(s)

    values = generated_values()
    assert len(values) >= MIN_MESSAGES, len(values)
    rng = random.Random(14)
    now_ms = int(time.time() * 1000)
    records = []
    for value in values:
        key = rng.choice([None, b"", str(rng.randrange(10**6)).encode(), rng.randbytes(rng.randrange(1, 40))])
        if value is None and key is None:
            key = b"tombstone"  # a record needs a key or a value
        # Explicit timestamps: up to an hour ahead (Kafka 4 refuses more) and two or
        # six days behind (inside the broker's retention: it refuses older, see test_broker).
        ts = rng.choice([None] * 8 + [now_ms - 86_400_000 * 6, now_ms + 3_600_000, now_ms - 86_400_000 * 2])
        records.append((key, value, ts))
    sent = []
    senders = [(send_kafka_python, c) for c in CODECS] + [(send_confluent, c) for c in CODECS]
    for i, (send, codec) in enumerate(senders):
        sent += send(s, records[i::len(senders)], codec)
    assert len(sent) == len(records)
    by_coord = {(p, o): (ts, v) for p, o, ts, v in sent}
    assert len(by_coord) == len(sent)  # the broker gave every record its own offset

    def landed():
        events = DeltaTable(catalog.BRONZE_EVENTS.path(s)).to_pyarrow_table(
            columns=["kafka_partition", "kafka_offset"])
        quarantine = DeltaTable(catalog.BRONZE_QUARANTINE.path(s)).to_pyarrow_table(
            columns=["kafka_partition", "kafka_offset", "reason"])
        return (events, quarantine) if events.num_rows + quarantine.num_rows >= len(sent) else None

    def landed_unless_restarted():
        info = _streams_info(s)
        if (info["pid"], info["start"]) != (pid, started):  # fail at once, with the reason in the log
            raise AssertionError(f"the streams program restarted during the fuzz\n{_streams_state(s)}")
        return _quietly(landed)

    try:
        events, quarantine = wait_for(landed_unless_restarted, 900, f"{len(sent)} records in bronze", every=5)
    except TimeoutError as exc:  # say where the streams were (a CI run once timed out here)
        raise TimeoutError(f"{exc}\n{_streams_state(s)}") from None
    time.sleep(10)  # a batch landing twice would show up now
    events, quarantine = landed()

    coords = [(p, o) for p, o in zip(events.column("kafka_partition").to_pylist(),
                                     events.column("kafka_offset").to_pylist())]
    q_coords = [(p, o) for p, o in zip(quarantine.column("kafka_partition").to_pylist(),
                                       quarantine.column("kafka_offset").to_pylist())]
    reasons = dict(zip(q_coords, quarantine.column("reason").to_pylist()))
    assert len(coords) + len(q_coords) == len(sent)
    assert set(coords) | set(q_coords) == set(by_coord) and not set(coords) & set(q_coords)

    wrong = []
    for coord, (ts, value) in by_coord.items():
        want, _ = validation.check_message(value, ts * 1000 if ts is not None and ts >= 0 else -1)
        got = reasons.get(coord) if coord in reasons else None
        if coord in reasons and not got:
            wrong.append((coord, value[:80] if value else value, "quarantined without a reason"))
        elif got != want:
            wrong.append((coord, value[:80] if value else value, got, want))
    assert wrong == []
    assert len(coords) >= PRODUCER_EVENTS // 2 and len(q_coords) >= 5_000, (len(coords), len(q_coords))
    assert _streams_process(s) == (pid, started), "the streams program restarted during the fuzz"


def _streams_state(s) -> str:
    """The end of the streams program's log and its JVM's task threads, for a timeout's message."""
    import subprocess

    import psutil

    log = s.log_dir / "streams.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else [f"no {log}"]
    errors = [line for line in lines if re.search(r"ERROR|Exception|Error\b|Traceback|OutOfMemory|Killed", line)]
    tail = "\n".join(["(error lines)", *errors[-40:], "(last lines)", *lines[-80:]])
    threads = ""
    info = _streams_info(s)
    if info["statename"] != "RUNNING" or not info["pid"]:
        return f"streams program: {info}\nstreams.log (end):\n{tail}"
    for child in psutil.Process(info["pid"]).children(recursive=True):
        if child.name() == "java":
            try:
                dump = subprocess.run(["jstack", str(child.pid)], capture_output=True, text=True, timeout=60).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                dump = f"jstack: {exc}"
            threads = "\n\n".join(t[:3000] for t in dump.split("\n\n") if "Executor task launch" in t
                                   or "stream execution thread" in t)
    return f"streams program: {info}\nstreams.log (end):\n{tail}\n\nstreams JVM task and query threads:\n{threads}"


def _quietly(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 -- the tables appear with the first batch
        return None
