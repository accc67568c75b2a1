"""Bronze data without the streams, for tests and benchmarks.

`write_bronze_day` turns one simulated day of the producer's events
(`producer.generator`) into bronze rows exactly as raw landing would store
them (resent duplicates kept, each with its own Kafka offset) and writes them
to the Delta table `bronze/events` with delta-rs. It returns the gold values
expected for the day, computed independently in plain Python from the
generated events (no Spark, no SQL), so tests can compare against them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import pyarrow as pa
from deltalake import write_deltalake

from lakehouse.contract import BRONZE_EVENTS_PARTITION, BRONZE_EVENTS_SCHEMA
from lakehouse.settings import Settings
from producer.generator import EventGenerator, GeneratorConfig, Message

#: Simulated delay between the producer's send and raw landing's commit.
INGEST_DELAY = timedelta(seconds=1)


@dataclass
class ExpectedDay:
    """What one day of generated events should produce downstream."""

    event_date: date
    bronze_rows: int = 0
    duplicates: int = 0
    event_ids: set = field(default_factory=set)
    users: set = field(default_factory=set)
    purchasers: set = field(default_factory=set)
    total_purchases: int = 0
    events_per_source: Counter = field(default_factory=Counter)
    purchases_per_page: Counter = field(default_factory=Counter)

    def add(self, event: dict) -> None:
        """Count one bronze record's event (duplicates by event_id count once)."""
        self.bronze_rows += 1
        if event["event_id"] in self.event_ids:
            self.duplicates += 1
            return
        self.event_ids.add(event["event_id"])
        self.users.add(event["user_id"])
        self.events_per_source[event["source"]] += 1
        if event["event_type"] == "purchase":
            self.purchasers.add(event["user_id"])
            self.total_purchases += 1
            self.purchases_per_page[event["page"]] += 1

    @property
    def silver_rows(self) -> int:
        return len(self.event_ids)

    def gold_rows(self) -> dict[str, list[tuple]]:
        """Expected rows of each gold table (without updated_at), sorted by key."""
        d, dau = self.event_date, len(self.users)
        if dau == 0:
            return {"daily_active_users": [], "conversion_rate_daily": [],
                    "events_per_source_daily": [], "purchases_per_page_daily": []}
        return {
            "daily_active_users": [(d, dau)],
            "conversion_rate_daily": [(d, len(self.purchasers) / dau, self.total_purchases, dau)],
            "events_per_source_daily": sorted((d, s, n) for s, n in self.events_per_source.items()),
            "purchases_per_page_daily": sorted((d, p, n) for p, n in self.purchases_per_page.items()),
        }


def day_messages(event_date: date, n_events: int, seed: int = 42,
                 duplicate_fraction: float = 0.01) -> tuple[list[Message], datetime, float]:
    """About n_events producer messages spread evenly over event_date (no late
    or malformed ones: those never reach bronze/events for this date).
    Returns the messages, the day's start and the events per second."""
    start = datetime.combine(event_date, time(0), tzinfo=timezone.utc)
    eps = n_events / 86_400
    gen = EventGenerator(GeneratorConfig(
        seed=seed, start=start, events_per_second=eps, duplicate_fraction=duplicate_fraction,
        late_fraction=0.0, malformed_fraction=0.0,
    ))
    return gen.messages(n_events), start, eps


def bronze_table(events: list[dict], sent_at: list[datetime], topic: str, partitions: int,
                 raw_payloads: list[str] | None = None, first_offset: int = 0) -> pa.Table:
    """Bronze rows for events as raw landing writes them: Kafka partition by
    key (user_id), offsets in send order per partition, Kafka timestamp =
    send time, ingest time a second later. event_date/event_ts come from the
    event's timestamp. Fields are taken as given (tests inject bad values)."""
    import json

    offsets: Counter = Counter()
    cols: dict[str, list] = {name: [] for name in BRONZE_EVENTS_SCHEMA.names}
    for i, (event, sent) in enumerate(zip(events, sent_at)):
        ts = datetime.fromisoformat(event["timestamp"])
        part = abs(int(event["user_id"])) % partitions
        cols["event_id"].append(event["event_id"])
        cols["user_id"].append(event["user_id"])
        cols["event_type"].append(event["event_type"])
        cols["page"].append(event["page"])
        cols["source"].append(event["source"])
        cols["event_ts"].append(ts)
        cols["event_date"].append(ts.astimezone(timezone.utc).date())
        cols["raw_payload"].append(raw_payloads[i] if raw_payloads else json.dumps(event, separators=(",", ":")))
        cols["kafka_topic"].append(topic)
        cols["kafka_partition"].append(part)
        cols["kafka_offset"].append(first_offset + offsets[part])
        offsets[part] += 1
        cols["kafka_timestamp"].append(sent)
        cols["ingest_ts"].append(sent + INGEST_DELAY)
    return pa.table(cols, schema=BRONZE_EVENTS_SCHEMA)


def write_bronze(settings: Settings, table: pa.Table, replace_date: date | None = None) -> None:
    """Append rows to bronze/events, or replace one event date's rows."""
    kwargs = {}
    if replace_date is not None:
        kwargs = {"mode": "overwrite", "predicate": f"event_date = '{replace_date.isoformat()}'"}
    else:
        kwargs = {"mode": "append"}
    write_deltalake(settings.table_path("bronze", "events"), table,
                    partition_by=BRONZE_EVENTS_PARTITION, **kwargs)


def write_bronze_day(settings: Settings, event_date: date, n_events: int, seed: int = 42,
                     duplicate_fraction: float = 0.01, chunk: int = 250_000) -> ExpectedDay:
    """Generate about n_events messages for event_date, replace that date in
    bronze/events with them, and return the expected downstream values.
    Deterministic for (event_date, n_events, seed, duplicate_fraction)."""
    messages, start, eps = day_messages(event_date, n_events, seed + event_date.toordinal(), duplicate_fraction)
    expected = ExpectedDay(event_date)
    tables = []
    offset = 0
    for lo in range(0, len(messages), chunk):
        part = messages[lo:lo + chunk]
        events = [m.event for m in part]
        sent = [start + timedelta(seconds=(lo + i) / eps) for i in range(len(part))]
        for e in events:
            expected.add(e)
        tables.append(bronze_table(events, sent, settings.kafka_topic, settings.kafka_partitions,
                                   [m.value.decode() for m in part], first_offset=offset))
        offset += chunk  # keeps (partition, offset) unique across chunks
    table = pa.concat_tables(tables) if tables else BRONZE_EVENTS_SCHEMA.empty_table()
    write_bronze(settings, table, replace_date=event_date)
    return expected
