"""Deterministic clickstream event generator (pure: no clock, no I/O).

Event time is simulated: message number i carries the time
``start + i / events_per_second``, so a test can make a whole day of events in
seconds and know every timestamp. The same seed gives the same messages, byte
for byte. The stream mixes in, by configurable fractions:

* ``duplicate`` -- an earlier event resent unchanged (same event_id, same bytes);
* ``late``      -- a new event whose time lies ``late_minutes`` in the past;
* ``malformed`` -- bytes that must be quarantined, labelled with ``reason_hint``
  (``not_json``, ``undecodable``, ``missing_field``, ``wrong_type``,
  ``unknown_event_type``, ``absurd_timestamp``, ``oversize``).

Deterministic for (seed, start): the same pair gives the same bytes in any
process; another start gives other event_ids.

Users: about ``initial_users`` at the start, ``user_growth_per_hour`` more every
simulated hour; a rotating "active" fifth of them makes ``active_event_share``
(80%) of the events. Event types follow a session-like mix, click > login >
purchase, with logouts.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from lakehouse.contract import EVENT_FIELDS, PAGES, SOURCES

#: Relative weights of the event types (click > login > purchase; logout).
EVENT_TYPE_WEIGHTS = {"click": 0.70, "login": 0.14, "logout": 0.10, "purchase": 0.06}
#: Pages a purchase happens on, and the pages a login lands on.
PURCHASE_PAGES = ("/checkout", "/cart")
LOGIN_PAGES = ("/home", "/account")
#: The kinds of Message.
KINDS = ("valid", "duplicate", "late", "malformed")
#: The malformed variants; "oversize" is drawn with its own share (rare).
MALFORMED_REASONS = (
    "not_json",
    "undecodable",
    "missing_field",
    "wrong_type",
    "unknown_event_type",
    "absurd_timestamp",
)
OVERSIZE = "oversize"


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 42
    start: datetime = datetime(2026, 11, 20, tzinfo=timezone.utc)
    events_per_second: float = 200.0
    duplicate_fraction: float = 0.01
    late_fraction: float = 0.01
    malformed_fraction: float = 0.002
    initial_users: int = 100
    user_growth_per_hour: float = 60.0
    active_user_share: float = 0.2
    active_event_share: float = 0.8
    active_churn_per_minute: float = 0.05
    late_minutes: tuple[float, float] = (3, 30)
    #: Share of malformed messages that are oversize (megabyte-sized); 0 disables.
    oversize_share: float = 0.01
    oversize_bytes: int = 1_000_000
    #: How many recent events a duplicate may be drawn from.
    duplicate_window: int = 10_000

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if self.events_per_second <= 0:
            raise ValueError("events_per_second must be > 0")
        fractions = (self.duplicate_fraction, self.late_fraction, self.malformed_fraction)
        if any(not 0 <= f <= 1 for f in fractions) or sum(fractions) > 1:
            raise ValueError(f"fractions must be in [0, 1] and sum to <= 1, got {fractions}")
        if self.initial_users < 1:
            raise ValueError("initial_users must be >= 1")
        lo, hi = self.late_minutes
        if not 0 < lo <= hi:
            raise ValueError(f"late_minutes must be 0 < low <= high, got {self.late_minutes}")
        if not 0 <= self.oversize_share <= 1:
            raise ValueError("oversize_share must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record to send. ``event`` is the parsed payload of an event
    (valid, duplicate, late); None for malformed, which carry ``reason_hint``."""

    key: bytes
    value: bytes
    kind: str
    event: dict | None
    reason_hint: str | None = None


