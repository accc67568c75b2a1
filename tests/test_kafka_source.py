"""The Kafka streaming source: pure offset logic and the record decoder as
units; then real Spark (local[2]) on the real broker (Tansu) for exactly-once
reads, caps, restarts, earliest/latest and data-loss handling."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.record import MemoryRecordsBuilder

from lakehouse.kafka_source import (
    SCHEMA,
    KafkaOptions,
    arrow_schema,
    allocate,
    from_json_offsets,
    parse_starting_offsets,
    resolve_start,
    spark_schema,
    split_ranges,
    to_json_offsets,
)
from lakehouse.kafka_wire import Records, decode_batches
from producer.generator import EventGenerator, GeneratorConfig
from producer.sender import produce
from tests.kafka_helpers import fresh_topic, local_spark, recreate_topic


# --- units ------------------------------------------------------------------------
def build_batches(records, codec=0, per_batch=50, base=0):
    """Record batches as the broker stores them, built by kafka-python's encoder
    (offset deltas from 0), with the base offset the broker assigns on append
    (outside the CRC) written into each header."""
    out, offset = b"", base
    for i in range(0, len(records), per_batch):
        b = MemoryRecordsBuilder(magic=2, compression_type=codec, batch_size=1 << 24, offset=0)
        chunk = records[i:i + per_batch]
        for key, value, ts, headers in chunk:
            b.append(timestamp=ts, key=key, value=value, headers=headers)
        b.close()
        out += offset.to_bytes(8, "big") + bytes(b.buffer())[8:]
        offset += len(chunk)
    return out


@pytest.mark.parametrize("codec", [0, 1, 3, 4])  # none, gzip, lz4, zstd
def test_decoder_matches_kafka_python_encoder(codec):
    recs = [(str(i).encode(), (b"v%d-" % i) * (i % 300), 1_763_600_000_000 + i * 37, [])
            for i in range(400)]
    recs[5] = (None, b"no key", 1_763_600_000_000, [])
    recs[6] = (b"k", None, 1_763_600_000_001, [("h1", b"x" * 200), ("h2", None)])
    recs[7] = (b"big", b"y" * 70_000, 1_763_599_999_000, [])  # multi-byte varints, negative ts delta
    buf = build_batches(recs, codec)
    out = Records.empty()
    assert decode_batches(buf, out, 0, 10**9) == 400
    assert out.offsets == list(range(400))
    assert [(k, v, t) for k, v, t, _ in recs] == list(zip(out.keys, out.values, out.timestamps))


def test_decoder_uses_the_broker_time_for_log_append_time_batches():
    buf = bytearray(build_batches([(b"k", b"v", 1000 + i, []) for i in range(3)]))
    buf[21:23] = (int.from_bytes(buf[21:23], "big") | 0x08).to_bytes(2, "big")  # attributes (not in CRC check)
    buf[35:43] = (99_999).to_bytes(8, "big")  # maxTimestamp
    out = Records.empty()
    decode_batches(bytes(buf), out, 0, 10)
    assert out.timestamps == [99_999] * 3


def test_decoder_keeps_the_range_and_stops_at_a_truncated_batch():
    recs = [(b"k", b"v%d" % i, 1000 + i, []) for i in range(200)]
    buf = build_batches(recs, 3, per_batch=50, base=1000)  # offsets 1000..1199
    out = Records.empty()
    assert decode_batches(buf, out, 1020, 1130) == 1150  # ends after the batch holding 1129
    assert out.offsets == list(range(1020, 1130))
    cut = Records.empty()
    assert decode_batches(buf[:-10], cut, 1000, 2000) == 1150  # last batch incomplete: left for next fetch
    assert cut.offsets == list(range(1000, 1150))


def test_allocate_caps_in_proportion_and_always_progresses():
    assert allocate({0: 10, 1: 20}, None) == {0: 10, 1: 20}
    assert allocate({0: 10, 1: 20}, 100) == {0: 10, 1: 20}
    got = allocate({0: 1000, 1: 3000, 2: 0}, 1000)
    assert got == {0: 250, 1: 750, 2: 0}
    odd = allocate({0: 7, 1: 7, 2: 7}, 10)
    assert sum(odd.values()) == 10 and all(2 <= v <= 4 for v in odd.values())
    assert sum(allocate({0: 5, 1: 5, 2: 5}, 1).values()) == 1


def test_split_ranges_evens_out_tasks_and_covers_every_offset():
    ranges = [(0, 0, 1000), (1, 500, 1500), (2, 0, 100)]
    assert split_ranges(ranges, None) == ranges
    assert split_ranges(ranges, 2) == ranges  # already enough tasks
    pieces = split_ranges(ranges, 6)
    assert len(pieces) >= 6
    for p, s, e in ranges:  # contiguous, no gap, no overlap
        mine = sorted((a, b) for q, a, b in pieces if q == p)
        assert mine[0][0] == s and mine[-1][1] == e
        assert all(b1 == a2 for (_, b1), (a2, _) in zip(mine, mine[1:]))
    assert split_ranges([(0, 0, 2)], 6) == [(0, 0, 1), (0, 1, 2)]


def test_resolve_start_detects_each_kind_of_loss():
    ok = resolve_start("t", {0: 5, 1: 7}, {0: 0, 1: 0, 2: 0}, {0: 9, 1: 7, 2: 4})
    assert (ok.start, ok.problems, ok.reset) == ({0: 5, 1: 7, 2: 0}, [], set())  # new partition 2: earliest
    back = resolve_start("t", {0: 500, 1: 7}, {0: 0, 1: 0}, {0: 100, 1: 7})
    assert back.reset == {0} and back.start[0] == 0
    assert "t-0" in back.problems[0] and "500" in back.problems[0] and "100" in back.problems[0]
    deleted = resolve_start("t", {0: 5}, {0: 50}, {0: 80})
    assert deleted.reset == {0} and "deleted" in deleted.problems[0]
    gone = resolve_start("t", {0: 5, 3: 9}, {0: 0}, {0: 10})
    assert gone.problems == ["partition t-3 (checkpointed offset 9) no longer exists"]


def test_schema_is_sparks_kafka_schema():
    assert [(f.name, f.dataType.simpleString()) for f in spark_schema().fields] == [
        tuple(col.split()) for col in SCHEMA.replace("long", "bigint").split(", ")]
    assert arrow_schema().names == ["key", "value", "topic", "partition", "offset", "timestamp"]


def test_options_are_parsed_and_checked():
    o = KafkaOptions.parse({"bootstrap.servers": "a:1, b:2", "subscribe": "ev", "maxOffsetsPerTrigger": "500",
                            "failOnDataLoss": "False", "kafka.request.timeout.ms": "1000"})
    assert (o.bootstrap_servers, o.topic, o.max_offsets_per_trigger, o.fail_on_data_loss) == (
        ["a:1", "b:2"], "ev", 500, False)
    assert o.consumer == {"request_timeout_ms": 1000}
    for bad in ({"subscribe": "ev"}, {"bootstrap.servers": "a:1", "subscribe": "a,b"},
                {"bootstrap.servers": "a:1", "subscribe": "ev", "failOnDataLoss": "maybe"},
                {"bootstrap.servers": "a:1", "subscribe": "ev", "startingOffsets": "yesterday"},
                {"bootstrap.servers": "a:1", "subscribe": "ev", "maxOffsetsPerTrigger": "0"}):
        with pytest.raises(ValueError):
            KafkaOptions.parse(bad)
    assert parse_starting_offsets('{"ev": {"0": 3, "1": -2}}', "ev") == {0: 3, 1: -2}
    assert from_json_offsets("ev", json.loads(json.dumps(to_json_offsets("ev", {1: 5, 0: 2})))) == {0: 2, 1: 5}


# --- real Spark on the real broker -------------------------------------------------------
@pytest.fixture(scope="module")
def spark():
    from lakehouse.kafka_source import register

    session = local_spark("kafka-source-tests")
    register(session)
    yield session
    session.stop()


def send(settings, topic, n, seed=1):
    """n generated messages (all kinds), batched and lz4-compressed as in production."""
    msgs = EventGenerator(GeneratorConfig(seed=seed, malformed_fraction=0.01, oversize_share=0)).messages(n)
    stats = produce(msgs, settings, topic=topic, linger_ms=50)
    assert stats.sent == n
    return msgs


class Sink:
    """foreachBatch target that keeps every delivered batch by batch id."""

    def __init__(self):
        self.batches: dict[int, list] = {}
        self.calls: list[int] = []

    def __call__(self, df, batch_id):
        rows = df.select("key", "value", "topic", "partition", "offset", "timestamp").collect()
        self.calls.append(batch_id)
        self.batches[batch_id] = [tuple(r) for r in rows]

    @property
    def rows(self):
        return [r for b in sorted(self.batches) for r in self.batches[b]]


def stream(spark, settings, topic, **options):
    reader = (spark.readStream.format("lakehouse_kafka")
              .option("bootstrap.servers", settings.kafka_bootstrap_servers).option("subscribe", topic))
    for k, v in options.items():
        reader = reader.option(k, str(v))
    return reader.load()


def run_available_now(spark, settings, topic, checkpoint, sink=None, **options):
    sink = sink or Sink()
    q = (stream(spark, settings, topic, **options).writeStream.foreachBatch(sink)
         .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
    q.awaitTermination(180)
    assert not q.isActive
    return sink, q


def listed_end_offsets(settings, topic):
    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_list, group_id=None)
    try:
        return {tp.partition: o for tp, o in c.end_offsets([TopicPartition(topic, p) for p in range(3)]).items()}
    finally:
        c.close()


def assert_exactly(rows, msgs, topic):
    assert len({(r[3], r[4]) for r in rows}) == len(rows), "a record was delivered twice"
    assert Counter((r[0], r[1]) for r in rows) == Counter((m.key, m.value) for m in msgs)
    assert {r[2] for r in rows} == {topic}
    assert all(r[5] is not None for r in rows)


@pytest.mark.integration
def test_every_record_exactly_once_in_capped_batches(spark, core_stack, tmp_path):
    topic = fresh_topic(core_stack, "src")
    msgs = send(core_stack, topic, 3000)
    # On Tansu, ListOffsets "latest" stops at the last batch's base offset; reading
    # up to it would miss records. The source must still deliver all 3000.
    print("ListOffsets latest:", listed_end_offsets(core_stack, topic))
    sink, q = run_available_now(spark, core_stack, topic, tmp_path / "ck", maxOffsetsPerTrigger=800)
    assert_exactly(sink.rows, msgs, topic)
    sizes = [len(sink.batches[b]) for b in sorted(sink.batches)]
    assert max(sizes) <= 800 and len(sizes) >= 4, sizes
    per_partition = Counter(r[3] for r in sink.rows)
    for p in range(3):  # offsets of each partition are 0..n-1, none skipped
        assert sorted(r[4] for r in sink.rows if r[3] == p) == list(range(per_partition[p]))
    end = json.loads(q.lastProgress["sources"][0]["endOffset"])
    assert {int(p): o for p, o in end[topic].items()} == {p: per_partition[p] for p in range(3)}


@pytest.mark.integration
@pytest.mark.slow
def test_restart_resumes_from_checkpoint_and_a_replayed_batch_is_identical(spark, core_stack, tmp_path):
    topic, ck = fresh_topic(core_stack, "restart"), tmp_path / "ck"
    first = send(core_stack, topic, 1200, seed=2)
    run1, _ = run_available_now(spark, core_stack, topic, ck, maxOffsetsPerTrigger=500)
    assert_exactly(run1.rows, first, topic)

    second = send(core_stack, topic, 900, seed=3)
    run2, _ = run_available_now(spark, core_stack, topic, ck, maxOffsetsPerTrigger=500)
    assert min(run2.batches) > max(run1.batches)
    assert_exactly(run2.rows, second, topic)  # only the new records, none twice, none lost

    # A crash after the batch was planned but before it was committed: Spark
    # replays it from the offsets in the checkpoint; it must read the same records.
    last = max(run2.batches)
    for name in (str(last), f".{last}.crc"):
        (ck / "commits" / name).unlink(missing_ok=True)
    run3, _ = run_available_now(spark, core_stack, topic, ck, maxOffsetsPerTrigger=500)
    assert run3.calls[0] == last
    assert run3.batches[last] == run2.batches[last]
    assert set(run3.batches) == {last}


@pytest.mark.integration
def test_latest_reads_only_what_arrives_after_the_start(spark, core_stack, tmp_path):
    topic = fresh_topic(core_stack, "latest")
    send(core_stack, topic, 500, seed=4)
    sink = Sink()
    q = (stream(spark, core_stack, topic, startingOffsets="latest").writeStream.foreachBatch(sink)
         .option("checkpointLocation", str(tmp_path / "ck")).trigger(processingTime="500 milliseconds").start())
    try:
        deadline = time.monotonic() + 120
        while q.lastProgress is None and time.monotonic() < deadline:  # initial offsets are fixed
            time.sleep(0.2)
        fresh = send(core_stack, topic, 700, seed=5)
        while len(sink.rows) < 700 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.5)  # and nothing more arrives
    finally:
        q.stop()
    assert_exactly(sink.rows, fresh, topic)


@pytest.mark.integration
def test_offsets_going_backwards_fail_by_default_or_restart_from_earliest(spark, core_stack, tmp_path):
    from pyspark.errors import StreamingQueryException

    topic, ck = fresh_topic(core_stack, "loss"), tmp_path / "ck"
    send(core_stack, topic, 900, seed=6)
    run_available_now(spark, core_stack, topic, ck)
    recreate_topic(core_stack, topic)  # like an in-memory broker restarting empty
    again = send(core_stack, topic, 60, seed=7)

    q = (stream(spark, core_stack, topic).writeStream.foreachBatch(Sink())
         .option("checkpointLocation", str(ck)).trigger(availableNow=True).start())
    with pytest.raises(StreamingQueryException) as err:
        q.awaitTermination(180)
    msg = str(err.value)
    assert "data loss detected" in msg and f"partition {topic}-" in msg and "high watermark" in msg

    sink, _ = run_available_now(spark, core_stack, topic, ck, failOnDataLoss="false")
    assert_exactly(sink.rows, again, topic)  # continued from the earliest offsets, nothing lost
