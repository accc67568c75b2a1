"""Validation rules on tiny hand-made Kafka records (pure Python, as the
Arrow UDF runs them in Spark's Python workers)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import pyarrow as pa

from lakehouse.contract import BRONZE_EVENTS_SCHEMA, BRONZE_QUARANTINE_SCHEMA, MAX_MESSAGE_BYTES
from lakehouse.validation import (
    MAX_PAGE_CHARS,
    PARSED_SCHEMA,
    VALIDATED_TYPE,
    check_message,
    parse_records,
    reason_code,
    split_bronze,
    validate_arrow,
)

INGEST = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
INGEST_US = int(INGEST.timestamp()) * 1_000_000
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


def sized(n: int) -> bytes:
    """A valid event padded (an extra field) to exactly n bytes."""
    short = event(padding="")
    value = event(padding="x" * (n - len(short)))
    assert len(value) == n
    return value


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
    # edges of the fast path (strict typed decoding) and the rule-by-rule path agreeing
    (json.dumps({**GOOD, "extra": "x"}).encode()[:-1] + b', "junk": "\xff"}', "undecodable"),
    (event() + b" trailing", "invalid_json"),
    (event(user_id=float("nan")), "invalid_json"),
    (b"null", "not_an_object"),
    (b'  "text"', "not_an_object"),
    (event(user_id=True), "wrong_type:user_id"),
    (event(user_id=2**63), "wrong_type:user_id"),
    (event(user_id=2**64 + 1), "wrong_type:user_id"),
    (event(user_id=-3), "invalid_user_id"),
    (event(event_id=GOOD["event_id"] + "\n"), "invalid_event_id"),
    (event(event_id=None, user_id="5"), "wrong_type:event_id"),
    (event(user_id=DROP, source=DROP), "missing_field:user_id"),
    (event(timestamp="2026-02-30T00:00:00Z"), "invalid_timestamp"),
    (event(timestamp="2026-11-21T11:59:00.123456789+00:00"), None),
    (event(timestamp="2026-11-21 11:59Z"), None),
    (json.dumps({**GOOD, "user_id": 1, "user_id2": 2}).replace('"user_id2"', '"user_id"').encode(), None),
    # page: at most MAX_PAGE_CHARS characters, no control characters (a NUL broke the PostgreSQL load)
    (event(page="/" + "p" * (MAX_PAGE_CHARS - 1)), None),
    (event(page="/" + "p" * MAX_PAGE_CHARS), "invalid_page"),
    (event(page="/home\u0000"), "invalid_page"),
    (event(page="/ho\nme"), "invalid_page"),
    (event(page="/ho\u0085me"), "invalid_page"),
    (event(page="/caf\u00e9"), None),
    (event(event_id=GOOD["event_id"].upper()), None),
    # the future rule is judged against the record's Kafka timestamp (INGEST here)
    (event(timestamp="2026-11-22T11:59:00Z"), None),
    (event(timestamp="2026-11-22T12:00:01Z"), "absurd_timestamp"),
    # the edges themselves: exactly 24 h ahead, the first instant of 2000 and
    # a value of exactly MAX_MESSAGE_BYTES are valid; a microsecond or a byte more is not
    (event(timestamp="2026-11-22T12:00:00Z"), None),
    (event(timestamp="2026-11-22T12:00:00.000001Z"), "absurd_timestamp"),
    (event(timestamp="2000-01-01T00:00:00Z"), None),
    (event(timestamp="1999-12-31T23:59:59.999999Z"), "absurd_timestamp"),
    (sized(MAX_MESSAGE_BYTES), None),
    (sized(MAX_MESSAGE_BYTES + 1), "oversize"),
]


def records(values):
    values = list(values)
    n = len(values)
    return parse_records("events", 2, [b"5"] * n, values, list(range(n)), [INGEST_US // 1000] * n, INGEST_US)


@pytest.fixture(scope="module")
def parsed():
    return pa.Table.from_batches([records(v for v, _ in CASES)])


def test_each_rule_gives_its_reason(parsed):
    got = dict(zip(parsed["kafka_offset"].to_pylist(), parsed["reason"].to_pylist()))
    assert got == {i: reason for i, (_, reason) in enumerate(CASES)}


def test_split_gives_contract_schemas_and_keeps_raw_bytes(parsed):
    events, quarantine = split_bronze(parsed)
    assert events.schema == BRONZE_EVENTS_SCHEMA
    assert quarantine.schema == BRONZE_QUARANTINE_SCHEMA
    n_valid = sum(reason is None for _, reason in CASES)
    assert events.num_rows == n_valid and quarantine.num_rows == len(CASES) - n_valid
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


def test_fast_path_and_rule_by_rule_path_agree(parsed):
    got = parsed["reason"].to_pylist()
    assert [check_message(v, INGEST_US)[0] for v, _ in CASES] == got


def test_event_ids_are_lower_cased_and_the_payload_kept_as_sent(parsed):
    upper = next(i for i, (v, _) in enumerate(CASES) if v == event(event_id=GOOD["event_id"].upper()))
    assert parsed["event_id"][upper].as_py() == GOOD["event_id"]
    assert GOOD["event_id"].upper() in parsed["raw_payload"][upper].as_py()
    assert check_message(CASES[upper][0], INGEST_US)[1][0] == GOOD["event_id"]


def test_arrow_udf_body_gives_the_same_reasons_and_fields():
    values = pa.array([v for v, _ in CASES], pa.binary())
    refs = pa.array([INGEST_US] * len(CASES), pa.int64())
    out = validate_arrow(values, refs)
    assert out.type == VALIDATED_TYPE
    assert out.field("reason").to_pylist() == [reason for _, reason in CASES]
    first = out[0].as_py()
    assert first["event_id"] == GOOD["event_id"] and first["user_id"] == 5 and first["page"] == "/home"
    assert first["event_ts"] == datetime(2026, 11, 21, 11, 59, 0, 5000, tzinfo=timezone.utc)
    assert out[3].as_py()["event_id"] is None  # invalid rows carry no fields


def test_decisions_depend_on_the_kafka_timestamp_not_on_when_they_run():
    """23 h ahead of its Kafka timestamp is valid, 25 h absurd, whenever it is (re)read;
    a record without a Kafka timestamp (-1) gets no upper bound."""
    value = event(timestamp="2026-11-22T11:00:00Z")
    refs = [INGEST_US, INGEST_US - 2 * 3600 * 1_000_000, -1]
    got = validate_arrow(pa.array([value] * 3, pa.binary()), pa.array(refs, pa.int64()))
    assert got.field("reason").to_pylist() == [None, "absurd_timestamp", None]


def test_parsed_batch_has_the_schema_spark_is_told_and_kafka_coordinates(parsed):
    assert parsed.schema == PARSED_SCHEMA
    row = parsed.slice(0, 1).to_pylist()[0]
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("events", 2, 0)
    assert row["kafka_timestamp"] == INGEST
    assert row["ingest_ts"] == INGEST and row["ingest_date"].isoformat() == "2026-11-21"
    assert records([]).num_rows == 0


def test_reason_code():
    assert reason_code("missing_field:user_id") == "missing_field"
    assert reason_code("oversize") == "oversize"
