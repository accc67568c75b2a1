"""Delta Lake access through delta-rs: idempotent micro-batch appends.

Exactly once rests on Delta application transactions: every append of a
streaming micro-batch commits a `txn` action (app_id, version=batch_id) in the
same atomic commit as its data files. Before writing, the table's last version
for that app id is read; a batch at or below it was committed already (the
stream crashed after the commit but before its checkpoint), so it is skipped.
Each table has its own app id, so two tables written by one batch are each
idempotent and a crash between the two writes neither loses nor duplicates.

Tables use the plain reader/writer protocol (1, 2) and no delta-rs-only
features, so delta-spark and Databricks read them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

log = logging.getLogger(__name__)


def ensure_table(path: str | Path, schema: pa.Schema, partition_by: list[str]) -> DeltaTable:
    """Open the table at `path`, creating it empty (schema, partitioning) if absent,
    so readers find it before the first row lands."""
    try:
        return DeltaTable(str(path))
    except TableNotFoundError:
        return DeltaTable.create(str(path), schema, mode="ignore", partition_by=partition_by)


def committed_version(table: DeltaTable, app_id: str) -> int | None:
    """The last micro-batch id committed to `table` under `app_id`, or None."""
    table.update_incremental()
    return table.transaction_version(app_id)


def append_batch(
    path: str | Path,
    data: pa.Table,
    *,
    schema: pa.Schema,
    partition_by: list[str],
    app_id: str,
    batch_id: int,
) -> bool:
    """Append `data` as micro-batch `batch_id` of `app_id`, at most once.

    Returns True when this call committed, False when the batch had been
    committed before (a replay) and was skipped. Empty batches commit nothing.
    """
    table = ensure_table(path, schema, partition_by)
    last = committed_version(table, app_id)
    if last is not None and batch_id <= last:
        log.info("skip %s batch %s: already committed (last %s)", app_id, batch_id, last)
        return False
    if data.num_rows == 0:
        return False
    write_deltalake(
        table,
        data.select(schema.names).cast(schema),
        mode="append",
        partition_by=partition_by,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(app_id=app_id, version=batch_id)],
            custom_metadata={"app_id": app_id, "batch_id": str(batch_id)},
        ),
    )
    return True
