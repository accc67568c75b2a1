"""Kafka as a Spark Structured Streaming source, written as a PySpark (4.2)
Python data source on kafka-python, because the Spark Kafka connector jars
cannot be loaded on these machines (DESIGN.md).

    from lakehouse.kafka_source import register
    register(spark)
    df = (spark.readStream.format("lakehouse_kafka")
          .option("bootstrap.servers", "127.0.0.1:19092").option("subscribe", "user-events")
          .option("startingOffsets", "earliest")      # or "latest", or {"topic": {"0": 42}}
          .option("maxOffsetsPerTrigger", "200000")   # records per micro-batch, all partitions
          .option("failOnDataLoss", "true")
          .load())

Columns, as Spark's own Kafka source: key binary, value binary, topic string,
partition int, offset long, timestamp timestamp (the Kafka record timestamp).

Offsets. A micro-batch is the range [start, end) of every partition; Spark
keeps both ends, as JSON ``{"<topic>": {"<partition>": <next offset>}}``, in
the query's checkpoint, so a replayed batch reads exactly the same records and
a restarted query resumes where the last committed batch ended. One Spark input
partition per Kafka partition with records in the range.

End offsets are high watermarks taken from a Fetch response, not from
ListOffsets: Tansu answers ListOffsets "latest" with the base offset of the
last record batch, which would leave the last batch unread until more data
arrives. The probe seeks to the ListOffsets answer and fetches once, so it
reads at most one batch; on Apache Kafka, whose ListOffsets is right, the fetch
is empty and returns the same number.

Data loss. If a checkpointed offset lies beyond the partition's high watermark
(the broker restarted empty, or the topic was recreated), before its earliest
offset (records deleted), or a partition disappeared, the query fails with a
message naming topic, partition and offsets -- like Spark's
``failOnDataLoss=true``. With ``failOnDataLoss=false`` it logs a warning and
continues from the earliest offset. (As with Spark's source, a topic that was
recreated and has already grown past the old offset cannot be told apart.)

Extra options: ``minPartitions`` (cut the ranges of a batch into about this
many Spark tasks; e.g. 4 or 6 with local[2] and 3 Kafka partitions),
``fetchMaxBytes`` (per partition and Fetch, default 16 MiB),
``pollTimeoutMs`` (the broker's max wait per Fetch), ``readTimeoutSeconds``
(how long a read may make no progress), ``arrowBatchRows`` (rows per Arrow
batch handed to Spark), ``kafka.<kafka-python consumer setting>`` for the
driver's metadata consumer.

Records are fetched with raw Fetch requests and decoded by
``lakehouse.kafka_wire`` (5x faster than KafkaConsumer.poll()).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from lakehouse.kafka_wire import OFFSET_OUT_OF_RANGE, FetchClient, Records, decode_batches
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow

log = logging.getLogger(__name__)

SHORT_NAME = "lakehouse_kafka"
#: The columns, as DDL (spark_schema() builds the same without a session; a test checks).
SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"

#: The driver's consumer asks only for metadata and ListOffsets: no group, no commits.
DRIVER_CONSUMER_CONFIG = dict(group_id=None, enable_auto_commit=False, request_timeout_ms=30_000,
                              metadata_max_age_ms=5_000)
#: Bytes per partition per Fetch while reading a range (option fetchMaxBytes).
FETCH_PARTITION_MAX_BYTES = 16 * 1024 * 1024

Offsets = dict[int, int]  # partition -> next offset to read


class DataLossError(RuntimeError):
    """Offsets in the checkpoint that the broker no longer has."""


# --- options -----------------------------------------------------------------
@dataclass(frozen=True)
class KafkaOptions:
    bootstrap_servers: list[str]
    topic: str
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    fail_on_data_loss: bool = True
    poll_timeout_ms: int = 500
    read_timeout_s: float = 120.0
    arrow_batch_rows: int = 50_000
    fetch_max_bytes: int = FETCH_PARTITION_MAX_BYTES
    min_partitions: int | None = None
    consumer: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> KafkaOptions:
        opts = {str(k).lower(): v for k, v in options.items()}
        servers = opts.get("bootstrap.servers") or opts.get("kafka.bootstrap.servers")
        topic = opts.get("subscribe")
        if not servers or not topic:
            raise ValueError(f"{SHORT_NAME}: options 'bootstrap.servers' and 'subscribe' are required")
        if "," in topic or "assign" in opts or "subscribepattern" in opts:
            raise ValueError(f"{SHORT_NAME}: exactly one topic in 'subscribe' is supported, got {topic!r}")
        max_offsets = opts.get("maxoffsetspertrigger")
        if max_offsets is not None and int(max_offsets) < 1:
            raise ValueError(f"{SHORT_NAME}: maxOffsetsPerTrigger must be >= 1, got {max_offsets}")
        fail = str(opts.get("failondataloss", "true")).strip().lower()
        if fail not in ("true", "false"):
            raise ValueError(f"{SHORT_NAME}: failOnDataLoss must be true or false, got {fail!r}")
        starting = opts.get("startingoffsets", "earliest").strip()
        parse_starting_offsets(starting, topic)  # validate early, on the driver
        consumer = {
            k.removeprefix("kafka.").replace(".", "_"): _number(v)
            for k, v in opts.items()
            if k.startswith("kafka.") and k != "kafka.bootstrap.servers"
        }
        return cls(
            bootstrap_servers=[s.strip() for s in servers.split(",") if s.strip()],
            topic=topic,
            starting_offsets=starting,
            max_offsets_per_trigger=int(max_offsets) if max_offsets is not None else None,
            fail_on_data_loss=fail == "true",
            poll_timeout_ms=int(opts.get("polltimeoutms", 500)),
            read_timeout_s=float(opts.get("readtimeoutseconds", 120)),
            arrow_batch_rows=int(opts.get("arrowbatchrows", 50_000)),
            fetch_max_bytes=int(opts.get("fetchmaxbytes", FETCH_PARTITION_MAX_BYTES)),
            min_partitions=int(opts["minpartitions"]) if opts.get("minpartitions") else None,
            consumer=consumer,
        )


def _number(value: str):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


# --- pure offset logic (unit-tested without a broker) -------------------------
def parse_starting_offsets(value: str, topic: str) -> str | Offsets:
    """"earliest", "latest", or a JSON {"topic": {"partition": offset}} where
    -2 means earliest and -1 latest for that partition."""
    if value.lower() in ("earliest", "latest"):
        return value.lower()
    try:
        parsed = json.loads(value)
        return {int(p): int(o) for p, o in parsed[topic].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{SHORT_NAME}: startingOffsets must be earliest, latest or "
            f'{{"{topic}": {{"0": 42}}}}, got {value!r}'
        ) from exc


def to_json_offsets(topic: str, offsets: Offsets) -> dict:
    return {topic: {str(p): int(o) for p, o in sorted(offsets.items())}}


def from_json_offsets(topic: str, offsets: dict) -> Offsets:
    return {int(p): int(o) for p, o in offsets.get(topic, {}).items()}


def allocate(available: Offsets, max_rows: int | None) -> Offsets:
    """Split a budget of `max_rows` records over partitions in proportion to
    what each has available (largest remainder, so the sum is exactly the
    budget when there is more than that, and every partition with a share
    of at least one record moves). None = no cap."""
    total = sum(available.values())
    if max_rows is None or total <= max_rows:
        return dict(available)
    shares = {p: max_rows * n / total for p, n in available.items()}
    out = {p: int(s) for p, s in shares.items()}
    left = max_rows - sum(out.values())
    for p in sorted(shares, key=lambda p: (out[p] - shares[p], p))[:left]:
        out[p] += 1
    return out


def split_ranges(ranges: list[tuple[int, int, int]], min_partitions: int | None) -> list[tuple[int, int, int]]:
    """(partition, start, end) ranges cut into about `min_partitions` pieces in
    proportion to their size, so the Spark tasks of a batch are even (three
    Kafka partitions on two cores otherwise leave one core idle half the
    time). Like Spark's Kafka option minPartitions; None keeps one per partition."""
    total = sum(e - s for _, s, e in ranges)
    if not min_partitions or len(ranges) >= min_partitions or total == 0:
        return ranges
    out = []
    for p, s, e in ranges:
        k = max(1, min(e - s, round(min_partitions * (e - s) / total)))
        cuts = [s + (e - s) * i // k for i in range(k + 1)]
        out += [(p, a, b) for a, b in zip(cuts, cuts[1:])]
    return out


@dataclass
class Resolution:
    """Where each partition's next batch starts, after data-loss checks."""

    start: Offsets
    problems: list[str]
    reset: set[int]


def resolve_start(
    topic: str, start: Offsets, earliest: Offsets, latest: Offsets
) -> Resolution:
    """Compare checkpointed offsets with what the broker has now.

    New partitions start at their earliest offset. Problems (offsets gone
    backwards, records deleted, partitions gone) are described per partition;
    the caller fails or warns. A reset partition starts at its earliest."""
    out, problems, reset = {}, [], set()
    for p in sorted(latest):
        s = start.get(p)
        if s is None:
            out[p] = earliest[p]
        elif s > latest[p]:
            problems.append(
                f"partition {topic}-{p}: checkpointed offset {s} is beyond the broker's high watermark "
                f"{latest[p]} (offsets went backwards: broker restarted empty or topic recreated)"
            )
            out[p], _ = earliest[p], reset.add(p)
        elif s < earliest[p]:
            problems.append(
                f"partition {topic}-{p}: checkpointed offset {s} is before the earliest available offset "
                f"{earliest[p]} (records {s}..{earliest[p] - 1} were deleted before they were read)"
            )
            out[p], _ = earliest[p], reset.add(p)
        else:
            out[p] = s
    for p in sorted(set(start) - set(latest)):
        problems.append(f"partition {topic}-{p} (checkpointed offset {start[p]}) no longer exists")
    return Resolution(out, problems, reset)


def data_loss_message(problems: list[str]) -> str:
    return (
        f"{SHORT_NAME}: data loss detected: " + "; ".join(problems) + ". Some records may never be "
        "read. If this is expected (e.g. the in-memory Tansu broker restarted), rerun with option "
        "failOnDataLoss=false to continue from the earliest offsets, or start from a new checkpoint."
    )


# --- broker access (driver side) ---------------------------------------------
class _Broker:
    """Offsets of one topic as the broker has them now."""

    def __init__(self, opts: KafkaOptions) -> None:
        from kafka import KafkaConsumer

        config = dict(DRIVER_CONSUMER_CONFIG)
        config.update(opts.consumer)
        self.topic = opts.topic
        self.timeout_s = max(10.0, opts.poll_timeout_ms / 1000 * 20)
        self.consumer = KafkaConsumer(bootstrap_servers=opts.bootstrap_servers, **config)
        self.fetcher = FetchClient(opts.bootstrap_servers, opts.topic)

    def partitions(self) -> list[int]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            found = self.consumer.partitions_for_topic(self.topic)
            if found:
                return sorted(found)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{SHORT_NAME}: topic {self.topic!r} does not exist on the broker")
            self.consumer._client.cluster.request_update()  # noqa: SLF001 -- refresh metadata now
            time.sleep(0.2)

    def _tps(self, partitions):
        from kafka import TopicPartition

        return [TopicPartition(self.topic, p) for p in partitions]

    def earliest(self, partitions: list[int]) -> Offsets:
        got = self.consumer.beginning_offsets(self._tps(partitions))
        return {tp.partition: int(o) for tp, o in got.items()}

    def high_watermarks(self, partitions: list[int]) -> Offsets:
        """The true end of each partition: the high watermark of a Fetch at
        the offset ListOffsets gives (see the module docstring)."""
        for attempt in range(3):  # the log may be truncated between the two requests
            listed = {tp.partition: int(o) for tp, o in self.consumer.end_offsets(self._tps(partitions)).items()}
            got = self.fetcher.fetch(listed, partition_max_bytes=64 * 1024, max_wait_ms=1, min_bytes=0)
            bad = {p: r.error_code for p, r in got.items() if r.error_code}
            if not bad:
                return {p: max(int(r.high_watermark), listed[p]) for p, r in got.items()}
            if set(bad.values()) != {OFFSET_OUT_OF_RANGE} or attempt == 2:
                p, code = next(iter(bad.items()))
                raise _kafka_error(code, f"fetching the high watermark of {self.topic}-{p} at {listed[p]}")
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.consumer.close()
        self.fetcher.close()


# --- the data source -----------------------------------------------------------
class KafkaPartition(InputPartition):
    """Records [start, end) of one Kafka partition: one Spark task."""

    def __init__(self, topic: str, partition: int, start: int, end: int) -> None:
        super().__init__((topic, partition, start, end))
        self.topic, self.partition, self.start, self.end = topic, partition, start, end


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, opts: KafkaOptions) -> None:
        self.opts = opts
        self._broker: _Broker | None = None  # driver only, created on first use
        self._target: Offsets | None = None  # Trigger.AvailableNow: stop here
        self._latest: Offsets | None = None

    def __getstate__(self):  # never ship the driver's consumer to workers
        return {"opts": self.opts, "_broker": None, "_target": None, "_latest": None}

    @property
    def broker(self) -> _Broker:
        if self._broker is None:
            self._broker = _Broker(self.opts)
        return self._broker

    # offsets ----------------------------------------------------------------
    def initialOffset(self) -> dict:
        topic, b = self.opts.topic, self.broker
        parts = b.partitions()
        starting = parse_starting_offsets(self.opts.starting_offsets, topic)
        if starting == "earliest":
            return to_json_offsets(topic, b.earliest(parts))
        if starting == "latest":
            return to_json_offsets(topic, b.high_watermarks(parts))
        earliest, latest = b.earliest(parts), b.high_watermarks(parts)
        chosen = {p: starting.get(p, -2) for p in parts}
        return to_json_offsets(
            topic, {p: earliest[p] if o == -2 else latest[p] if o == -1 else o for p, o in chosen.items()}
        )

    def getDefaultReadLimit(self) -> ReadLimit:
        from pyspark.sql.streaming.datasource import ReadAllAvailable

        n = self.opts.max_offsets_per_trigger
        return ReadMaxRows(n) if n else ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        b = self.broker
        self._target = b.high_watermarks(b.partitions())

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        topic, b = self.opts.topic, self.broker
        parts = b.partitions()
        latest = b.high_watermarks(parts)
        self._latest = dict(latest)
        if self._target is not None:
            latest = {p: min(o, self._target.get(p, o)) for p, o in latest.items()}
        res = resolve_start(topic, from_json_offsets(topic, start), b.earliest(parts), latest)
        if res.problems:
            if self.opts.fail_on_data_loss:
                raise DataLossError(data_loss_message(res.problems))
            log.warning("%s; continuing from the earliest offsets (failOnDataLoss=false)",
                        data_loss_message(res.problems))
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        # A reset partition first gets an empty batch ending at its earliest
        # offset, so the next batch starts there cleanly (and replays alike).
        available = {p: latest[p] - s for p, s in res.start.items() if p not in res.reset}
        grant = allocate(available, max_rows)
        end = {p: res.start[p] + grant.get(p, 0) for p in res.start}
        return to_json_offsets(topic, end)

    def reportLatestOffset(self) -> dict | None:
        return to_json_offsets(self.opts.topic, self._latest) if self._latest is not None else None

    def partitions(self, start: dict, end: dict) -> list[KafkaPartition]:
        topic = self.opts.topic
        s, e = from_json_offsets(topic, start), from_json_offsets(topic, end)
        out = []
        for p, stop in sorted(e.items()):
            first = s.get(p)
            if first is None:  # a partition that appeared since the last batch
                first = self.broker.earliest([p])[p]
            if first > stop:  # an empty reset batch (data loss, failOnDataLoss=false)
                continue
            if stop > first:
                out.append((p, first, stop))
        return [KafkaPartition(topic, p, a, b) for p, a, b in split_ranges(out, self.opts.min_partitions)]

    def commit(self, end: dict) -> None:
        """Spark keeps the offsets in its checkpoint; nothing is committed to Kafka."""

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None

    # reading (on the executors) -------------------------------------------------
    def read(self, partition: KafkaPartition) -> Iterator:
        yield from read_range(self.opts, partition)


class KafkaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return SHORT_NAME

    def schema(self):
        return spark_schema()

    def streamReader(self, schema) -> KafkaStreamReader:
        return KafkaStreamReader(KafkaOptions.parse(self.options))


def register(spark) -> None:
    """Make `spark.readStream.format("lakehouse_kafka")` available."""
    spark.dataSource.register(KafkaDataSource)


# --- reading one range -----------------------------------------------------------
def spark_schema():
    from pyspark.sql.types import (
        BinaryType, IntegerType, LongType, StringType, StructField, StructType, TimestampType,
    )

    return StructType([
        StructField("key", BinaryType()), StructField("value", BinaryType()),
        StructField("topic", StringType()), StructField("partition", IntegerType()),
        StructField("offset", LongType()), StructField("timestamp", TimestampType()),
    ])


def arrow_schema():
    """The Arrow form of SCHEMA, as Spark expects batches from read()."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(spark_schema(), timezone="UTC")


def _kafka_error(code: int, doing: str) -> Exception:
    from kafka.errors import for_code

    return for_code(code)(f"{SHORT_NAME}: error {code} {doing}")


def raw_batch(part: KafkaPartition, rec: Records):
    """Decoded records as one Arrow batch of SCHEMA (the columns of Spark's Kafka source)."""
    import pyarrow as pa

    schema = arrow_schema()
    n = len(rec)
    arrays = [
        pa.array(rec.keys, pa.binary()),
        pa.array(rec.values, pa.binary()),
        pa.repeat(pa.scalar(part.topic, pa.string()), n),
        pa.repeat(pa.scalar(part.partition, pa.int32()), n),
        pa.array(rec.offsets, pa.int64()),
        pa.array(rec.timestamps, pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(schema.field("timestamp").type),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def read_range(opts: KafkaOptions, part: KafkaPartition, to_batch=raw_batch) -> Iterator:
    """Yield the records [part.start, part.end) as Arrow record batches of at
    most opts.arrow_batch_rows records, each built by `to_batch(part, records)`."""
    rec = Records.empty()
    max_bytes = opts.fetch_max_bytes

    def batch():
        out = to_batch(part, rec)
        rec.clear()
        return out

    client = FetchClient(opts.bootstrap_servers, part.topic)
    try:
        nxt, last_progress = part.start, time.monotonic()
        while nxt < part.end:
            r = client.fetch({part.partition: nxt}, partition_max_bytes=max_bytes,
                             max_wait_ms=opts.poll_timeout_ms)[part.partition]
            where = f"partition {part.topic}-{part.partition} at offset {nxt} while reading [{part.start}, {part.end})"
            if r.error_code == OFFSET_OUT_OF_RANGE or (not r.records and 0 <= r.high_watermark <= nxt):
                problem = (f"{where}: offset out of range on the broker (log start {r.log_start_offset}, "
                           f"high watermark {r.high_watermark})")
                if opts.fail_on_data_loss:
                    raise DataLossError(data_loss_message([problem]))
                if nxt < r.log_start_offset < part.end:
                    log.warning("%s; skipping to the earliest offset %s (failOnDataLoss=false)",
                                problem, r.log_start_offset)
                    nxt = r.log_start_offset
                    continue
                log.warning("%s; ending this range early (failOnDataLoss=false)", problem)
                break
            if r.error_code:
                raise _kafka_error(r.error_code, where)
            after = decode_batches(r.records, rec, nxt, part.end)
            if after > nxt:
                nxt, last_progress = after, time.monotonic()
            elif r.records:  # a batch larger than the fetch size: ask for more
                max_bytes = min(2 * max_bytes, client.max_response_bytes)
            if len(rec) >= opts.arrow_batch_rows:
                yield batch()
            if time.monotonic() - last_progress > opts.read_timeout_s:
                raise TimeoutError(f"{SHORT_NAME}: no progress at {where} for {opts.read_timeout_s:.0f}s")
        if len(rec):
            yield batch()
    finally:
        client.close()
