"""Unit tests of the pure event generator: determinism, fractions, mix, growth."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from lakehouse.contract import EVENT_FIELDS, EVENT_TYPES, PAGES, SOURCES
from producer.generator import (
    MALFORMED_REASONS,
    EventGenerator,
    GeneratorConfig,
    encode_event,
)

START = datetime(2026, 11, 20, tzinfo=timezone.utc)


def cfg(**kw) -> GeneratorConfig:
    base = dict(seed=42, start=START, events_per_second=200.0, duplicate_fraction=0.01,
                late_fraction=0.01, malformed_fraction=0.002, initial_users=100, late_minutes=(3, 30))
    base.update(kw)
    return GeneratorConfig(**base)


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def sample():
    return EventGenerator(cfg()).messages(50_000)


def test_same_seed_same_bytes_other_seed_differs():
    a = EventGenerator(cfg()).messages(3000)
    b = EventGenerator(cfg()).messages(3000)
    c = EventGenerator(cfg(seed=7)).messages(3000)
    later = EventGenerator(cfg(start=START + timedelta(hours=1))).messages(3000)
    assert [(m.key, m.value, m.kind) for m in a] == [(m.key, m.value, m.kind) for m in b]
    assert [m.value for m in a] != [m.value for m in c]
    ids = lambda msgs: {m.event["event_id"] for m in msgs if m.event}  # noqa: E731
    assert not ids(a) & ids(later)  # a restarted producer repeats no event_id


def test_iter_messages_matches_messages():
    it = EventGenerator(cfg()).iter_messages()
    assert [next(it).value for _ in range(500)] == [m.value for m in EventGenerator(cfg()).messages(500)]


def test_valid_events_follow_the_contract(sample):
    for m in sample:
        if m.kind == "malformed":
            continue
        e = json.loads(m.value)
        assert e == m.event
        assert tuple(e) == EVENT_FIELDS
        assert uuid.UUID(e["event_id"]).version == 4
        assert isinstance(e["user_id"], int) and e["user_id"] >= 1
        assert m.key == str(e["user_id"]).encode()
        assert e["event_type"] in EVENT_TYPES
        assert e["page"] in PAGES
        assert e["source"] in SOURCES
        assert parse_ts(e["timestamp"]).tzinfo is not None
        if m.kind == "valid":
            assert m.value == encode_event(m.event)  # the fast encoder equals json.dumps


def test_event_time_advances_with_rate():
    msgs = EventGenerator(cfg(events_per_second=100.0, duplicate_fraction=0, late_fraction=0,
                              malformed_fraction=0)).messages(1000)
    for i, m in enumerate(msgs):
        assert parse_ts(m.event["timestamp"]) == START + timedelta(milliseconds=10 * i)
    # a whole day is cheap and lands on known times
    g = EventGenerator(cfg(events_per_second=0.5))
    day = g.messages(86_400 // 2)
    assert g.clock == START + timedelta(days=1)
    valid = [parse_ts(m.event["timestamp"]) for m in day if m.kind == "valid"]
    assert min(valid) == START and max(valid) < START + timedelta(days=1)


def test_fractions_are_respected(sample):
    kinds = Counter(m.kind for m in sample)
    n = len(sample)
    assert kinds["duplicate"] / n == pytest.approx(0.01, abs=0.003)
    assert kinds["late"] / n == pytest.approx(0.01, abs=0.003)
    assert kinds["malformed"] / n == pytest.approx(0.002, abs=0.001)
    assert kinds["valid"] + kinds["duplicate"] + kinds["late"] + kinds["malformed"] == n


def test_zero_fractions_give_only_valid():
    msgs = EventGenerator(cfg(duplicate_fraction=0, late_fraction=0, malformed_fraction=0)).messages(5000)
    assert {m.kind for m in msgs} == {"valid"}
    assert len({m.event["event_id"] for m in msgs}) == 5000


def test_duplicates_resend_an_earlier_event_unchanged(sample):
    seen: dict[str, bytes] = {}
    for m in sample:
        if m.kind in ("valid", "late"):
            assert m.event["event_id"] not in seen  # new events have new ids
            seen[m.event["event_id"]] = m.value
        elif m.kind == "duplicate":
            assert seen[m.event["event_id"]] == m.value
            assert m.key == str(m.event["user_id"]).encode()


def test_late_events_lie_minutes_in_the_past():
    g = EventGenerator(cfg(late_fraction=0.2))
    lates = 0
    for _ in range(5000):
        clock = g.clock
        m = g.next_message()
        if m.kind == "late":
            lates += 1
            lag = clock - parse_ts(m.event["timestamp"])
            assert timedelta(minutes=3) - timedelta(milliseconds=1) <= lag <= timedelta(minutes=30)
        elif m.kind == "valid":
            assert abs(parse_ts(m.event["timestamp"]) - clock) < timedelta(milliseconds=1)
    assert lates > 800


def test_event_type_mix(sample):
    mix = Counter(m.event["event_type"] for m in sample if m.event)
    assert mix["click"] > mix["login"] > mix["purchase"] > 0
    assert mix["logout"] > 0
    assert set(mix) == set(EVENT_TYPES)
    assert set(Counter(m.event["source"] for m in sample if m.event)) == set(SOURCES)
    assert len({m.event["page"] for m in sample if m.event}) >= 5


def test_user_base_grows_and_activity_is_concentrated():
    g = EventGenerator(cfg(events_per_second=20.0, user_growth_per_hour=60.0))
    first = g.messages(20 * 60)  # first simulated minute
    assert 100 <= g.user_count <= 102
    slow = EventGenerator(cfg(events_per_second=1.0, user_growth_per_hour=60.0))
    slow.messages(3 * 3600)  # three simulated hours
    assert slow.user_count == 100 + 179  # the last message is at 2:59:59
    assert len(slow.active_users) == round(0.2 * 279)  # a fifth of them
    users = Counter(m.event["user_id"] for m in first if m.event)
    assert max(users) <= 102
    # ~80% of events come from the active fifth of the users
    top = sum(c for _, c in users.most_common(max(1, len(users) // 5)))
    assert top / sum(users.values()) > 0.6


def test_every_malformed_variant_appears_and_is_labelled():
    g = EventGenerator(cfg(malformed_fraction=0.5, oversize_share=0.02, oversize_bytes=100_000))
    bad = [m for m in g.messages(4000) if m.kind == "malformed"]
    reasons = Counter(m.reason_hint for m in bad)
    assert set(reasons) == set(MALFORMED_REASONS) | {"oversize"}
    for m in bad:
        assert m.event is None
        assert isinstance(m.key, bytes) and m.key
        check_malformed(m)


def check_malformed(m) -> None:
    """Each labelled variant really is broken the way its label says."""
    if m.reason_hint == "undecodable":
        with pytest.raises(UnicodeDecodeError):
            m.value.decode("utf-8")
        return
    if m.reason_hint == "not_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(m.value)
        return
    e = json.loads(m.value)
    if m.reason_hint == "missing_field":
        assert len(set(EVENT_FIELDS) - set(e)) == 1
    elif m.reason_hint == "wrong_type":
        typed = {"event_id": str, "user_id": int, "event_type": str, "page": str, "timestamp": str}
        assert any(not isinstance(e[k], t) for k, t in typed.items())
    elif m.reason_hint == "unknown_event_type":
        assert e["event_type"] not in EVENT_TYPES
    elif m.reason_hint == "absurd_timestamp":
        assert parse_ts(e["timestamp"]).year in (1970, 2200)
    elif m.reason_hint == "oversize":
        assert len(m.value) > 100_000
    else:
        raise AssertionError(m.reason_hint)


def test_oversize_is_rare_by_default_and_can_be_disabled():
    bad = EventGenerator(cfg(duplicate_fraction=0, late_fraction=0, malformed_fraction=1.0)).messages(3000)
    n_over = sum(m.reason_hint == "oversize" for m in bad)
    assert 5 <= n_over <= 70  # 1% of malformed by default
    assert all(len(m.value) >= 1_000_000 for m in bad if m.reason_hint == "oversize")
    none = EventGenerator(cfg(duplicate_fraction=0, late_fraction=0, malformed_fraction=1.0,
                              oversize_share=0)).messages(2000)
    assert not any(m.reason_hint == "oversize" for m in none)


@pytest.mark.parametrize(
    "bad",
    [dict(duplicate_fraction=0.6, late_fraction=0.5), dict(events_per_second=0),
     dict(start=datetime(2026, 1, 1)), dict(late_minutes=(5, 1)), dict(malformed_fraction=-0.1)],
)
def test_invalid_config_is_refused(bad):
    with pytest.raises(ValueError):
        cfg(**bad)


def test_producer_is_a_pipeline_program_only_when_enabled(tmp_path):
    from lakehouse.platform.launch import command_for
    from lakehouse.platform.services import services
    from tests.conftest import make_settings

    on = make_settings(tmp_path / "on", producer_rate=350.0)
    [svc] = [s for s in services(on) if s.name == "producer"]
    assert svc.group == "pipeline" and svc.command[-3:-1] == ["producer", "--env-file"]
    cmd, _ = command_for("producer", on)
    assert cmd[1:4] == ["-m", "producer", "--rate"] and cmd[4] == "350.0"
    assert "--count" not in cmd and "--duration" not in cmd  # runs until stopped
    assert on.kafka_bootstrap_servers in cmd and on.kafka_topic in cmd
    off = make_settings(tmp_path / "off", producer_enabled=False)
    assert "producer" not in [s.name for s in services(off)]
