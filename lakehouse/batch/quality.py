"""The Great Expectations gate on silver, kept as code.

What is validated: every row the date offered after de-duplication, i.e. the
date's `silver/events` plus its `silver/quarantine` rows, so a rule-breaking
bronze row is both kept aside (quarantine, with its reason) and reported here.

Severity (in each expectation's meta):
* critical - fails `validate_silver`, so no gold is computed or loaded:
  event_id not null and unique, event_type and source in the contract's sets,
  user_id positive, event time inside the event date, page not null.
  `mostly` = 1 - settings.batch_max_rejected_fraction (0 by default: strict).
* warning - recorded in ops.data_quality and the Data Docs, never blocks:
  page in the contract's known pages, at least one row for the date.

The suite runs where the data is: `validate_silver` hands it a Spark
DataFrame (GE's Spark datasource, every metric a Spark job), tests may hand
it a tiny pandas frame (GE's pandas datasource).

Results are kept under <run dir>/data_quality/: every validation result as
JSON in GE's results store (`results/silver_events/<run id>/<run
time>/silver-events_<event_date>.json`) and the Data Docs HTML site
(`data_docs/index.html`: a page per validation, the latest INDEX_VALIDATIONS
listed); one summary row per expectation goes to `ops.data_quality`.

An expectation GE could not evaluate (its Spark query failed: the Spark
server restarted, an executor was lost) is not a data failure: GE reports
it as unsuccessful with the error it caught, and `validate` raises
ValidationNotRun instead of returning outcomes, so nothing is recorded and
the task is retried rather than the gate failing for good.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from lakehouse.batch.silver import day_bounds
from lakehouse.contract import EVENT_TYPES, PAGES, SOURCES

log = logging.getLogger(__name__)

SUITE_NAME = "silver_events"
COLUMNS = ["event_id", "user_id", "event_type", "source", "page", "event_ts"]


class QualityGateError(RuntimeError):
    """A critical expectation failed; the message names it with its counts."""


class ValidationNotRun(RuntimeError):
    """GE could not evaluate some expectations (their queries failed): says
    nothing about the data; the task is retried."""


@dataclass(frozen=True)
class Outcome:
    expectation: str
    column: str
    severity: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    sample: list

    @property
    def target(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation

    def describe(self) -> str:
        counts = (
            f"{self.unexpected_count} of {self.element_count} rows unexpected"
            if self.unexpected_count is not None
            else "failed"
        )
        sample = f", e.g. {self.sample[:3]}" if self.sample else ""
        return f"{self.target}: {counts}{sample}"


def build_suite(event_date: date, max_rejected_fraction: float = 0.0):
    """The suite for one event date (the date bounds the event time)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    mostly = 1.0 - max_rejected_fraction
    start, end = day_bounds(event_date)
    critical = {"severity": "critical"}
    warning = {"severity": "warning"}
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for exp in (
        gxe.ExpectColumnValuesToNotBeNull(column="event_id", mostly=mostly, meta=critical),
        gxe.ExpectColumnValuesToBeUnique(column="event_id", mostly=mostly, meta=critical),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES), mostly=mostly, meta=critical),
        gxe.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES), mostly=mostly, meta=critical),
        gxe.ExpectColumnValuesToBeBetween(column="user_id", min_value=1, mostly=mostly, meta=critical),
        gxe.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=start, max_value=end - timedelta(microseconds=1),
            mostly=mostly, meta=critical,
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="page", mostly=mostly, meta=critical),
        gxe.ExpectColumnValuesToBeInSet(column="page", value_set=list(PAGES), meta=warning),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=warning),
    ):
        suite.add_expectation(exp)
    return suite


#: Unexpected values shown per failed expectation (the gate's message, the Data Docs).
SAMPLE_SIZE = 20

#: Validations listed on the Data Docs index, newest first. Every listed one is
#: read from the results store at each run; older pages stay on disk.
INDEX_VALIDATIONS = 30

#: GE's results store, under the output directory. Not `validations/`: our
#: own JSON copies went there until session 33, in a layout GE's store cannot
#: parse (listing them failed the Data Docs build).
RESULTS_DIR = "results"


