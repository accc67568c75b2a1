"""When is an event date complete? The criterion of the DAG's sensor.

Date D is complete once raw landing's *committed* progress shows the topic
read past the cutoff, D+1 00:00 UTC plus the allowed lateness
(BATCH_ALLOWED_LATENESS_MINUTES, default 60): every record the broker got
before the cutoff is then in bronze (raw landing writes a micro-batch to
bronze before it reports it to ops.stream_progress).

Per partition, the *target* offset is

* the first offset whose Kafka timestamp is at or after the cutoff (Kafka's
  own offsets-for-times lookup): reading up to it means every earlier record
  is in; or
* when the partition has no record at or after the cutoff (an idle
  partition), its high watermark as the broker reports it now, after the
  cutoff: raw landing reaching it has read everything the partition holds.
  An idle partition therefore never blocks a raw landing that has caught up
  with the broker.

and the date is complete when now >= cutoff and, for every partition, raw
landing's latest committed end offset (ops.stream_progress, query
'raw-landing', end_offsets = {topic: {partition: next offset}}) is >= the
target. A partition whose target is not past its first retained offset holds
nothing to wait for (an empty topic, or only records after the cutoff), with
or without raw landing's progress. Kafka timestamps are the producer's send times (CreateTime), so an
event sent more than the lateness after its event date ends is late data: it
lands in bronze later and the catch-up DAG re-runs the date (docs/batch.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

RAW_LANDING = "raw-landing"


def cutoff(event_date: date, lateness: timedelta) -> datetime:
    """D+1 00:00 UTC + lateness."""
    return datetime.combine(event_date + timedelta(days=1), time(0), tzinfo=timezone.utc) + lateness


def beyond_the_wait(event_date: date, cut: datetime, wait_ends: datetime) -> str | None:
    """Pure: why a run for `event_date` cannot find it complete before its wait
    ends (its cutoff `cut` is later: today's date, or a future one), or None.
    Such a run fails at once instead of waiting the whole timeout."""
    if cut <= wait_ends:
        return None
    return (f"event date {event_date} cannot be complete before its cutoff {cut:%Y-%m-%d %H:%M} UTC "
            f"({event_date + timedelta(days=1)} 00:00 UTC plus the allowed lateness), after this run "
            f"stops waiting at {wait_ends:%Y-%m-%d %H:%M} UTC; trigger it after the cutoff")


@dataclass
class Verdict:
    complete: bool
    reason: str
    #: partitions still short: partition -> (committed, target)
    behind: dict = field(default_factory=dict)


def judge(now: datetime, cut: datetime, committed: dict[int, int] | None,
          targets: dict[int, int], beginnings: dict[int, int] | None = None) -> Verdict:
    """Pure: is the date complete, given raw landing's committed end offsets of
    the topic ({partition: offset}, None when raw landing never reported), the
    per-partition targets (see the module docstring) and the partitions'
    first retained offsets (default 0)?"""
    if now < cut:
        return Verdict(False, f"the cutoff {cut.isoformat()} has not passed yet")
    if not targets:
        return Verdict(False, "the topic has no partitions on the broker")
    beginnings = beginnings or {}
    done = committed or {}
    behind = {}
    for p, t in sorted(targets.items()):
        first = beginnings.get(p, 0)
        c = max(done.get(p, first), first)
        if c < t:
            behind[p] = (done.get(p, first), t)
    if behind and committed is None:
        return Verdict(False, "raw landing has reported no progress on the topic yet", behind)
    if behind:
        detail = ", ".join(f"partition {p} at {c} < {t}" for p, (c, t) in behind.items())
        return Verdict(False, f"raw landing has not read past {cut.isoformat()}: {detail}", behind)
    return Verdict(True, f"raw landing has read every partition past {cut.isoformat()}")


def targets(client: dict, topic: str, cut: datetime) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition of the topic: the first offset at/after the cutoff, or the
    high watermark when there is none (asked of the broker now); and the
    first retained offset. `client`: kafka-python's connection settings
    (lakehouse.kafka_clients.client_config)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, request_timeout_ms=30_000, **client)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return {}, {}
        ms = int(cut.timestamp() * 1000)
        at = consumer.offsets_for_times({tp: ms for tp in tps})
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        return ({tp.partition: (at[tp].offset if at.get(tp) is not None else ends[tp]) for tp in tps},
                {tp.partition: starts[tp] for tp in tps})
    finally:
        consumer.close()


def committed_offsets(conn, topic: str) -> tuple[dict[int, int] | None, datetime | None, dict | None]:
    """Raw landing's latest committed end offsets of the topic (from
    ops.stream_progress), when it was recorded, and the whole end_offsets.
    Latest by time, not by batch id: a new checkpoint (moved away after data
    loss, or a replay) numbers its batches from 0 again, below the old rows."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT end_offsets, recorded_at FROM ops.stream_progress "
            "WHERE query_name = %s AND end_offsets ? %s ORDER BY recorded_at DESC, batch_id DESC LIMIT 1",
            (RAW_LANDING, topic),
        )
        row = cur.fetchone()
    if row is None:
        return None, None, None
    offsets = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return {int(p): int(o) for p, o in offsets[topic].items()}, row[1], offsets
