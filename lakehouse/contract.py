"""The event contract and the Delta table schemas built on it: one place for
each. Producer, streams, DAG and tests import these names; nobody restates them.

Event (JSON, one per Kafka message, key = user_id):
    event_id   uuid string
    user_id    positive int
    event_type login | click | purchase | logout
    page       "/home", "/products", "/cart", "/checkout", ... (starts with "/")
    timestamp  ISO-8601 UTC event time
    source     web | mobile
"""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES = ("login", "click", "purchase", "logout")
SOURCES = ("web", "mobile")
PAGES = ("/home", "/products", "/product/detail", "/search", "/cart", "/checkout", "/account")
EVENT_FIELDS = ("event_id", "user_id", "event_type", "page", "timestamp", "source")

#: Messages larger than this are quarantined unread ("message too large").
MAX_MESSAGE_BYTES = 64 * 1024

UTC_TS = pa.timestamp("us", tz="UTC")

#: The first columns of bronze's and silver's events: the message's EVENT_FIELDS, typed
#: (`timestamp` as event_ts), and the event_date it falls on (UTC).
TYPED_EVENT_FIELDS = (
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("page", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("event_ts", UTC_TS, nullable=False),
    pa.field("event_date", pa.date32(), nullable=False),
)

#: Where a bronze row's Kafka record is (its topic, partition and offset:
#: the record's identity, exactly once) and when it was produced and landed.
RECORD_FIELDS = (
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", UTC_TS),
    pa.field("ingest_ts", UTC_TS, nullable=False),
)

#: Delta `bronze/events`: every well-formed Kafka record exactly once (resent
#: duplicates kept as they arrived), partitioned by event_date.
BRONZE_EVENTS_SCHEMA = pa.schema(
    [
        *TYPED_EVENT_FIELDS,
        pa.field("raw_payload", pa.string(), nullable=False),
        *RECORD_FIELDS,
    ]
)
BRONZE_EVENTS_PARTITION = ["event_date"]

#: Delta `bronze/quarantine`: messages that could not become events, with why.
#: raw_value is binary because undecodable bytes must survive as they came.
BRONZE_QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("raw_value", pa.binary()),
        pa.field("raw_key", pa.binary()),
        pa.field("reason", pa.string(), nullable=False),
        *RECORD_FIELDS,
        pa.field("ingest_date", pa.date32(), nullable=False),
    ]
)
BRONZE_QUARANTINE_PARTITION = ["ingest_date"]
