"""Validation rules on tiny hand-made Kafka frames (real Spark, no broker)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from lakehouse.contract import BRONZE_EVENTS_SCHEMA, BRONZE_QUARANTINE_SCHEMA, MAX_MESSAGE_BYTES
from lakehouse.settings import get_settings
from lakehouse.spark import spark_session
from lakehouse.validation import parse_messages, reason_code, split_bronze, valid_events

INGEST = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
GOOD = {
    "event_id": "0b8e7c1e-3f0a-4a5e-9c1d-2b3c4d5e6f70",
    "user_id": 5,
    "event_type": "click",
    "page": "/home",
    "timestamp": "2026-11-21T11:59:00.005Z",
    "source": "web",
}
DROP = object()


def event(**changes) -> bytes:
    d = {**GOOD, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not DROP}).encode()


CASES = [
    (event(), None),
    (event(timestamp="2026-11-21T13:59:00+02:00", source="mobile", event_type="purchase"), None),
    (json.dumps({**GOOD, "extra": 1}).encode(), None),
    (None, "empty_message"),
    (b"", "empty_message"),
    (event(padding="x" * MAX_MESSAGE_BYTES), "oversize"),
    (b"\xff\xfe\x80garbage", "undecodable"),
    (b'{"event_id": "abc", ', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (event(user_id=DROP), "missing_field:user_id"),
    (event(page=None), "wrong_type:page"),
    (event(user_id="5"), "wrong_type:user_id"),
    (event(user_id=5.0), "wrong_type:user_id"),
    (event(event_type=3), "wrong_type:event_type"),
    (event(page=["/home"]), "wrong_type:page"),
    (event(timestamp=1_700_000_000), "wrong_type:timestamp"),
    (event(event_id="not-a-uuid"), "invalid_event_id"),
    (event(user_id=0), "invalid_user_id"),
    (event(event_type="CLICK"), "unknown_event_type"),
    (event(source="tv"), "unknown_source"),
    (event(page="home"), "invalid_page"),
    (event(timestamp="2026-11-21T11:59:00"), "invalid_timestamp"),
    (event(timestamp="yesterday"), "invalid_timestamp"),
    (event(timestamp="1970-01-01T00:00:00Z"), "absurd_timestamp"),
    (event(timestamp="2026-11-23T00:00:00Z"), "absurd_timestamp"),
]


@pytest.fixture(scope="module")
def spark():
    return spark_session(get_settings(), "test-validation")


@pytest.fixture(scope="module")
def parsed(spark):
    rows = [(b"5", value, "events", i % 3, i, INGEST) for i, (value, _) in enumerate(CASES)]
    df = spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    return parse_messages(df, F.lit(INGEST)).toArrow()


def test_each_rule_gives_its_reason(parsed):
    got = dict(zip(parsed["kafka_offset"].to_pylist(), parsed["reason"].to_pylist()))
    assert got == {i: reason for i, (_, reason) in enumerate(CASES)}


def test_split_gives_contract_schemas_and_keeps_raw_bytes(parsed):
    events, quarantine = split_bronze(parsed)
    assert events.schema == BRONZE_EVENTS_SCHEMA
    assert quarantine.schema == BRONZE_QUARANTINE_SCHEMA
    assert events.num_rows == 3 and quarantine.num_rows == len(CASES) - 3
    first = events.to_pylist()[0]
    assert first["raw_payload"] == CASES[0][0].decode()
    assert first["user_id"] == 5 and first["event_date"].isoformat() == "2026-11-21"
    assert first["event_ts"] == datetime(2026, 11, 21, 11, 59, 0, 5000, tzinfo=timezone.utc)
    # timestamps with an offset are normalised to UTC
    assert events.to_pylist()[1]["event_ts"] == datetime(2026, 11, 21, 11, 59, tzinfo=timezone.utc)
    by_offset = {r["kafka_offset"]: r for r in quarantine.to_pylist()}
    assert by_offset[6]["raw_value"] == CASES[6][0]  # undecodable bytes survive as they came
    assert by_offset[6]["raw_key"] == b"5"
    assert all(r["ingest_date"].isoformat() == "2026-11-21" for r in quarantine.to_pylist())


def test_valid_events_keeps_only_well_formed(spark):
    rows = [(b"5", v, "events", 0, i, INGEST) for i, (v, _) in enumerate(CASES[:6])]
    df = spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    assert valid_events(df).count() == 3


def test_reason_code():
    assert reason_code("missing_field:user_id") == "missing_field"
    assert reason_code("oversize") == "oversize"
