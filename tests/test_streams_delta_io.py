"""Idempotent Delta appends (real delta-rs, temp directory)."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable

from lakehouse.delta_io import append_batch, ensure_table

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("day", pa.string(), nullable=False)])


def batch(ids):
    return pa.table({"id": pa.array(ids, pa.int64()), "day": ["d1" if i % 2 else "d2" for i in ids]}, schema=SCHEMA)


def test_replayed_batch_is_skipped(tmp_path):
    path = tmp_path / "t"
    kw = dict(schema=SCHEMA, partition_by=["day"])
    assert append_batch(path, batch([1, 2]), app_id="q:t", batch_id=0, **kw)
    assert append_batch(path, batch([3]), app_id="q:t", batch_id=1, **kw)
    assert not append_batch(path, batch([3]), app_id="q:t", batch_id=1, **kw)  # replay
    assert not append_batch(path, batch([1, 2]), app_id="q:t", batch_id=0, **kw)
    # another app id is independent
    assert append_batch(path, batch([9]), app_id="other:t", batch_id=1, **kw)
    dt = DeltaTable(str(path))
    assert sorted(dt.to_pyarrow_table()["id"].to_pylist()) == [1, 2, 3, 9]
    assert dt.transaction_version("q:t") == 1
    assert dt.metadata().partition_columns == ["day"]


def test_plain_protocol_and_empty_batches(tmp_path):
    path = tmp_path / "t"
    ensure_table(path, SCHEMA, ["day"])
    assert not append_batch(path, batch([]), schema=SCHEMA, partition_by=["day"], app_id="q", batch_id=0)
    dt = DeltaTable(str(path))
    proto = dt.protocol()
    assert (proto.min_reader_version, proto.min_writer_version) == (1, 2)
    assert not proto.reader_features and not proto.writer_features
    assert dt.to_pyarrow_table().num_rows == 0
