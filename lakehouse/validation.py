"""The single definition of a valid event: the rules and reason codes that
both streaming queries apply to every Kafka record.

Where it runs: `validate_arrow` is the body of an Arrow UDF
(lakehouse.stream.source) that Spark calls on batches of Kafka values and
timestamps; it returns, per record, the parsed fields and `reason` (NULL for a
valid event, else the first rule the message breaks). The same rules written
as Spark SQL expressions over VARIANT were measured slower (docs/decisions.md).

Every decision depends only on the record (its value and its Kafka
timestamp), never on when it is (re)read, so a replayed micro-batch
classifies each record exactly as before.

`parse_records` (one Kafka partition's records -> a PARSED_SCHEMA batch) and
`split_bronze` remain for tests and tools that work in Arrow without Spark.

Rules, in order (the first that holds is the reason; `<code>` or `<code>:<field>`):

    empty_message       no value, or zero bytes
    oversize            more than MAX_MESSAGE_BYTES
    undecodable         not UTF-8
    invalid_json        not JSON (RFC 8259: no NaN, no trailing text), or nested
                        deeper than the decoder's recursion limit (about 1,000 levels)
    not_an_object       JSON, but not an object
    missing_field:<f>   a contract field is absent (fields in contract order)
    wrong_type:<f>      user_id not a JSON integer within int64 (5.0 and "5" are
                        not), another field not a string; null is a type
    invalid_event_id    not a UUID (8-4-4-4-12 hex digits)
    invalid_user_id     user_id <= 0
    unknown_event_type  not one of EVENT_TYPES
    unknown_source      not one of SOURCES
    invalid_page        does not start with "/", longer than MAX_PAGE_CHARS, or holds a
                        control character (U+0000-U+001F, U+007F-U+009F)
    invalid_timestamp   not ISO-8601 date-time with an explicit zone (Z or +hh:mm),
                        or not a real date-time
    absurd_timestamp    before 2000-01-01, or more than MAX_FUTURE_HOURS after the
                        record's Kafka timestamp (the reference time; records
                        without one, timestamp < 0, get no upper bound)

A valid event's event_id is returned in lower case (the raw payload keeps it as
sent), so two spellings of one UUID are one event_id for every de-duplication
downstream. Extra fields are allowed; a repeated key keeps its last value. Speed: a strict
typed msgspec decoder handles the common case in C; whatever it rejects goes
through `check_message`, the rule-by-rule path, so both give the same reason.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.contract import (
    BRONZE_EVENTS_SCHEMA,
    BRONZE_QUARANTINE_SCHEMA,
    EVENT_FIELDS,
    EVENT_TYPES,
    MAX_MESSAGE_BYTES,
    SOURCES,
    UTC_TS,
)

REASON_EMPTY = "empty_message"
REASON_OVERSIZE = "oversize"
REASON_UNDECODABLE = "undecodable"
REASON_INVALID_JSON = "invalid_json"
REASON_NOT_OBJECT = "not_an_object"
REASON_MISSING_FIELD = "missing_field"
REASON_WRONG_TYPE = "wrong_type"
REASON_INVALID_EVENT_ID = "invalid_event_id"
REASON_INVALID_USER_ID = "invalid_user_id"
REASON_UNKNOWN_EVENT_TYPE = "unknown_event_type"
REASON_UNKNOWN_SOURCE = "unknown_source"
REASON_INVALID_PAGE = "invalid_page"
REASON_INVALID_TIMESTAMP = "invalid_timestamp"
REASON_ABSURD_TIMESTAMP = "absurd_timestamp"

#: Event times before this are absurd (clock reset, epoch zero).
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: Event times later than the record's Kafka timestamp plus this many hours are absurd.
MAX_FUTURE_HOURS = 24
#: Longest valid page (characters): a longer one would break the PostgreSQL load of gold.
MAX_PAGE_CHARS = 512
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: ISO-8601 date-time with an explicit zone (Z or +hh:mm): UTC must be stated.
ISO_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})")

#: What `parse_records` returns: bronze columns (NULL on invalid rows), the
#: Kafka coordinates, `reason`, and the raw bytes (kept only on invalid rows).
PARSED_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("user_id", pa.int64()), ("event_type", pa.string()),
    ("page", pa.string()), ("source", pa.string()), ("event_ts", UTC_TS), ("event_date", pa.date32()),
    ("raw_payload", pa.string()), ("kafka_topic", pa.string()), ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()), ("kafka_timestamp", UTC_TS), ("ingest_ts", UTC_TS),
    ("reason", pa.string()), ("raw_value", pa.binary()), ("raw_key", pa.binary()), ("ingest_date", pa.date32()),
])

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_MIN_US = (MIN_EVENT_TIME - _EPOCH) // _US
_MAX_FUTURE_US = MAX_FUTURE_HOURS * 3600 * 1_000_000
_EVENT_TYPES, _SOURCES = frozenset(EVENT_TYPES), frozenset(SOURCES)


class _Event(msgspec.Struct, gc=False):
    """The fast path's shape: every contract field, strictly typed."""

    event_id: str
    user_id: int
    event_type: str
    page: str
    timestamp: str
    source: str


