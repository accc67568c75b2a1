"""Helpers for the streaming tests: a unique topic and run dir per test,
produced messages with their expected outcome, and readers of the results."""

from __future__ import annotations

from lakehouse.polling import wait_for  # noqa: F401  (re-exported for the stream tests)

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
from deltalake import DeltaTable

from lakehouse import catalog
from lakehouse.platform import broker, stack
from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.validation import reason_code
from producer.generator import EventGenerator, GeneratorConfig, Message
from producer.sender import produce

#: Simulated event rate of the test streams: 2,700 messages span 4.5 minutes
#: of event time, so the 2-minute watermark closes two windows. "Late" events
#: are 10-30 minutes late, far behind the watermark after the warm-up batch
#: even when the watermark lags: a micro-batch (at most 400 records) spans 40 s,
#: and after a restart Spark resumes with the watermark of the last planned
#: batch, one batch behind an uninterrupted run.
SIM_EVENTS_PER_SECOND = 10.0
BATCH_RECORDS = 400

MALFORMED_CODE = {  # generator's label -> validation reason code
    "not_json": "invalid_json",
    "undecodable": "undecodable",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
    "unknown_event_type": "unknown_event_type",
    "absurd_timestamp": "absurd_timestamp",
    "oversize": "oversize",
}


def stream_settings(base: Settings, tmp_path: Path, **overrides) -> Settings:
    """`base` (a running stack) with a fresh topic, data dir and checkpoints."""
    topic = f"events-{uuid.uuid4().hex[:8]}"
    values = dict(
        kafka_topic=topic,
        lakehouse_run_dir=tmp_path / "run",
        lakehouse_data_dir=tmp_path / "run" / "lakehouse",
        stream_trigger_seconds=0.5,
        stream_min_records_per_batch=0,  # land each test's few records at once
        stream_max_records_per_batch=BATCH_RECORDS,
    )
    values.update(overrides)
    settings = base.model_copy(update=values)
    (tmp_path / "run").mkdir(parents=True, exist_ok=True)
    broker.ensure_topic(settings)
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment for a job subprocess that makes it see exactly `settings`."""
    env = {**os.environ, **stack.stack_env(settings)}
    env["PYSPARK_PYTHON"] = sys.executable
    # a host zone other than UTC: stored window starts must still be true UTC instants
    env["TZ"] = "America/Los_Angeles"
    return env


def start_job(module: str, settings: Settings, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", module], cwd=REPO_ROOT, env=settings_env(settings),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def consumed(query) -> int:
    """Records an in-process query has finished, from its last progress (fresh topic: offsets from 0)."""
    p = query.lastProgress
    if not p or not p["sources"]:
        return 0
    end = p["sources"][0]["endOffset"]
    end = json.loads(end) if isinstance(end, str) else end
    return sum(int(o) for parts in end.values() for o in parts.values())


def query_watermark(query) -> datetime:
    """An in-process query's event-time watermark, from its last progress."""
    return parse_ts(query.lastProgress["eventTime"]["watermark"])


