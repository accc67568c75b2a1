"""Raw landing is bronze's one writer, so it compacts bronze's closed dates
itself: in its first micro-batch, after that batch's appends, the small files
of a date older than DELTA_COMPACT_AFTER_DAYS become one, with the same rows,
and the new records land as usual (real broker, Spark local[2], Delta)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from deltalake import DeltaTable

from lakehouse import catalog, testdata
from lakehouse.stream.app import streams_session
from spark_jobs import raw_landing
from tests.streams_helpers import stream_settings, wait_for
from tests.test_streams_bad_input import kafka_python

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def event(ts: datetime, i: int) -> dict:
    return {"event_id": str(uuid.uuid4()), "user_id": 1 + i, "event_type": "click", "page": "/home",
            "timestamp": ts.isoformat(), "source": "web"}


def files(path: str, d) -> int:
    return len(DeltaTable(path).file_uris(file_pruning_predicate=f"event_date = '{d}'"))


def test_raw_landing_compacts_bronzes_closed_dates_itself(core_stack, tmp_path):
    settings = stream_settings(core_stack, tmp_path)
    now = datetime.now(timezone.utc)
    closed = (now - timedelta(days=settings.delta_compact_after_days + 3)).replace(hour=12, minute=0)
    for batch in range(3):  # three earlier micro-batches of a closed date: three small files
        old = [event(closed + timedelta(minutes=batch * 10 + i), i) for i in range(4)]
        testdata.write_bronze(settings, testdata.bronze_table(old, [closed] * 4, settings.kafka_topic, 1,
                                                              first_offset=1000 + batch * 10))
    path = catalog.BRONZE_EVENTS.path(settings)
    before = DeltaTable(path).to_pyarrow_table().sort_by("event_id").to_pylist()
    assert files(path, closed.date()) == 3

    spark = streams_session(settings, "test-streams-compaction")
    query = raw_landing.start(spark, settings)
    try:
        p = kafka_python(settings)
        new = [event(now, i) for i in range(20)]
        for e in new:
            p.send(settings.kafka_topic, value=json.dumps(e).encode())
        p.flush(30)
        p.close()
        wait_for(lambda: DeltaTable(path).to_pyarrow_table().num_rows == len(before) + len(new), 300,
                 "the new records in bronze")
        wait_for(lambda: files(path, closed.date()) == 1, 300, "raw landing's compaction of the closed date")
        assert query.isActive and query.exception() is None
    finally:
        query.stop()
        spark.stop()

    table = DeltaTable(path)
    rows = table.to_pyarrow_table()
    old_rows = [r for r in rows.sort_by("event_id").to_pylist() if r["event_date"] == closed.date()]
    assert old_rows == before  # same rows, one file
    assert sorted(r["event_id"] for r in rows.to_pylist() if r["event_date"] != closed.date()) == \
        sorted(e["event_id"] for e in new)
    operations = [h["operation"] for h in table.history()]
    assert "OPTIMIZE" in operations and operations.count("WRITE") >= 4  # delta-rs' three, raw landing's
    assert files(path, now.date()) >= 1  # the open date is not compacted (one file per Kafka partition)
