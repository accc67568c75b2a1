"""The streams application: one Spark session for the queries, the
checkpoint's query id, and a graceful stop on SIGINT/SIGTERM.

Graceful stop: the signal handler only sets a flag. The main thread then waits
until no trigger is running and stops the query between micro-batches, so no
batch is cut in half. A batch that starts after the flag is set raises
`StopRequested` before writing anything: Spark does not commit it, and the
next run replays it. (Exactly once does not depend on this: Delta commits are
keyed by batch id and the realtime upserts are idempotent; a graceful stop
just avoids the replay.)

Data loss: when Kafka no longer holds the offsets a checkpoint points at and
STREAM_FAIL_ON_DATA_LOSS is true, the query fails with Spark's data-loss
message. Restarting cannot fix that, so the application logs what to do and
exits with DATA_LOSS_EXIT_CODE, which the process manager takes as a stop
(`make status`: EXITED), not as a crash to restart. So do a checkpoint of
another topic (KAFKA_TOPIC changed), refused before its query starts, and
STREAM_STARTING_OFFSETS that Spark refuses for a new checkpoint (it must name
every partition).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path

from pyspark.sql.streaming import StreamingQuery

from lakehouse.stream import DATA_LOSS_EXIT_CODE

log = logging.getLogger(__name__)


#: Spark settings of the streaming application, measured on 2 cores with both
#: queries catching up on 300k records (scripts/profile_streams.py): with
#: SPARK_JAVA_OPTIONS (SerialGC, C1-only JIT) the JVM's peak went from ~980 to
#: ~700 MB and its CPU down a fifth at the same throughput (two cores: G1's and
#: C2's threads compete with the work); the dedup state lives in RocksDB with
#: bounded memory, off the 512 MB heap, so a high event rate grows disk, not
#: heap. A checkpoint keeps the state store it was created with.
STREAMING_SPARK_CONF = {
    "spark.sql.streaming.stateStore.providerClass":
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
    "spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB": "64",
    # Each query runs its jobs in a scheduler pool of its own (run_streaming_job),
    # so fast aggregation's small batches share the cores with raw landing's
    # large ones instead of queueing behind them (realtime freshness).
    "spark.scheduler.mode": "FAIR",
    # Checkpoint files (offset and commit logs, RocksDB changelogs: several per
    # micro-batch) are renamed into place through Hadoop's FileSystem API, not
    # its FileContext API: on a local disk FileContext's rename looks up
    # symlinks by running `readlink` in a child process (Hadoop's
    # RawLocalFileSystem), a fork of this JVM per file. The same atomic POSIX
    # rename, a tenth of a core less at 200 events/s (docs/performance.md).
    "spark.sql.streaming.checkpointFileManagerClass":
        "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
    # Raw landing compacts bronze's closed dates in this JVM (lakehouse.stream.bronze.compact).
    # OPTIMIZE writes a file per bin, and Parquet buffers a whole row group per
    # file being written: with Delta's 1 GB files and Parquet's 128 MB row
    # groups, two tasks compacting a day of 17 M events ran the 512 MB heap
    # out of memory (a crash loop: every start compacts). With 256 MB files
    # and 32 MB row groups: 432 s, JVM peak 863 MB PSS (docs/performance.md).
    "spark.databricks.delta.optimize.maxFileSize": str(256 * 1024 * 1024),
    "spark.hadoop.parquet.block.size": str(32 * 1024 * 1024),
    # Python workers are forked from a daemon that has already imported the
    # validation UDF's modules (lakehouse.stream.python_daemon): a new worker
    # starts at once and the workers share those pages.
    "spark.python.daemon.module": "lakehouse.stream.python_daemon",
}


DATA_LOSS_ADVICE = (
    "%s stopped: Kafka no longer holds records its checkpoint has not read (the topic was deleted and "
    "created again, its log replaced, or retention deleted them first). Restarting would fail the same way, "
    "so the streams stay stopped (exit code %d; `make status` shows streams EXITED). Either move the "
    "checkpoints away to start afresh, or set STREAM_FAIL_ON_DATA_LOSS=false in .env to skip the lost offsets "
    "(Spark's source option failOnDataLoss); then `make down && make up`. Bronze keeps everything it landed. "
    "docs/troubleshooting.md, 'A stream fails with data loss'. Spark's message: %s"
)


STARTING_OFFSETS_ADVICE = (
    "%s stopped: STREAM_STARTING_OFFSETS names some of the topic's partitions, and Spark's startingOffsets "
    "must name every one (-2 for earliest, -1 for latest where you don't care). Restarting would fail the "
    "same way, so the streams stay stopped (exit code %d; `make status` shows streams EXITED). Name every "
    "partition, or set earliest, in .env (it only applies to a new checkpoint); then `make down && make up`. "
    "Spark's message: %s"
)


def is_starting_offsets_error(exc: BaseException) -> bool:
    """Spark's refusal of startingOffsets JSON that leaves out partitions of
    the topic (its Kafka source asserts it names them all)."""
    return "you must specify all TopicPartitions" in str(exc)


def is_data_loss(exc: BaseException) -> bool:
    """A query failure that is Spark's Kafka data-loss error (its message asks
    for the source option failOnDataLoss)."""
    return "failOnDataLoss" in str(exc)


#: Query failures a restart cannot fix, each with what to do: the application
#: logs it and exits with DATA_LOSS_EXIT_CODE.
FINAL_FAILURES = ((is_data_loss, DATA_LOSS_ADVICE), (is_starting_offsets_error, STARTING_OFFSETS_ADVICE))


class StopRequested(RuntimeError):
    """Raised by a micro-batch that began after a stop was requested."""


class CheckpointOfAnotherTopic(RuntimeError):
    """A query's checkpoint holds offsets of another topic than KAFKA_TOPIC."""


