"""Bad input against both streaming queries, running in one Spark session on
the real Apache Kafka broker, never restarted: every codec from kafka-python
and confluent-kafka, headers, tombstones and empty values, a 1 MB value,
non-UTF-8 bytes, control characters, an upper-case UUID, a transactional
producer with an aborted transaction (read_committed), one event 23 h in the
future between on-time ones, and partitions added while running.

Bronze + quarantine must hold exactly the committed records, once each, with
the expected reasons; realtime must equal the counts computed here; the
future event must not stop realtime from counting the on-time events after
it. (A deleted and recreated topic: tests/test_streams_data_loss.py.)"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import psutil
import psycopg2
import pytest
from confluent_kafka import Producer as ConfluentProducer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewPartitions

from lakehouse.stream.app import streams_session
from lakehouse.stream.progress import ProgressRecorder
from lakehouse.validation import reason_code
from spark_jobs import fast_aggregation, raw_landing
from tests.streams_helpers import delta_rows, realtime_rows, stream_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Three days ago, 06:00 UTC: days apart from the other stream tests (they share
#: the realtime tables). The records carry these times as their Kafka timestamps,
#: so T0 must stay well inside the broker's 7-day retention, which deletes
#: records by timestamp: a fixed date here aged out a week after it was written,
#: and the broker then deleted the topic's first records before Spark read them.
T0 = datetime.now(timezone.utc).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=3)
CODECS = ("gzip", "snappy", "lz4", "zstd")
MB = 1_000_000


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class Sent:
    """What the test produced and what each committed record must become."""

    def __init__(self) -> None:
        self.events: list[dict] = []  # valid events, in bronze
        self.bad: list[tuple[bytes | None, str]] = []  # (value, reason code), in quarantine
        self.aborted: list[bytes] = []  # never readable under read_committed
        self.i = 0

    def event(self, t: datetime, **changes) -> tuple[dict, bytes]:
        self.i += 1
        e = {"event_id": str(uuid.uuid4()), "user_id": 1 + self.i % 50,
             "event_type": ("login", "click", "purchase", "logout")[self.i % 4],
             "page": "/home", "timestamp": t.isoformat().replace("+00:00", "Z"),
             "source": ("web", "mobile")[self.i % 2], **changes}
        return e, json.dumps(e).encode()


def kafka_python(settings, codec: str | None = None, **kw) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list, compression_type=codec,
                         max_request_size=2 * MB, linger_ms=5, **kw)


def confluent(settings, **conf) -> ConfluentProducer:
    return ConfluentProducer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 5,
                              "message.max.bytes": 2 * MB, **conf})


def flush(producer: ConfluentProducer) -> None:
    assert producer.flush(30) == 0


def running(queries) -> bool:
    """True while both queries run; raises with a query's error as soon as one
    has stopped (instead of waiting out a timeout for records that never come)."""
    for q in queries:
        if not q.isActive or q.exception() is not None:
            raise AssertionError(f"query {q.name} stopped: {q.exception()}")
    return True


def latest_progress(query) -> dict:
    return query.lastProgress or {}


def end_offsets(query) -> dict:
    p = latest_progress(query)
    if not p or not p.get("sources"):
        return {}
    end = p["sources"][0]["endOffset"]
    return json.loads(end) if isinstance(end, str) else end


@pytest.fixture(scope="module")
def run(core_stack, tmp_path_factory):
    settings = stream_settings(core_stack, tmp_path_factory.mktemp("bad-input"), stream_max_records_per_batch=2000)
    spark = streams_session(settings, "test-streams-bad-input")
    spark.streams.addListener(
        ProgressRecorder(settings.pg_dsn("writer"), [raw_landing.QUERY_NAME, fast_aggregation.QUERY_NAME])
    )
    queries = [raw_landing.start(spark, settings), fast_aggregation.start(spark, settings)]
    run_ids = [q.runId for q in queries]
    sent = Sent()
    topic = settings.kafka_topic
    try:
        t = T0
        # every codec, from both clients (Kafka timestamps = event times: on time)
        for codec in CODECS:
            p = kafka_python(settings, codec)
            for _ in range(40):
                t += timedelta(seconds=1)
                e, v = sent.event(t)
                p.send(topic, key=str(e["user_id"]).encode(), value=v, timestamp_ms=ms(t))
                sent.events.append(e)
            p.flush(30)
            p.close()
            c = confluent(settings, **{"compression.type": codec})
            for _ in range(40):
                t += timedelta(seconds=1)
                e, v = sent.event(t)
                c.produce(topic, key=str(e["user_id"]).encode(), value=v, timestamp=ms(t))
                sent.events.append(e)
            flush(c)
        # headers, tombstones, empty values, oversize, undecodable, bad pages, upper-case UUID
        p = kafka_python(settings, "snappy")
        t += timedelta(seconds=1)
        e, v = sent.event(t)
        p.send(topic, value=v, headers=[("trace", b"\x00\x01"), ("empty", b"")], timestamp_ms=ms(t))
        sent.events.append(e)
        upper, v = sent.event(t, event_id=str(uuid.uuid4()).upper())
        p.send(topic, value=v, timestamp_ms=ms(t))
        sent.events.append(upper)
        p.send(topic, value=json.dumps(dict(upper, user_id=7)).encode(), timestamp_ms=ms(t))  # same id, resent
        sent.events.append(dict(upper, user_id=7))
        bad = [
            (None, "empty_message"), (b"", "empty_message"), (b"x" * MB, "oversize"),
            (b"\xff\xfe\x80 not utf-8", "undecodable"),
            (sent.event(t, page="/home\u0000")[1], "invalid_page"),
            (sent.event(t, page="/" + "p" * 4096)[1], "invalid_page"),
            (sent.event(t + timedelta(hours=25))[1], "absurd_timestamp"),
        ]
        for value, code in bad:
            p.send(topic, key=b"k", value=value, headers=[("h", b"v")], timestamp_ms=ms(t))
            sent.bad.append((value, code))
        p.flush(30)
        p.close()
        # a transactional producer: one committed transaction, one aborted
        tx = confluent(settings, **{"transactional.id": f"tx-{uuid.uuid4().hex[:8]}", "compression.type": "zstd"})
        tx.init_transactions(30)
        tx.begin_transaction()
        for _ in range(30):
            t += timedelta(seconds=1)
            e, v = sent.event(t)
            tx.produce(topic, value=v, timestamp=ms(t))
            sent.events.append(e)
        tx.commit_transaction(30)
        tx.begin_transaction()
        for _ in range(30):
            e, v = sent.event(t)
            tx.produce(topic, value=v, timestamp=ms(t))
            sent.aborted.append(v)
        # delivered (in the log) before the abort; this also keeps librdkafka from
        # ending the transaction while partitions are still being added to it,
        # which the broker may refuse with INVALID_TXN_STATE (librdkafka#4849)
        flush(tx)
        tx.abort_transaction(30)
        wait_for(lambda: running(queries) and len(delta_rows(settings, "events")) >= len(sent.events), 900,
                 "the first records landed")

        # one event 23 h ahead of its Kafka timestamp, then on-time events
        p = kafka_python(settings)
        t += timedelta(seconds=1)
        future, v = sent.event(t + timedelta(hours=23))
        p.send(topic, value=v, timestamp_ms=ms(t))
        sent.events.append(future)
        p.flush(30)
        wait_for(lambda: running(queries) and len(delta_rows(settings, "events")) >= len(sent.events), 120,
                 "the future event landed")
        after = []
        for _ in range(20):
            t += timedelta(seconds=3)
            e, v = sent.event(t, event_type="purchase")
            p.send(topic, value=v, timestamp_ms=ms(t))
            sent.events.append(e)
            after.append(e)
        p.flush(30)
        sent_at = time.monotonic()
        last_minute = max(datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in after)
        last_minute = last_minute.replace(second=0, microsecond=0)
        want_last = sum(1 for e in after if e["timestamp"].startswith(last_minute.strftime("%Y-%m-%dT%H:%M")))
        wait_for(lambda: realtime_rows(settings)["purchases_per_minute"].get((last_minute,), 0) >= want_last, 120,
                 "on-time events after the future one counted in realtime")
        visible_after_s = time.monotonic() - sent_at

        # partitions added while running: records in the new partitions are read too
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
        try:
            admin.create_partitions({topic: NewPartitions(total_count=settings.kafka_partitions + 2)})
        finally:
            admin.close()
        p.close()
        p = kafka_python(settings, "lz4")
        wait_for(lambda: len(p.partitions_for(topic) or ()) == settings.kafka_partitions + 2, 60, "new partitions")
        for part in range(settings.kafka_partitions, settings.kafka_partitions + 2):
            for _ in range(25):
                t += timedelta(seconds=1)
                e, v = sent.event(t)
                p.send(topic, value=v, partition=part, timestamp_ms=ms(t))
                sent.events.append(e)
        p.flush(30)
        p.close()
        total = len(sent.events) + len(sent.bad)
        wait_for(lambda: running(queries)
                 and len(delta_rows(settings, "events")) + len(delta_rows(settings, "quarantine")) >= total,
                 900, "every record landed")
        wait_for(lambda: end_offsets(queries[1]) == end_offsets(queries[0]) != {}, 120, "fast aggregation caught up")
        yield settings, sent, queries, run_ids, visible_after_s
    finally:
        for q in queries:
            q.stop()
        spark.stop()


def test_the_streams_never_restarted(run):
    _, _, queries, run_ids, _ = run
    assert [q.runId for q in queries] == run_ids
    assert all(q.isActive for q in queries)
    assert all(q.exception() is None for q in queries)


def test_the_validation_udf_ran_in_workers_forked_from_the_streams_daemon(run):
    """Every record above went through the validation UDF in Python workers
    forked from lakehouse.stream.python_daemon (the UDF's imports done once)."""
    def cmdline(proc):
        try:
            return " ".join(proc.cmdline())
        except psutil.Error:
            return ""

    daemons = {p.pid: p for p in psutil.Process().children(recursive=True)
               if "-m lakehouse.stream.python_daemon pyspark.worker" in cmdline(p)}
    workers = [p for p in daemons.values() if p.ppid() in daemons]
    assert workers, daemons


def test_fast_aggregation_validates_a_record_once(run, capsys):
    """One ArrowEvalPython in fast aggregation's stateless part: the validation
    UDF runs once per record. As a deterministic UDF, Spark pushed the
    `reason IS NULL` filter below the projection computing it and ran the UDF
    twice (two Python workers per task, twice the work)."""
    from pyspark.sql import SparkSession

    from lakehouse.stream.realtime import on_time_events
    from lakehouse.stream.source import validated

    settings = run[0]
    spark = SparkSession.builder.getOrCreate()  # the module's streams session
    kafka = spark.createDataFrame([(b"k", b"{}", "t", 0, 1, T0, 0)], "key binary, value binary, topic string, "
                                  "partition int, offset long, timestamp timestamp, timestampType int")
    on_time_events(validated(kafka), settings.realtime_future_skew_minutes).explain()
    plan = capsys.readouterr().out
    assert plan.count("ArrowEvalPython") == 1, plan


def test_bronze_and_quarantine_hold_exactly_the_committed_records_once(run):
    settings, sent, _, _, _ = run
    events, quarantine = delta_rows(settings, "events"), delta_rows(settings, "quarantine")
    coords = [(r["kafka_partition"], r["kafka_offset"]) for r in events + quarantine]
    assert len(coords) == len(set(coords)) == len(sent.events) + len(sent.bad)
    assert Counter(r["raw_payload"] for r in events) == Counter(json.dumps(e) for e in sent.events)
    assert Counter((r["raw_value"], reason_code(r["reason"])) for r in quarantine) == Counter(sent.bad)
    payloads = {r["raw_payload"] for r in events} | {r["raw_value"] for r in quarantine}
    assert not any(v.decode() in payloads for v in sent.aborted)
    assert {r["kafka_partition"] for r in events} == set(range(settings.kafka_partitions + 2))


def test_uuids_are_lower_case_in_bronze(run):
    settings, sent, _, _, _ = run
    ids = Counter(r["event_id"] for r in delta_rows(settings, "events"))
    assert all(i == i.lower() for i in ids)
    upper = next(e["event_id"] for e in sent.events if e["event_id"] != e["event_id"].lower())
    assert ids[upper.lower()] == 2  # two Kafka records, one event_id


def test_realtime_equals_independent_counts(run):
    """Each event_id once (compared in lower case), the future event left out, nothing late."""
    settings, sent, _, _, _ = run
    want = {"events_per_minute": Counter(), "logins_per_source": Counter(), "purchases_per_minute": Counter()}
    seen = set()
    for e in sent.events:
        ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        if e["event_id"].lower() in seen or ts > T0 + timedelta(hours=20):
            continue
        seen.add(e["event_id"].lower())
        w = ts.replace(second=0, microsecond=0)
        want["events_per_minute"][(w, e["event_type"])] += 1
        if e["event_type"] == "login":
            want["logins_per_source"][(w, e["source"])] += 1
        if e["event_type"] == "purchase":
            want["purchases_per_minute"][(w,)] += 1
    day = (T0, T0 + timedelta(hours=20))  # every on-time event; no other test's windows
    got = {t: Counter({k: v for k, v in c.items() if day[0] <= k[0] < day[1]})
           for t, c in realtime_rows(settings).items()}
    assert got == want


def test_the_future_event_is_in_bronze_counted_in_ops_and_did_not_stop_realtime(run):
    settings, sent, _, _, visible_after_s = run
    future = next(e for e in sent.events if e["timestamp"] > (T0 + timedelta(hours=20)).isoformat())
    assert future["event_id"] in {r["event_id"] for r in delta_rows(settings, "events")}
    # left out of realtime: no table has its window (test_realtime_equals_independent_counts
    # compares the hours of the on-time events only, so a counted future event went unseen there)
    window = datetime.fromisoformat(future["timestamp"].replace("Z", "+00:00")).replace(second=0, microsecond=0)
    assert [(t, k) for t, c in realtime_rows(settings).items() for k in c if k[0] == window] == []
    with psycopg2.connect(settings.pg_dsn("writer")) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(future_events), 0) FROM ops.stream_progress "
                    "WHERE query_name = 'fast-aggregation' AND end_offsets ? %s", (settings.kafka_topic,))
        assert cur.fetchone()[0] == 1
    conn.close()
    # within the freshness target (2 s p95) plus a trigger and a busy shared machine's slack
    assert visible_after_s < 30


def test_bronze_is_readable_by_delta_rs_with_the_plain_protocol(run):
    from deltalake import DeltaTable

    from lakehouse import catalog

    settings = run[0]
    for table in (catalog.BRONZE_EVENTS, catalog.BRONZE_QUARANTINE):
        dt = DeltaTable(table.path(settings))
        proto = dt.protocol()
        assert (proto.min_reader_version, proto.min_writer_version) == (1, 2)
        assert not proto.reader_features and not proto.writer_features
        assert dt.metadata().partition_columns == list(table.partition_by)
        assert dt.to_pyarrow_table().schema.names == table.schema.names
