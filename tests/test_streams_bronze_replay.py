"""Raw landing's exactly-once writes (lakehouse.stream.bronze.land_batch) in
a local Spark session, no broker: a micro-batch replayed after a crash
between its Delta commit and Spark's checkpoint commit lands nothing twice,
in bronze/events or bronze/quarantine. The kill -9 tests
(tests/test_streams_recovery.py) hit that window only when the kill happens
to fall into it; here the replay is certain."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from deltalake import DeltaTable

from lakehouse import catalog
from lakehouse.stream import bronze
from lakehouse.stream.source import validated
from tests.conftest import make_settings

KAFKA_SCHEMA = ("key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
                "timestampType int")
T = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
APP = "raw-landing:0b8e7c1e-query-id"


def batch(spark, first_offset: int, valid: int, invalid: int):
    """A micro-batch as raw landing's foreachBatch gets it: validated Kafka rows."""
    rows = []
    for i in range(valid + invalid):
        value = json.dumps({"event_id": str(uuid.uuid4()), "user_id": 1 + i, "event_type": "click", "page": "/home",
                            "timestamp": T.isoformat(), "source": "web"}).encode() if i < valid else b"not json"
        rows.append((b"k", value, "events", 0, first_offset + i, T, 0))
    return validated(spark.createDataFrame(rows, KAFKA_SCHEMA))


def offsets(settings, table) -> list[int]:
    return sorted(DeltaTable(table.path(settings)).to_pyarrow_table(columns=["kafka_offset"])
                  .column("kafka_offset").to_pylist())


def test_a_replayed_micro_batch_lands_once(spark, tmp_path):
    settings = make_settings(tmp_path / "run")
    bronze.ensure_tables(spark, settings)
    first, second = batch(spark, 0, valid=3, invalid=1), batch(spark, 4, valid=2, invalid=2)

    assert bronze.land_batch(first, 0, settings, APP) == bronze.Landed(4, 3, 1)
    bronze.land_batch(first, 0, settings, APP)  # the crash came before Spark's checkpoint commit: batch 0 again
    assert offsets(settings, catalog.BRONZE_EVENTS) == [0, 1, 2]
    assert offsets(settings, catalog.BRONZE_QUARANTINE) == [3]

    bronze.land_batch(second, 1, settings, APP)
    bronze.land_batch(first, 0, settings, APP)  # an older batch than the last committed one: skipped too
    assert offsets(settings, catalog.BRONZE_EVENTS) == [0, 1, 2, 4, 5]
    assert offsets(settings, catalog.BRONZE_QUARANTINE) == [3, 6, 7]

    # a new checkpoint (a new query id in the app id) starts its batch ids at 0 again: they land
    bronze.land_batch(batch(spark, 8, valid=1, invalid=1), 0, settings, "raw-landing:another-query-id")
    assert offsets(settings, catalog.BRONZE_EVENTS) == [0, 1, 2, 4, 5, 8]
    assert offsets(settings, catalog.BRONZE_QUARANTINE) == [3, 6, 7, 9]