def format_timestamp(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, e.g. 2026-11-20T00:00:00.005Z."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_event(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


@dataclass
class _Users:
    """The growing user base and its rotating active subset."""

    rng: random.Random
    config: GeneratorConfig
    count: int = 0
    active: list[int] = field(default_factory=list)
    active_set: set[int] = field(default_factory=set)
    source: dict[int, str] = field(default_factory=dict)
    minute: int = -1

    def advance(self, elapsed_s: float) -> None:
        c = self.config
        target = c.initial_users + int(c.user_growth_per_hour * elapsed_s / 3600.0)
        while self.count < target:
            self.count += 1
            self.source[self.count] = self.rng.choices(SOURCES, weights=(0.55, 0.45))[0]
            self._activate(self.count)  # newcomers start active
        want = max(1, round(c.active_user_share * self.count))
        while len(self.active) > want:
            self._deactivate(self.rng.randrange(len(self.active)))
        while len(self.active) < want:
            self._activate(self.rng.randint(1, self.count))
        minute = int(elapsed_s // 60)
        if minute != self.minute:
            self.minute = minute
            for _ in range(int(c.active_churn_per_minute * len(self.active))):
                self._deactivate(self.rng.randrange(len(self.active)))
                self._activate(self.rng.randint(1, self.count))

    def _activate(self, user: int) -> None:
        if user not in self.active_set and len(self.active_set) < self.count:
            self.active_set.add(user)
            self.active.append(user)

    def _deactivate(self, index: int) -> None:
        user = self.active[index]
        self.active[index] = self.active[-1]
        self.active.pop()
        self.active_set.discard(user)

    def pick(self) -> int:
        if self.rng.random() < self.config.active_event_share:
            return self.active[self.rng.randrange(len(self.active))]
        return self.rng.randint(1, self.count)


class EventGenerator:
    """Messages of the clickstream, deterministic for ``config.seed``."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        self.config = config or GeneratorConfig()
        # Seeded by seed and start: a restarted producer (new start) never
        # repeats the event_ids of an earlier run with the same seed.
        stream = f"{self.config.seed}/{self.config.start.isoformat()}"
        self._rng = random.Random(stream)
        self._users = _Users(random.Random(stream + "/users"), self.config)
        self._recent: deque[Message] = deque(maxlen=self.config.duplicate_window)
        self._index = 0
        self._start_us = int(self.config.start.timestamp() * 1_000_000)
        self._us_per_event = 1_000_000 / self.config.events_per_second
        self._types = tuple(EVENT_TYPE_WEIGHTS)
        self._type_cum = _cumulative(EVENT_TYPE_WEIGHTS.values())
        self._malformed_n = 0
        self._second = -1
        self._ts_cache: tuple[int, str] = (-1, "")

    # --- public ---------------------------------------------------------------
    @property
    def clock(self) -> datetime:
        """Event time of the next message."""
        return _from_us(self._now_us())

    @property
    def user_count(self) -> int:
        return self._users.count

    @property
    def active_users(self) -> frozenset[int]:
        return frozenset(self._users.active_set)

    def messages(self, n: int) -> list[Message]:
        return [self.next_message() for _ in range(n)]

    def iter_messages(self) -> Iterator[Message]:
        while True:
            yield self.next_message()

    def next_message(self) -> Message:
        now_us = self._now_us()
        second = (now_us - self._start_us) // 1_000_000
        if second != self._second:  # users change on a one-second grain
            self._second = second
            self._users.advance(float(second))
        c, r = self.config, self._rng.random()
        self._index += 1
        if r < c.malformed_fraction:
            return self._malformed(now_us)
        r -= c.malformed_fraction
        if r < c.duplicate_fraction and self._recent:
            old = self._recent[self._rng.randrange(len(self._recent))]
            return Message(old.key, old.value, "duplicate", dict(old.event))
        r -= c.duplicate_fraction
        if r < c.late_fraction:
            lo, hi = c.late_minutes
            msg = self._event(now_us - int(self._rng.uniform(lo, hi) * 60_000_000), "late")
        else:
            msg = self._event(now_us, "valid")
        self._recent.append(msg)
        return msg

    # --- internals ------------------------------------------------------------
    def _now_us(self) -> int:
        return self._start_us + int(self._index * self._us_per_event)

    def _new_event(self, ts_us: int) -> dict:
        rng = self._rng
        user = self._users.pick()
        etype = self._types[_bisect(self._type_cum, rng.random())]
        if etype == "purchase":
            page = rng.choice(PURCHASE_PAGES)
        elif etype == "login":
            page = rng.choice(LOGIN_PAGES)
        else:
            page = PAGES[rng.randrange(len(PAGES))]
        source = self._users.source[user]
        if rng.random() < 0.1:  # the same user sometimes switches device
            source = SOURCES[1 - SOURCES.index(source)]
        return {
            "event_id": _uuid4(rng.getrandbits(128)),
            "user_id": user,
            "event_type": etype,
            "page": page,
            "timestamp": self._timestamp(ts_us),
            "source": source,
        }

    def _timestamp(self, ts_us: int) -> str:
        """format_timestamp, with the whole-second prefix cached (hot path)."""
        sec, ms = divmod(ts_us // 1000, 1000)
        if self._ts_cache[0] != sec:
            self._ts_cache = (sec, format_timestamp(_from_us(sec * 1_000_000))[:-5])
        return f"{self._ts_cache[1]}.{ms:03d}Z"

    def _event(self, ts_us: int, kind: str) -> Message:
        e = self._new_event(ts_us)
        # Same bytes as encode_event (a test checks), without json's overhead:
        # every value here is an int or a string that needs no escaping.
        value = (
            f'{{"event_id":"{e["event_id"]}","user_id":{e["user_id"]},"event_type":"{e["event_type"]}",'
            f'"page":"{e["page"]}","timestamp":"{e["timestamp"]}","source":"{e["source"]}"}}'
        ).encode()
        return Message(str(e["user_id"]).encode(), value, kind, e)

    def _malformed(self, now_us: int) -> Message:
        rng, c = self._rng, self.config
        event = self._new_event(now_us)
        key = str(event["user_id"]).encode()
        if c.oversize_share and rng.random() < c.oversize_share:
            reason = OVERSIZE
        else:
            reason = MALFORMED_REASONS[self._malformed_n % len(MALFORMED_REASONS)]
            self._malformed_n += 1
        if reason == "not_json":
            value = ("{" + encode_event(event).decode()[: rng.randint(5, 40)]).encode()
        elif reason == "undecodable":
            value = b"\xff\xfe" + bytes(rng.getrandbits(8) for _ in range(24)) + b"\x80"
        elif reason == "missing_field":
            del event[EVENT_FIELDS[rng.randrange(len(EVENT_FIELDS))]]
            value = encode_event(event)
        elif reason == "wrong_type":
            field_, bad = rng.choice(
                (("user_id", f"user-{event['user_id']}"), ("user_id", None), ("timestamp", 1_700_000_000),
                 ("event_type", 3), ("page", ["/home"]), ("event_id", 12345))
            )
            event[field_] = bad
            value = encode_event(event)
        elif reason == "unknown_event_type":
            event["event_type"] = rng.choice(("signup", "refund", "CLICK", ""))
            value = encode_event(event)
        elif reason == "absurd_timestamp":
            year = rng.choice((1970, 2200))
            event["timestamp"] = event["timestamp"].replace(event["timestamp"][:4], str(year), 1)
            value = encode_event(event)
        else:  # oversize: a well-shaped event padded past any sane size
            event["padding"] = "x" * c.oversize_bytes
            value = encode_event(event)
        return Message(key, value, "malformed", None, reason)


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def _uuid4(bits: int) -> str:
    """str(uuid.UUID(int=bits, version=4)), about three times faster."""
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _cumulative(weights) -> list[float]:
    total, out, acc = sum(weights), [], 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def _bisect(cum: list[float], x: float) -> int:
    for i, edge in enumerate(cum):
        if x < edge:
            return i
    return len(cum) - 1
