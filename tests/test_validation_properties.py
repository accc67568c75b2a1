"""Property-based test of the validation rules (lakehouse.validation, the one
definition of a valid event), over at least 100,000 generated message values:
arbitrary bytes, JSON of every type, valid events, near-miss events and
values around the size limit drawn by Hypothesis (tests/fuzz_strategies.py),
each with a few byte-level mutants (cut short, one byte changed, inserted,
deleted or swapped).

For every value and Kafka timestamp:
- nothing raises;
- the verdict is exactly one of (reason, None) or (None, fields), the reason
  one of the documented codes (`missing_field`/`wrong_type` naming a contract
  field);
- the batch path the stream runs (`parse_records` and `validate_arrow`)
  gives each record the same verdict as the rule-by-rule `check_message`,
  keeps the Kafka coordinates, and splits into bronze events + quarantine
  rows that together are the batch;
- a valid event keeps every rule: UUID event_id (lower-cased), positive int64
  user_id, known event_type and source, a page starting with "/" of at most
  MAX_PAGE_CHARS characters and no control character, an event
  time from 2000 on and at most 24 h after the Kafka timestamp.
"""

from __future__ import annotations

import random
import re
import time

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse import validation
from lakehouse.contract import EVENT_FIELDS, EVENT_TYPES, MAX_MESSAGE_BYTES, SOURCES
from tests.fuzz_strategies import NOW, message_values

MIN_EXAMPLES = 100_000
#: Hypothesis draws the values; each also gives MUTANTS cheap variants (cut
#: short, one byte changed, inserted, deleted or swapped), near misses of
#: the drawn value at a fraction of Hypothesis's cost per drawn value.
MUTANTS = 28
BATCH = (6, 12)
EXAMPLES = 600  # x >= 6 drawn values x (1 + MUTANTS) >= 100,000 messages
CODES = {getattr(validation, n) for n in dir(validation) if n.startswith("REASON_")}
FIELD_CODES = {validation.REASON_MISSING_FIELD, validation.REASON_WRONG_TYPE}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NOW_MS = int(NOW.timestamp() * 1000)

#: Kafka timestamps (ms): mostly around now, also none (-1), epoch-near and far future.
kafka_timestamps = st.one_of(
    st.integers(NOW_MS - 86_400_000, NOW_MS + 86_400_000), st.just(-1), st.integers(0, 2**43),
)


def reference_us(timestamp_ms: int) -> int:
    return timestamp_ms * 1000 if timestamp_ms >= 0 else -1


def check_verdict(value: bytes | None, timestamp_ms: int) -> str | None:
    reason, fields = validation.check_message(value, reference_us(timestamp_ms))
    assert (reason is None) != (fields is None), (reason, fields)
    if reason is not None:
        code, _, field = reason.partition(":")
        assert code in CODES, reason
        assert (field in EVENT_FIELDS) if code in FIELD_CODES else field == "", reason
        return reason
    event_id, user_id, event_type, page, source, ts_us, payload = fields
    assert UUID.fullmatch(event_id)
    assert type(user_id) is int and 0 < user_id < 2**63
    assert event_type in EVENT_TYPES and source in SOURCES
    assert page.startswith("/") and len(page) <= validation.MAX_PAGE_CHARS
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in page), page  # no control characters
    assert ts_us >= int(validation.MIN_EVENT_TIME.timestamp() * 1_000_000)
    if timestamp_ms >= 0:
        assert ts_us <= timestamp_ms * 1000 + validation.MAX_FUTURE_HOURS * 3600 * 1_000_000
    assert payload.encode() == value and 0 < len(value) <= MAX_MESSAGE_BYTES
    return None


def mutants(value: bytes | None, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    data = value or b""
    out = []
    for i in range(MUTANTS):
        n = len(data)
        if n == 0:
            out.append(bytes([rng.randrange(256)]))
            continue
        at = rng.randrange(n)
        kind = i % 5
        if kind == 0:
            out.append(data[:at])
        elif kind == 1:
            out.append(data[:at] + bytes([rng.randrange(256)]) + data[at + 1:])
        elif kind == 2:
            out.append(data[:at] + bytes([rng.choice(b'"{}[],:0123456789-eE.\\ \x00\xc3')]) + data[at:])
        elif kind == 3:
            out.append(data[:at] + data[at + 1:])
        else:
            j = rng.randrange(n)
            b = bytearray(data)
            b[at], b[j] = b[j], b[at]
            out.append(bytes(b))
    return out


def test_every_rule_on_100k_generated_messages():
    seen = {"messages": 0, "valid": 0, "codes": set()}
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(message_values, kafka_timestamps, st.integers(0, 2**32)), min_size=BATCH[0], max_size=BATCH[1]))
    def batch_agrees_with_the_rules(drawn):
        records = [(v, t) for v, t, _ in drawn]
        records += [(m, t) for v, t, seed in drawn for m in mutants(v, seed)]
        values = [v for v, _ in records]
        stamps = [t for _, t in records]
        expected = [check_verdict(v, t) for v, t in records]
        offsets = list(range(len(records)))
        keys = [None if i % 2 else str(i).encode() for i in offsets]
        parsed = validation.parse_records("user-events", 1, keys, values, offsets, stamps, NOW_MS * 1000)
        got = parsed.column("reason").to_pylist()
        assert got == expected
        assert parsed.column("kafka_offset").to_pylist() == offsets
        valid = [r is None for r in expected]
        assert [e is not None for e in parsed.column("event_id").to_pylist()] == valid
        assert parsed.column("raw_value").to_pylist() == [v if r else None for v, r in zip(values, expected)]
        bronze, quarantine = validation.split_bronze(pa.Table.from_batches([parsed]))
        assert bronze.num_rows + quarantine.num_rows == len(records)
        assert bronze.num_rows == sum(r is None for r in got)
        refs = pa.array([reference_us(t) for t in stamps], pa.int64())
        udf = validation.validate_arrow(pa.array(values, pa.binary()), refs).field("reason").to_pylist()
        assert udf == got  # the stream's UDF and parse_records: one code path
        seen["messages"] += len(records)
        seen["valid"] += sum(valid)
        seen["codes"] |= {r.split(":")[0] for r in expected if r}

    batch_agrees_with_the_rules()
    elapsed = time.monotonic() - started
    assert seen["messages"] >= MIN_EXAMPLES, seen["messages"]
    # the strategies reach valid events and (nearly) every rule, not only garbage
    assert seen["valid"] >= 1_000, seen
    assert len(seen["codes"]) >= len(CODES) - 1, sorted(CODES - seen["codes"])
    print(f"{seen['messages']} messages ({seen['valid']} valid, {len(seen['codes'])} reasons) in {elapsed:.1f}s")
