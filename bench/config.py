"""How big each measurement is, for `--quick` and the full run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    runs: int  # every figure is the median of this many runs (>= 3)
    ceiling_events: int  # messages per broker-ceiling run
    ingest_seconds: float  # producer at full speed, per ingest run
    drain_events: int  # events pre-loaded per drain run (streams stopped while loading)
    freshness_seconds: float  # producer at freshness_rate, per freshness run
    freshness_rate: float
    batch_events: int  # one day of events written into bronze for the DAG
    batch_date: date  # the event date the batch phase writes and processes
    drain_timeout_s: float  # how long a stream may take to catch up after a run
    poll_interval_s: float  # freshness probe period (latency resolution)

    @classmethod
    def make(cls, quick: bool, events_per_day: int | None = None, runs: int = 3) -> "BenchConfig":
        if runs < 3:
            raise ValueError("each figure is the median of at least 3 runs")
        return cls(
            quick=quick,
            runs=runs,
            ceiling_events=100_000 if quick else 300_000,
            ingest_seconds=15.0 if quick else 60.0,
            drain_events=300_000 if quick else 1_000_000,  # 100k-record batches: 3+ per query
            freshness_seconds=20.0 if quick else 60.0,
            freshness_rate=1000.0,
            batch_events=events_per_day or (200_000 if quick else 1_000_000),
            batch_date=date(2026, 1, 15),
            drain_timeout_s=240.0 if quick else 600.0,
            poll_interval_s=0.1,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batch_date"] = self.batch_date.isoformat()
        return d
