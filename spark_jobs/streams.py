"""Both streaming queries in one Spark application: raw landing (Kafka ->
Delta bronze) and fast aggregation (Kafka -> PostgreSQL realtime).

One application instead of two saves a JVM and a Python driver (about 0.6 GB)
and lets both queries share the local executor's cores. Each query keeps its
own checkpoint, progress rows and exactly-once guarantees; if one fails, both
stop between batches and the process manager restarts the application, and
each resumes from its checkpoint (not after Kafka data loss, which a restart
cannot fix: lakehouse.stream.app). `make up` runs this as the `streams`
program; each query also runs alone (`python -m spark_jobs.raw_landing`).

    python -m spark_jobs.streams       # settings from the environment / .env
"""

from __future__ import annotations

from lakehouse.stream.app import run_streaming_job
from spark_jobs import fast_aggregation, raw_landing

APP_NAME = "lakehouse-streams"


def main() -> None:
    run_streaming_job(
        APP_NAME,
        {raw_landing.QUERY_NAME: raw_landing.start, fast_aggregation.QUERY_NAME: fast_aggregation.start},
        "bronze/events, bronze/quarantine and realtime",
    )


if __name__ == "__main__":
    main()
