"""The streaming layer: both Structured Streaming queries' shared code.

    source.py     the events topic through Spark's own Kafka connector (every
                  kafka.* setting passed through, read_committed) and the
                  validation UDF (lakehouse.validation's rules)
    bronze.py     raw landing's sink: bronze/events + bronze/quarantine through
                  delta-spark, idempotent per micro-batch (txnAppId/txnVersion)
    realtime.py   fast aggregation: minute windows, the future-skew rule, upserts
    progress.py   Spark's progress of each micro-batch -> ops.stream_progress
    app.py        one Spark application for the queries, graceful stop
    python_daemon.py  Spark's Python daemon for the streams: the UDF's imports
                  done once, before the workers are forked

The jobs in spark_jobs/ wire these together; the Delta tables are declared in
lakehouse.catalog.
"""

#: The streams application's exit status after Kafka data loss, and for the
#: other failures a restart cannot fix: a checkpoint of another topic, starting
#: offsets Spark refuses (lakehouse.stream.app). The process manager does not
#: restart a program that exits with it (lakehouse.platform.services).
#: EX_DATAERR of sysexits.h.
DATA_LOSS_EXIT_CODE = 65