_decode_event = msgspec.json.Decoder(_Event).decode
class _JsonNumber(str):
    """A non-integer JSON number, kept as its text. Numbers outside a float's
    range (1e999, thousands of digits) are valid JSON, so they must not be a
    reason (the fast path skips extra fields unparsed and must agree); and no
    rule reads a fractional number except to say it has the wrong type."""


#: Any JSON document (fractional numbers as _JsonNumber, never an error).
_decode_any = msgspec.json.Decoder(float_hook=_JsonNumber).decode


def _decode_big_numbers(text: str):
    """The rare document msgspec will not build (an integer beyond ~4,300
    digits): the standard library's parser, with such integers (and every
    fraction) as _JsonNumber text, so they are no int for the type rules;
    None if not JSON."""
    import json

    def reject(constant: str):
        raise ValueError(constant)  # NaN, Infinity: not RFC 8259

    def integer(digits: str):
        return int(digits) if len(digits) <= 4000 else _JsonNumber(digits)

    try:
        return json.loads(text, parse_int=integer, parse_float=_JsonNumber, parse_constant=reject)
    except (ValueError, RecursionError):
        return None

#: A valid event's values: event_id, user_id, event_type, page, source, event time (us), payload text.
Fields = tuple[str, int, str, str, str, int, str]


def _timestamp_us(text: str) -> int | None:
    if not ISO_TS_RE.fullmatch(text):
        return None
    try:
        return (datetime.fromisoformat(text) - _EPOCH) // _US  # aware: the pattern demands a zone
    except ValueError:  # e.g. February 30th
        return None


def _value_reason(event_id: str, user_id: int, event_type: str, page: str, ts_text: str, source: str,
                  ingest_us: int) -> tuple[str | None, int]:
    """The rules on values, once every field has its type: (reason or None, event time in us).
    `ingest_us` is the reference time of the future rule (the Kafka timestamp; < 0: none)."""
    if not UUID_RE.fullmatch(event_id):
        return REASON_INVALID_EVENT_ID, 0
    if user_id <= 0:
        return REASON_INVALID_USER_ID, 0
    if event_type not in _EVENT_TYPES:
        return REASON_UNKNOWN_EVENT_TYPE, 0
    if source not in _SOURCES:
        return REASON_UNKNOWN_SOURCE, 0
    if not page.startswith("/") or len(page) > MAX_PAGE_CHARS or _CONTROL_RE.search(page):
        return REASON_INVALID_PAGE, 0
    ts = _timestamp_us(ts_text)
    if ts is None:
        return REASON_INVALID_TIMESTAMP, 0
    if ts < _MIN_US or (ingest_us >= 0 and ts > ingest_us + _MAX_FUTURE_US):
        return REASON_ABSURD_TIMESTAMP, 0
    return None, ts


def _is_json_type(name: str, value) -> bool:
    if name == "user_id":
        return type(value) is int and _INT64_MIN <= value <= _INT64_MAX  # bool is not int here
    return type(value) is str