def validate(frame, event_date: date, run_id: str, out_dir: Path,
             max_rejected_fraction: float = 0.0) -> list[Outcome]:
    """Run the suite on `frame` with Great Expectations, keep the JSON result
    and the Data Docs under `out_dir`, and return one Outcome per expectation.

    `frame` is a Spark DataFrame (classic or Spark Connect: GE's Spark
    datasource computes every metric on the executors, so a day of any size
    is checked without reaching the task's memory) or, for tiny frames in
    tests, a pandas DataFrame (GE's pandas datasource). Same suite either way.

    A first pass asks for the counts only: each sample of unexpected values is
    one more query over the whole day (on a clean day it finds nothing and
    reads everything), 8 of them on Spark. When an expectation fails with
    unexpected values, the suite runs again with samples, so the failure
    names examples; that second result is the one kept. A failure without
    values to show (an empty day's row count) keeps the first result."""
    gx_run = _gx_run_id(run_id)  # one id for both passes: the second's result replaces the first's
    stored, validation = _run_suite(frame, event_date, gx_run, out_dir, max_rejected_fraction, sample_size=0)
    if any(not r.success and (r.result or {}).get("unexpected_count") for r in validation.results):
        stored, validation = _run_suite(frame, event_date, gx_run, out_dir, max_rejected_fraction,
                                        sample_size=SAMPLE_SIZE)
    log.info("validation result: %s; data docs: %s", stored, out_dir / "data_docs" / "index.html")
    outcomes = [_outcome(r) for r in validation.results]
    not_run: dict[str, list[str]] = {}  # an error's first line -> the expectations it stopped
    for r, outcome in zip(validation.results, outcomes):
        if errors := caught_errors(r.exception_info):
            not_run.setdefault((errors[0].strip() or "an error").splitlines()[0], []).append(outcome.target)
    if not_run:
        raise ValidationNotRun(
            f"Great Expectations could not evaluate {sum(map(len, not_run.values()))} expectation(s) of silver for "
            f"{event_date}: their Spark queries failed, which says nothing about the data: "
            + "; ".join(f"{error} ({', '.join(targets[:3])}{f' and {len(targets) - 3} more' if len(targets) > 3 else ''})"
                        for error, targets in not_run.items())
        )
    return outcomes


def caught_errors(exception_info) -> list[str]:
    """The messages of the errors GE caught while computing an expectation's
    metrics: its `exception_info` is one `{"raised_exception": ...,
    "exception_message": ...}` (an expectation whose validation raised), or
    one such per metric id (metrics whose computation was aborted)."""
    if not exception_info:
        return []
    parts = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    return [str(p.get("exception_message") or "") for p in parts if isinstance(p, dict) and p.get("raised_exception")]


def _run_suite(frame, event_date: date, gx_run, out_dir: Path, max_rejected_fraction: float,
               sample_size: int):
    """One checkpoint run of the suite: its result stored under
    `out_dir/results/` and the Data Docs updated. Returns where the store
    keeps the result (a file URL) and the result.

    The results store is GE's file store, not memory: the Data Docs index
    lists the results its store holds, and GE deletes the pages of results it
    cannot find there, so an in-memory store kept the latest validation only."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # Our Data Docs site only: GE's default ephemeral context adds a second
    # site in a fresh temporary directory, builds it at every run and never
    # removes it (4 MB of HTML left in /tmp per validation).
    defaults = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    stores = {**defaults.stores, defaults.validation_results_store_name: {
        "class_name": "ValidationResultsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out_dir / RESULTS_DIR)},
    }}
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=defaults,
        stores=stores,
        data_docs_sites={"lakehouse": {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(out_dir / "data_docs")},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                   "validation_results_limit": INDEX_VALIDATIONS},
        }},
        # no progress bar: in a task's log it is a line at level "error" per validation
        progress_bars=ProgressBarsConfig(globally=False),
    ))
    source = (context.data_sources.add_pandas("silver") if isinstance(frame, pd.DataFrame)
              else context.data_sources.add_spark("silver", persist=False))
    batch = (
        source
        .add_dataframe_asset(f"events_{event_date.isoformat()}")
        .add_batch_definition_whole_dataframe("date")
    )
    suite = context.suites.add(build_suite(event_date, max_rejected_fraction))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"silver_events_{event_date.isoformat()}", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="silver_gate",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": sample_size},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=gx_run)
    key, validation = next(iter(result.run_results.items()))
    store = context.validation_results_store
    return store.store_backend.get_url_for_key(store.key_to_tuple(key)), validation


def gate(outcomes: list[Outcome], event_date: date) -> None:
    """Raise QualityGateError naming every failed critical expectation; log warnings."""
    for o in outcomes:
        if not o.success and o.severity == "warning":
            log.warning("data quality warning for %s: %s", event_date, o.describe())
    failed = [o for o in outcomes if not o.success and o.severity == "critical"]
    if failed:
        raise QualityGateError(
            f"silver for {event_date} failed {len(failed)} critical expectation(s): "
            + "; ".join(o.describe() for o in failed)
        )


def summary_rows(outcomes: list[Outcome], run_id: str, event_date: date) -> list[tuple]:
    """Rows of ops.data_quality for one validation."""
    return [
        (run_id, event_date, o.expectation, o.column, o.severity, o.success, o.element_count, o.unexpected_count)
        for o in outcomes
    ]


def _outcome(r) -> Outcome:
    cfg = r.expectation_config
    res = r.result or {}
    return Outcome(
        expectation=cfg.type,
        column=str(cfg.kwargs.get("column") or ""),
        severity=(cfg.meta or {}).get("severity", "critical"),
        success=bool(r.success),
        element_count=res.get("element_count", res.get("observed_value") if cfg.type.startswith("expect_table") else None),
        unexpected_count=res.get("unexpected_count"),
        sample=[_plain(v) for v in (res.get("partial_unexpected_list") or [])],
    )


def _plain(v):
    return v if isinstance(v, (str, int, float, type(None))) else str(v)


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def _gx_run_id(run_id: str):
    from great_expectations.core.run_identifier import RunIdentifier

    return RunIdentifier(run_name=_safe(run_id))
