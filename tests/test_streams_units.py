"""Pure parts of the streams: progress rows, lag, realtime table rows, what the
validation UDF brings into a Python worker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from lakehouse.stream.progress import lag, progress_row
from lakehouse.stream.realtime import table_rows, utc_instant

W = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def test_lag_sums_partitions_behind_the_high_watermark():
    end = {"t": {"0": 10, "1": 5}}
    assert lag(end, {"t": {"0": 12, "1": 5, "2": 3}}) == 2 + 0 + 3
    assert lag(end, {}) is None


def test_progress_row_from_spark_progress_json():
    progress = {
        "id": "9a1c-query", "runId": "r-1", "name": "raw-landing", "batchId": 7, "numInputRows": 400,
        "processedRowsPerSecond": 800.5,
        "durationMs": {"triggerExecution": 512, "addBatch": 300},
        "sources": [{"endOffset": json.dumps({"t": {"0": 100}}), "latestOffset": json.dumps({"t": {"0": 130}}),
                     "metrics": {"avgOffsetsBehindLatest": "30.0", "maxOffsetsBehindLatest": "30",
                                 "minOffsetsBehindLatest": "30"}}],
        "observedMetrics": {"future_skew": {"future_events": 2}},
    }
    assert progress_row(progress) == ("raw-landing", 7, 400, 800.5, 512, json.dumps({"t": {"0": 100}}), 30,
                                      30.0, 30, 2, "9a1c-query")
    idle = dict(progress, numInputRows=0, processedRowsPerSecond=float("nan"), observedMetrics={})
    idle["sources"] = [dict(progress["sources"][0], metrics={"avgOffsetsBehindLatest": "NaN"})]
    assert progress_row(idle)[2:4] == (0, None)
    assert progress_row(idle)[7:] == (None, None, None, "9a1c-query")


def test_window_starts_are_utc_instants_whatever_the_local_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        assert utc_instant(int(W.timestamp() * 1_000_000)) == W
        assert utc_instant(0).utcoffset().total_seconds() == 0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_table_rows_unpivots_a_window_and_leaves_out_zero_counts():
    window = {"window_start": W, "n_login": 3, "n_click": 10, "n_purchase": 0, "n_logout": 1,
              "logins_web": 2, "logins_mobile": 1}
    rows = table_rows([window])
    assert sorted(rows["events_per_minute"]) == [(W, "click", 10), (W, "login", 3), (W, "logout", 1)]
    assert sorted(rows["logins_per_source"]) == [(W, "mobile", 1), (W, "web", 2)]
    assert rows["purchases_per_minute"] == []
    assert table_rows([dict(window, n_purchase=4)])["purchases_per_minute"] == [(W, 4)]


def test_kafka_options_reach_the_source_and_survive_the_stack_env_file(tmp_path):
    """KAFKA_OPTIONS: JSON in the environment and in the launcher's stack.env;
    each entry becomes kafka.<key> (prefix optional) and may override the defaults."""
    from lakehouse.platform.stack import load_stack_settings, write_stack_env
    from lakehouse.settings import Settings
    from lakehouse.stream.source import kafka_options

    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";'
    settings = Settings(_env_file=None, lakehouse_run_dir=tmp_path, kafka_options={
        "security.protocol": "SASL_SSL", "sasl.jaas.config": jaas, "kafka.isolation.level": "read_uncommitted"})
    write_stack_env(settings)
    again = load_stack_settings(tmp_path)
    assert again.kafka_options == settings.kafka_options
    opts = kafka_options(again)
    assert opts["kafka.security.protocol"] == "SASL_SSL" and opts["kafka.sasl.jaas.config"] == jaas
    assert opts["kafka.isolation.level"] == "read_uncommitted"
    assert kafka_options(Settings(_env_file=None))["kafka.isolation.level"] == "read_committed"
    assert Settings(_env_file=None, kafka_options='{"a": "b"}').kafka_options == {"a": "b"}


def test_raw_landing_batching_options():
    """Raw landing waits for STREAM_MIN_RECORDS_PER_BATCH records or
    STREAM_MAX_BATCH_DELAY_SECONDS (Spark's minOffsetsPerTrigger and
    maxTriggerDelay); 0 turns the wait off. Fast aggregation never waits."""
    from lakehouse.settings import Settings
    from lakehouse.stream.source import batching_options, kafka_options

    # the defaults: about one Delta commit a minute below ~800 events/s (docs/streaming.md, "Bronze's log")
    assert batching_options(Settings(_env_file=None)) == {"minOffsetsPerTrigger": "50000", "maxTriggerDelay": "60000ms"}
    assert batching_options(Settings(_env_file=None, stream_min_records_per_batch=500,
                                     stream_max_batch_delay_seconds=2.5)) == {
        "minOffsetsPerTrigger": "500", "maxTriggerDelay": "2500ms"}
    assert batching_options(Settings(_env_file=None, stream_min_records_per_batch=0)) == {}
    assert "minOffsetsPerTrigger" not in kafka_options(Settings(_env_file=None))


def _fresh_python(code: str, env: dict[str, str] | None = None):
    """What `code` prints as JSON, run in a fresh interpreter of this venv, from the repository
    (with `env` as its environment when given)."""
    from lakehouse.settings import REPO_ROOT

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                         env=env)
    return json.loads(out.stdout)


def test_the_validation_udf_brings_only_lakehouse_validation_into_a_worker():
    """Spark's Python worker unpickles the UDF's function by reference: it is
    lakehouse.validation's, so a worker imports neither the settings (pydantic)
    nor the streaming code, and the streams' daemon (lakehouse.stream.python_daemon)
    has imported everything it needs before forking."""
    from pyspark import cloudpickle

    from lakehouse.stream.source import _validate_udf

    blob = cloudpickle.dumps(_validate_udf().func)
    assert _fresh_python(
        f"import json, pickle, sys; pickle.loads({blob!r}); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('lakehouse', 'pydantic', 'pyspark'))))"
    ) == ["lakehouse", "lakehouse.contract", "lakehouse.validation"]
    preloaded = ("pandas", "pyarrow.compute", "msgspec", "pyspark.worker", "lakehouse.validation")
    assert _fresh_python(f"import json, sys, lakehouse.stream.python_daemon; "
                         f"print(json.dumps([m for m in {preloaded!r} if m not in sys.modules]))") == []


def _spark_python_path() -> list[str]:
    """What Spark puts in front of its Python workers' path (PythonUtils.sparkPythonPath) for this
    pyspark, in its order: pyspark.zip, py4j's zip, spark-core's jar."""
    from pathlib import Path

    import pyspark

    home = Path(pyspark.__file__).parent
    lib = home / "python" / "lib"
    archives = [lib / "pyspark.zip", *sorted(lib.glob("py4j-*-src.zip")),
                *sorted((home / "jars").glob("spark-core_*.jar"))]
    assert len(archives) == 3 and all(a.is_file() for a in archives), archives
    return [str(a) for a in archives]


def test_the_streams_daemon_drops_sparks_archives_when_pyspark_is_installed(tmp_path):
    """Spark's archives go from the path only when the pyspark and py4j they
    ship are installed, in the same versions, on the rest of it: a Spark whose
    workers have no pyspark installed, or another version, keeps them."""
    import zipfile

    from lakehouse.stream.python_daemon import without_spark_archives

    archives = _spark_python_path()
    installed = [p for p in sys.path if p.endswith("site-packages")]
    assert without_spark_archives([*archives, *installed]) == installed
    assert without_spark_archives(archives) == archives  # nowhere else to import pyspark from
    assert without_spark_archives(installed) == installed
    other = tmp_path / "pyspark.zip"  # a Spark of another version than the one installed
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("pyspark/version.py", '__version__: str = "3.5.7"\n')
    assert without_spark_archives([str(other), *archives[1:], *installed]) == [str(other), *archives[1:], *installed]


def test_a_worker_forked_from_the_streams_daemon_reads_no_archive_again():
    """pyspark's worker calls importlib.invalidate_caches() at its first task
    (after adding Spark's file directory to sys.path); with Spark's archives
    on the path every zip importer then read its archive's directory again
    (~21 MB and ~0.2 s per worker). In an interpreter started as Spark starts
    the daemon, nothing is read from or cached of an archive."""
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(_spark_python_path())}
    pyspark_file, cached = _fresh_python(
        "import importlib, json, sys, zipimport, lakehouse.stream.python_daemon, pyspark; "
        "sys.path.insert(0, '/nonexistent-spark-files'); importlib.invalidate_caches(); "
        "print(json.dumps([pyspark.__file__, list(zipimport._zip_directory_cache)]))", env)
    assert ".zip" not in pyspark_file and cached == []


def _offsets(checkpoint, batch: int, topics: dict, committed: bool) -> None:
    """One entry of a checkpoint's offset log as Spark writes it (and its commit)."""
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits").mkdir(exist_ok=True)
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1, "conf": {}}
    (checkpoint / "offsets" / str(batch)).write_text(f"v1\n{json.dumps(meta)}\n{json.dumps(topics)}")
    (checkpoint / "offsets" / f".{batch}.crc").write_bytes(b"")
    if committed:
        (checkpoint / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_a_checkpoint_of_another_topic_is_refused_before_its_query_starts(tmp_path):
    import pytest

    from lakehouse.stream.app import CheckpointOfAnotherTopic, checkpoint_topics, require_topic
    from tests.conftest import make_settings

    ckpt = tmp_path / "checkpoints" / "raw_landing"
    settings = make_settings(tmp_path / "run", kafka_topic="user-events")
    assert checkpoint_topics(ckpt) == set()  # a new checkpoint
    require_topic("raw-landing", ckpt, settings)
    for batch in (0, 1, 2):
        _offsets(ckpt, batch, {"user-events": {"0": batch * 10, "1": batch * 5}}, committed=True)
    assert checkpoint_topics(ckpt) == {"user-events"}
    require_topic("raw-landing", ckpt, settings)
    with pytest.raises(CheckpointOfAnotherTopic) as refused:
        require_topic("raw-landing", ckpt, settings.model_copy(update={"kafka_topic": "clicks"}))
    message = str(refused.value)
    assert "holds offsets of topic user-events, and KAFKA_TOPIC is clicks" in message
    assert f"mv {ckpt.parent} {ckpt.parent}.old-topic" in message
    # A batch planned with the new topic by an earlier version (never committed): the
    # restart would replay it, so the checkpoint is refused under either topic.
    _offsets(ckpt, 3, {"clicks": {"0": 7}}, committed=False)
    assert checkpoint_topics(ckpt) == {"user-events", "clicks"}
    with pytest.raises(CheckpointOfAnotherTopic):
        require_topic("raw-landing", ckpt, settings)


def test_make_status_says_when_each_stream_last_finished_and_what_it_has_still_to_read():
    from lakehouse.stream.progress import describe_latest

    finished = datetime(2026, 12, 7, 8, 13, 17, tzinfo=timezone.utc)
    batches = [
        ("fast-aggregation", 2701, 214, finished.astimezone(timezone(timedelta(hours=-8))), 0.4, {"user-events": {"0": 100, "1": 200, "2": 300}}),
        ("raw-landing", 47, 12002, finished, 3725, '{"user-events": {"0": 90, "1": 200}}'),
    ]
    lines = describe_latest(batches, "user-events", {0: 100, 1: 250, 2: 300})
    assert lines == [
        "fast-aggregation: batch 2701 finished 2026-12-07 08:13:17 UTC (0 s ago), 214 records; "
        "50 records of user-events not read yet",
        # a partition the batch never read counts from 0
        "raw-landing: batch 47 finished 2026-12-07 08:13:17 UTC (1 h ago), 12,002 records; "
        "360 records of user-events not read yet",
    ]
    assert describe_latest(batches[:1], "user-events", None)[0].endswith("; ? records of user-events not read yet")