def assert_bronze_holds_the_well_formed_once(settings: Settings, msgs: list[Message]) -> list[dict]:
    """bronze/events holds every well-formed message exactly once (unique by
    Kafka partition and offset, the same payloads); returns its rows."""
    rows = delta_rows(settings, "events")
    keys = [(r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(well_formed(msgs))
    assert Counter(r["raw_payload"] for r in rows) == Counter(m.value.decode() for m in well_formed(msgs))
    return rows


def assert_quarantine_holds_the_malformed(settings: Settings, msgs: list[Message]) -> None:
    """bronze/quarantine holds exactly the malformed messages, each with its reason code."""
    rows = delta_rows(settings, "quarantine")
    bad = [m for m in msgs if m.kind == "malformed"]
    assert len(rows) == len(bad) > 0
    got = Counter((r["raw_value"], reason_code(r["reason"])) for r in rows)
    assert got == Counter((m.value, MALFORMED_CODE[m.reason_hint]) for m in bad)


def assert_realtime_counts_the_closed_windows(settings: Settings, msgs: list[Message], watermark: datetime,
                                              since: datetime) -> None:
    """The realtime tables equal the counts computed from what was produced,
    for every window in [since, watermark): at least two closed minutes of
    the 4 event types."""
    want = closed(expected_realtime(msgs), watermark, since)
    got = closed(realtime_rows(settings), watermark, since)
    assert len(want["events_per_minute"]) >= 8
    assert got == want


def messages(n: int, start: datetime, seed: int = 7) -> list[Message]:
    """`start` must differ by hours between tests: they share the realtime tables."""
    config = GeneratorConfig(
        seed=seed, start=start, events_per_second=SIM_EVENTS_PER_SECOND,
        duplicate_fraction=0.03, late_fraction=0.02, malformed_fraction=0.01, oversize_share=0.1,
        late_minutes=(10, 30),
    )
    return EventGenerator(config).messages(n)


def warmup_split(msgs: list[Message]) -> int:
    """Index of the first late message: sending the messages before it first,
    as a batch of their own, starts the watermark before any late event."""
    first_late = next(i for i, m in enumerate(msgs) if m.kind == "late")
    assert first_late >= 5, "the generator put a late event at the very start; pick another seed"
    return min(first_late, 50)


def send(msgs: list[Message], settings: Settings, rate: float | None = None) -> None:
    stats = produce(msgs, settings, rate=rate)
    assert stats.failed == 0 and stats.sent == len(msgs), stats.errors


def well_formed(msgs: list[Message]) -> list[Message]:
    return [m for m in msgs if m.kind != "malformed"]


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def expected_realtime(msgs: list[Message]) -> dict[str, Counter]:
    """Counts per window and key, computed from what was produced: each
    event_id once, late events (behind the watermark) left out."""
    events = {m.event["event_id"]: m.event for m in msgs if m.kind == "valid"}
    out = {"events_per_minute": Counter(), "logins_per_source": Counter(), "purchases_per_minute": Counter()}
    for e in events.values():
        w = minute(parse_ts(e["timestamp"]))
        out["events_per_minute"][(w, e["event_type"])] += 1
        if e["event_type"] == "login":
            out["logins_per_source"][(w, e["source"])] += 1
        if e["event_type"] == "purchase":
            out["purchases_per_minute"][(w,)] += 1
    return out


def realtime_rows(settings: Settings) -> dict[str, Counter]:
    queries = {
        "events_per_minute": "SELECT window_start, event_type, event_count FROM realtime.events_per_minute",
        "logins_per_source": "SELECT window_start, source, login_count FROM realtime.logins_per_source",
        "purchases_per_minute": "SELECT window_start, purchase_count FROM realtime.purchases_per_minute",
    }
    out = {}
    with psycopg2.connect(settings.pg_dsn("writer")) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        for table, sql in queries.items():
            cur.execute(sql)
            out[table] = Counter({tuple(r[:-1]): r[-1] for r in cur.fetchall()})
    conn.close()
    return out


def closed(counts: dict[str, Counter], watermark: datetime, since: datetime) -> dict[str, dict]:
    """Only the windows in [since, watermark): those the watermark has closed."""
    return {
        t: {k: v for k, v in c.items() if k[0] >= since and k[0] + timedelta(minutes=1) <= watermark}
        for t, c in counts.items()
    }


def delta_rows(settings: Settings, name: str) -> list[dict]:
    """Rows of bronze/<name>, read with delta-rs (the `deltalake` package): the
    tables delta-spark writes must stay readable by it."""
    path = catalog.TABLES[f"bronze/{name}"].path(settings)
    try:
        return DeltaTable(path).to_pyarrow_table().to_pylist()
    except Exception:  # not created yet
        return []




def progress_consumed(settings: Settings, query_name: str) -> int:
    """Records of settings.kafka_topic that `query_name` has finished, from
    ops.stream_progress (fresh topic: offsets start at 0)."""
    import json

    sql = ("SELECT end_offsets FROM ops.stream_progress WHERE query_name = %s AND end_offsets ? %s "
           "ORDER BY recorded_at DESC LIMIT 20")
    try:
        with psycopg2.connect(settings.pg_dsn("writer"), connect_timeout=3) as conn, conn.cursor() as cur:
            cur.execute(sql, (query_name, settings.kafka_topic))
            rows = cur.fetchall()
        conn.close()
    except psycopg2.OperationalError:
        return 0
    best = 0
    for (end,) in rows:
        end = json.loads(end) if isinstance(end, str) else end
        best = max(best, sum(int(o) for o in end.get(settings.kafka_topic, {}).values()))
    return best


def final_watermark(msgs: list[Message], watermark_minutes: float) -> datetime:
    """The watermark once every message has been processed: latest event time
    of a well-formed event minus the delay (Spark runs a no-data batch to get there)."""
    latest = max(parse_ts(m.event["timestamp"]) for m in msgs if m.kind == "valid")
    return latest - timedelta(minutes=watermark_minutes)


def stop_job(proc: subprocess.Popen, timeout: float = 120) -> int:
    """SIGINT to the driver only (as supervisord does); returns the exit code."""
    import signal

    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout)


def kill_job(proc: subprocess.Popen) -> None:
    """kill -9 of the job: driver, JVM and Python workers at once."""
    import signal

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