TOPIC_CHANGED = (
    "{query} not started: its checkpoint {checkpoint} holds offsets of topic {seen}, and KAFKA_TOPIC is "
    "{topic}. A checkpoint belongs to the topic it reads (Spark does not support changing a query's topic): "
    "started, the query would log {topic}'s offsets as the next batch of the old topic's and then fail on "
    "data loss at every start, even with KAFKA_TOPIC set back. Set KAFKA_TOPIC back, or read {topic} with "
    "new checkpoints: `make down`, move {checkpoints} aside (e.g. `mv {checkpoints} {checkpoints}.old-topic`), "
    "`make up`; a new checkpoint starts at STREAM_STARTING_OFFSETS. Bronze and realtime keep what they hold. "
    "The streams stay stopped (exit code {code}; `make status` shows streams EXITED)."
)


def checkpoint_topics(checkpoint: str | Path) -> set[str]:
    """The Kafka topics in a checkpoint's offset log: those of its newest
    entry (the batch planned last, which a restart runs again) and of its
    newest committed batch. Spark's `offsets/<batch id>` files hold a version
    line, the batch's metadata, then one line per source: the Kafka source's
    offsets as {"topic": {"partition": offset}}. Empty for a new checkpoint."""
    root = Path(checkpoint)

    def newest(sub: str) -> int | None:
        ids = [int(p.name) for p in (root / sub).glob("*") if p.name.isdigit()]
        return max(ids) if ids else None

    topics: set[str] = set()
    for batch in {newest("offsets"), newest("commits")} - {None}:
        path = root / "offsets" / str(batch)
        if path.is_file():
            for line in path.read_text().splitlines()[2:]:
                if line.startswith("{"):
                    topics |= set(json.loads(line))
    return topics


def require_topic(query: str, checkpoint: str | Path, settings) -> None:
    """Refuse to start `query` on a checkpoint of another topic (KAFKA_TOPIC
    changed): Spark would log the new topic's offsets as the checkpoint's next
    batch, and that batch, replayed at every start, fails on data loss."""
    seen = checkpoint_topics(checkpoint)
    if seen and seen != {settings.kafka_topic}:
        raise CheckpointOfAnotherTopic(TOPIC_CHANGED.format(
            query=query, checkpoint=checkpoint, seen=", ".join(sorted(seen)), topic=settings.kafka_topic,
            checkpoints=Path(checkpoint).parent, code=DATA_LOSS_EXIT_CODE))


def checkpoint_query_id(checkpoint: str | Path) -> str:
    """The query id Spark keeps in the checkpoint (stable across restarts of
    that checkpoint; a new checkpoint gets a new id)."""
    return json.loads((Path(checkpoint) / "metadata").read_text().splitlines()[0])["id"]


