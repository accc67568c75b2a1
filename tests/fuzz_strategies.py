"""Hypothesis strategies for Kafka message values: arbitrary bytes, JSON of
every type, valid events, near-miss events (one rule broken, or a valid
value spelled at the edge of a rule) and huge values. The property test of
the validation rules and the fuzz of the running stream share them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from lakehouse.contract import EVENT_FIELDS, EVENT_TYPES, MAX_MESSAGE_BYTES, PAGES, SOURCES

#: Event times of generated events: recent enough for any Kafka timestamp
#: of a run to accept them (no more than 24 h ahead of it).
NOW = datetime.now(timezone.utc).replace(microsecond=0)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
)
#: Any JSON document (nested a few levels).
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=6)),
    max_leaves=30,
)


def _timestamp_text(ts: datetime, style: int) -> str:
    if style == 0:
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return ts.isoformat()  # +00:00
    if style == 2:
        return ts.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(timespec="microseconds")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@st.composite
def events(draw) -> dict:
    """A valid event (as a dict), its time within the last day."""
    ts = NOW - timedelta(seconds=draw(st.integers(0, 86_000)))
    eid = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    return {
        "event_id": eid.upper() if draw(st.booleans()) else eid,
        "user_id": draw(st.integers(1, 2**63 - 1)),
        "event_type": draw(st.sampled_from(EVENT_TYPES)),
        "page": draw(st.one_of(st.sampled_from(PAGES), st.text(max_size=30).map(lambda s: "/" + s))),
        "timestamp": _timestamp_text(ts, draw(st.integers(0, 3))),
        "source": draw(st.sampled_from(SOURCES)),
    }


#: Values that break (or just keep to) one rule each.
NEAR_MISS = {
    "event_id": st.one_of(st.text(max_size=40), st.just("00000000-0000-0000-0000-00000000000g"),
                          st.just("{00000000-0000-0000-0000-000000000000}"), st.just(str(uuid.uuid4()).replace("-", ""))),
    "user_id": st.one_of(st.integers(-(2**64), 0), st.just(2**63), st.just(2**64), st.floats(), st.just("5"),
                         st.booleans(), st.just(5.0)),
    "event_type": st.one_of(st.text(max_size=12), st.sampled_from([t.upper() for t in EVENT_TYPES]),
                            st.sampled_from([t + " " for t in EVENT_TYPES])),
    "page": st.one_of(st.text(max_size=20), st.just(""), st.just("/" + "p" * 600), st.just("/a\nb"),
                      st.just("/a\x85b"), st.just("home")),
    "timestamp": st.one_of(
        st.text(max_size=30), st.just("2026-02-30T10:00:00Z"), st.just("2026-11-30T10:00:00"),
        st.just("1999-12-31T23:59:59Z"), st.just("2999-01-01T00:00:00Z"), st.just("2026-11-30T25:00:00Z"),
        st.just("2026-11-30T10:00:00+99:99"), st.integers(), st.just("0001-01-01T00:00:00+00:01"),
    ),
    "source": st.one_of(st.text(max_size=10), st.just("WEB"), st.just("ios")),
}


@st.composite
def near_miss_events(draw) -> dict:
    """A valid event with one field changed, removed, nulled or re-typed, or
    an extra field, a duplicated key, or the fields in another order."""
    event = draw(events())
    field = draw(st.sampled_from(EVENT_FIELDS))
    how = draw(st.integers(0, 5))
    if how == 0:
        event[field] = draw(NEAR_MISS[field])
    elif how == 1:
        del event[field]
    elif how == 2:
        event[field] = None
    elif how == 3:
        event[field] = draw(json_values)
    elif how == 4:
        event[draw(st.text(max_size=10))] = draw(json_values)
    else:
        items = list(event.items())
        event = dict(draw(st.permutations(items)))
    return event


def encode(doc, style: int = 0) -> bytes:
    """JSON bytes of a document, compact, spaced or ASCII-escaped."""
    if style == 1:
        return json.dumps(doc, ensure_ascii=False, indent=1).encode()
    if style == 2:
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode()
    return json.dumps(doc, ensure_ascii=False).encode()


#: Bytes a huge value may repeat ("[" and "{": JSON nested past the decoder's depth).
FILLERS = (b"\xff", b"1", b" ", b"x", b'"', b"[", b"{")


@st.composite
def huge_values(draw) -> bytes:
    """Values around the size limit: a valid event padded to just under or
    over it, or a long run of one byte."""
    event = draw(events())
    target = MAX_MESSAGE_BYTES + draw(st.integers(-64, 64))
    body = encode(event)
    pad = max(0, target - len(body) - len(', "pad": ""'))
    if draw(st.booleans()):
        return encode({**event, "pad": "x" * pad})
    return draw(st.sampled_from(FILLERS)) * target


def _dup_key(doc: dict) -> bytes:
    """A repeated key: the JSON has the same field twice (the last counts)."""
    first = next(iter(doc))
    return encode(doc)[:-1] + b', "' + first.encode() + b'": ' + json.dumps(doc[first]).encode() + b"}"


#: Any message value a producer could send (None: a record without value).
message_values = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.builds(encode, json_values, st.integers(0, 2)),
    st.builds(encode, events(), st.integers(0, 2)),
    st.builds(encode, near_miss_events(), st.integers(0, 2)),
    near_miss_events().map(_dup_key),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
    huge_values(),
)