def check_message(value: bytes | None, ingest_us: int) -> tuple[str | None, Fields | None]:
    """Every rule, in order, on one message: (reason, None) or (None, the event's values).
    `ingest_us`: the reference time of the future rule, the record's Kafka
    timestamp in microseconds (negative: the record has none, no upper bound).
    The event_id returned is lower-cased."""
    if not value:
        return REASON_EMPTY, None
    if len(value) > MAX_MESSAGE_BYTES:
        return REASON_OVERSIZE, None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return REASON_UNDECODABLE, None
    try:
        doc = _decode_any(value)
    except msgspec.ValidationError:  # well-formed, but an integer of thousands of digits
        doc = _decode_big_numbers(text)
        if doc is None:
            return REASON_INVALID_JSON, None
    except (msgspec.DecodeError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        return REASON_INVALID_JSON, None
    if not isinstance(doc, dict):
        return REASON_NOT_OBJECT, None
    for name in EVENT_FIELDS:
        if name not in doc:
            return f"{REASON_MISSING_FIELD}:{name}", None
    for name in EVENT_FIELDS:
        if not _is_json_type(name, doc[name]):
            return f"{REASON_WRONG_TYPE}:{name}", None
    e = doc
    reason, ts = _value_reason(e["event_id"], e["user_id"], e["event_type"], e["page"], e["timestamp"],
                               e["source"], ingest_us)
    if reason is not None:
        return reason, None
    return None, (e["event_id"].lower(), e["user_id"], e["event_type"], e["page"], e["source"], ts, text)


#: What `validate_arrow` returns per record: the parsed fields (NULL unless
#: valid) and the reason (NULL when valid).
VALIDATED_TYPE = pa.struct([
    ("event_id", pa.string()), ("user_id", pa.int64()), ("event_type", pa.string()), ("page", pa.string()),
    ("source", pa.string()), ("event_ts", UTC_TS), ("reason", pa.string()),
])


def _classify(values, reference_us) -> tuple[list, ...]:
    """The rules on each (value, reference time) pair -> parallel columns
    (event_id, user_id, event_type, page, source, event time us, payload text, reason)."""
    eid, uid, etype, page, src, ets, text, reason = ([] for _ in range(8))
    decode_event, value_reason = _decode_event, _value_reason
    for value, ref in zip(values, reference_us):
        why, fields = None, None
        if ref is None:
            ref = -1
        if value and len(value) <= MAX_MESSAGE_BYTES:
            try:
                e = decode_event(value)
                payload = value.decode("utf-8")  # msgspec skips over unknown fields unchecked
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                why, fields = check_message(value, ref)
            else:
                if e.user_id > _INT64_MAX or e.user_id < _INT64_MIN:
                    why = f"{REASON_WRONG_TYPE}:user_id"
                else:
                    why, ts = value_reason(e.event_id, e.user_id, e.event_type, e.page, e.timestamp, e.source, ref)
                    if why is None:
                        fields = (e.event_id.lower(), e.user_id, e.event_type, e.page, e.source, ts, payload)
        else:
            why, fields = check_message(value, ref)
        if why is None:
            eid.append(fields[0]), uid.append(fields[1]), etype.append(fields[2]), page.append(fields[3])
            src.append(fields[4]), ets.append(fields[5]), text.append(fields[6]), reason.append(None)
        else:
            for column in (eid, uid, etype, page, src, ets, text):
                column.append(None)
            reason.append(why)
    return eid, uid, etype, page, src, ets, text, reason


def validate_arrow(values: pa.Array, kafka_ts_us: pa.Array) -> pa.Array:
    """The Arrow UDF body: Kafka values (binary) and Kafka timestamps (int64
    microseconds, the reference of the future rule) -> a VALIDATED_TYPE struct
    array, one per record. Pure: the same input always gives the same output.
    (Annotated `pa.Array`, not `pa.StructArray`: Spark reads a scalar Arrow
    UDF from exactly these hints.)"""
    eid, uid, etype, page, src, ets, _, reason = _classify(values.to_pylist(), kafka_ts_us.to_pylist())
    return pa.StructArray.from_arrays(
        [pa.array(eid, pa.string()), pa.array(uid, pa.int64()), pa.array(etype, pa.string()),
         pa.array(page, pa.string()), pa.array(src, pa.string()), pa.array(ets, UTC_TS),
         pa.array(reason, pa.string())],
        fields=list(VALIDATED_TYPE),
    )


def parse_records(topic: str, partition: int, keys: list, values: list, offsets: list, timestamps_ms: list,
                  ingest_us: int) -> pa.RecordBatch:
    """Kafka records of one partition (parallel lists) -> one PARSED_SCHEMA batch.
    Each record is judged against its own Kafka timestamp; `ingest_us` only fills ingest_ts."""
    n = len(values)
    refs = [None if t is None or t < 0 else t * 1000 for t in timestamps_ms]
    eid, uid, etype, page, src, ets, text, reason = _classify(values, refs)
    raw_v = [None if r is None else v for v, r in zip(values, reason)]
    raw_k = [None if r is None else k for k, r in zip(keys, reason)]
    event_ts = pa.array(ets, UTC_TS)
    ingest_ts = pa.scalar(ingest_us, UTC_TS)
    columns = [
        pa.array(eid, pa.string()), pa.array(uid, pa.int64()), pa.array(etype, pa.string()),
        pa.array(page, pa.string()), pa.array(src, pa.string()), event_ts, pc.cast(event_ts, pa.date32()),
        pa.array(text, pa.string()), pa.repeat(pa.scalar(topic, pa.string()), n),
        pa.repeat(pa.scalar(partition, pa.int32()), n), pa.array(offsets, pa.int64()),
        pa.array(timestamps_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(UTC_TS),
        pa.repeat(ingest_ts, n), pa.array(reason, pa.string()), pa.array(raw_v, pa.binary()),
        pa.array(raw_k, pa.binary()), pa.repeat(pc.cast(ingest_ts, pa.date32()), n),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=PARSED_SCHEMA)


def split_bronze(parsed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """PARSED_SCHEMA rows -> (bronze events, quarantine rows), each cast to its contract schema."""
    valid = pc.is_null(parsed["reason"])
    events = parsed.filter(valid).select(BRONZE_EVENTS_SCHEMA.names).cast(BRONZE_EVENTS_SCHEMA)
    quarantine = parsed.filter(pc.invert(valid)).select(BRONZE_QUARANTINE_SCHEMA.names)
    return events, quarantine.cast(BRONZE_QUARANTINE_SCHEMA)


def reason_code(reason: str) -> str:
    """The rule code of a reason, e.g. "missing_field:user_id" -> "missing_field"."""
    return reason.split(":", 1)[0]