class GracefulStop:
    """Installs SIGINT/SIGTERM handlers that request a stop between batches.
    Install after the SparkContext exists: pyspark replaces the SIGINT handler."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    def install(self) -> GracefulStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        log.warning("signal %s: stopping after the current micro-batch", signum)
        self.requested.set()

    def check(self) -> None:
        """Call at the start of a micro-batch, before any write."""
        if self.requested.is_set():
            raise StopRequested("stop requested; this batch will be replayed by the next run")

    def run(self, queries: list[StreamingQuery], max_wait_s: float = 120.0) -> None:
        """Block until a stop is requested or any query ends; then stop every
        query between its batches. Re-raises a query failure that was not our
        stop (the process manager restarts the application; each query resumes
        from its checkpoint)."""
        while all(q.isActive for q in queries) and not self.requested.is_set():
            self.requested.wait(0.5)
        self.requested.set()  # one query ended: no new batch starts in the others either
        for query in queries:
            if query.isActive:
                deadline = time.monotonic() + max_wait_s
                while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
                    time.sleep(0.05)
                query.stop()
            log.info("query %s stopped", query.name)
        for query in queries:
            exc = query.exception()
            if exc is None:
                continue
            if StopRequested.__name__ not in str(exc):
                raise exc
            log.info("query %s: the micro-batch it began after the stop request wrote nothing (the "
                     "StopRequested error above); the next start runs it again", query.name)


def streams_session(settings, app_name: str, *, serve_spark_connect: bool = False):
    """The streams application's Spark session: lakehouse.spark's session with
    STREAMING_SPARK_CONF and STREAMS_JAVA_OPTIONS. Tests that run the queries
    in-process use it too. `serve_spark_connect`: the application also serves
    Spark Connect to the DAG (lakehouse.platform.spark_connect.plugin_conf),
    whose sessions share this JVM, its heap and its task slots (the DAG's jobs
    in FAIR's default pool, beside each query's own)."""
    from lakehouse.platform import spark_connect
    from lakehouse.spark import spark_session

    conf = {**STREAMING_SPARK_CONF, **(spark_connect.plugin_conf(settings) if serve_spark_connect else {})}
    return spark_session(settings, app_name, java_options=settings.streams_java_options, **conf)


#: Loggers the streams set quieter than Spark's WARN: Spark warns at every
#: micro-batch that takes longer than its trigger interval (fast aggregation's
#: 0.5 s, whenever events keep coming faster than that: several lines a second
#: at 200 events/s, the log's bulk). How far a query is behind is its
#: progress's (ops.stream_progress, `make status`, the dashboard).
QUIET_JVM_LOGGERS = {"org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor": "ERROR"}


def quiet_logs(spark) -> None:
    """The streams' log says what happens, not every micro-batch: py4j logs each
    callback (one per micro-batch and query) at INFO; QUIET_JVM_LOGGERS."""
    logging.getLogger("py4j").setLevel(logging.WARNING)
    jvm = spark.sparkContext._jvm
    for name, level in QUIET_JVM_LOGGERS.items():
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            name, jvm.org.apache.logging.log4j.Level.getLevel(level))


def run_streaming_job(app_name: str, starts: dict, target: str) -> None:
    """Entry point shared by the streaming jobs: one Spark session, the
    graceful-stop handler, the progress listener, the queries, then block
    until stopped. `starts` maps each query name to its `start(spark,
    settings, stop)`; several queries share the application (one JVM)."""
    from lakehouse.platform import spark_connect
    from lakehouse.stream.progress import ProgressRecorder
    from lakehouse.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    spark = streams_session(settings, app_name, serve_spark_connect=spark_connect.in_streams(settings))
    quiet_logs(spark)
    stop = GracefulStop().install()  # after Spark: its SparkContext installs a SIGINT handler of its own
    spark.streams.addListener(ProgressRecorder(settings.pg_dsn("writer"), list(starts)))
    queries = []
    try:
        for name, start in starts.items():
            # The query's thread inherits the pool from the thread that starts it.
            spark.sparkContext.setLocalProperty("spark.scheduler.pool", name)
            queries.append(start(spark, settings, stop))
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)
        log.info("%s started: topic %s -> %s", ", ".join(starts), settings.kafka_topic, target)
        stop.run(queries)
    except CheckpointOfAnotherTopic as exc:
        stop.requested.set()
        stop.run(queries)  # a query started before it: stopped between its batches
        log.error("%s", exc)
        raise SystemExit(DATA_LOSS_EXIT_CODE) from None
    except Exception as exc:
        for matches, advice in FINAL_FAILURES:
            if matches(exc):
                failed = ", ".join(q.name for q in queries if q.exception() is not None and matches(q.exception()))
                log.error(advice, failed or app_name, DATA_LOSS_EXIT_CODE, exc)
                raise SystemExit(DATA_LOSS_EXIT_CODE) from None
        raise
    finally:
        spark.stop()
