"""Regressions found by the property test and the fuzz: JSON nested past the
decoder's depth and numbers no float or msgspec int holds get one verdict,
the same on the stream's fast path (validate_arrow) and in check_message,
and never an exception (which would fail the micro-batch on every replay)."""

from __future__ import annotations

import pyarrow as pa

from lakehouse import validation

EVENT = (b'{"event_id":"00000000-0000-0000-0000-000000000001","user_id":1,"event_type":"click","page":"/",'
         b'"timestamp":"2026-11-30T10:00:00Z","source":"web"')


def test_deeply_nested_json_is_quarantined_not_raised():
    """60 KB of '[' (under the 64 KiB limit) raises RecursionError from
    check_message; in the stream the UDF fails the batch on every restart."""
    for value in (b"[" * 30_000 + b"]" * 30_000, EVENT + b',"x":' + b"[" * 3000 + b"]" * 3000 + b"}"):
        reasons = validation.validate_arrow(pa.array([value], pa.binary()), pa.array([-1], pa.int64()))
        # one verdict on both paths, not merely "some reason" on each
        assert reasons.field("reason").to_pylist()[0] == validation.check_message(value, -1)[0] == "invalid_json"


def test_out_of_range_number_in_an_extra_field_gets_one_verdict():
    for extra in (b"1e999", b"-1e400", b"1" * 400):
        value = EVENT + b',"x":' + extra + b"}"
        udf = validation.validate_arrow(pa.array([value], pa.binary()), pa.array([-1], pa.int64()))
        assert udf.field("reason").to_pylist()[0] == validation.check_message(value, -1)[0]


def test_an_integer_of_thousands_of_digits_in_an_extra_field_is_no_reason():
    """msgspec builds no int beyond ~4,300 digits; the rules fall back to the
    standard parser rather than calling well-formed JSON invalid."""
    value = EVENT + b',"x":' + b"1" * 50_000 + b"}"
    udf = validation.validate_arrow(pa.array([value], pa.binary()), pa.array([-1], pa.int64()))
    assert udf.field("reason").to_pylist()[0] is None
    assert validation.check_message(value, -1)[0] is None
