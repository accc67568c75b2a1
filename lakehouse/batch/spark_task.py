"""The DAGs' Spark tasks: the provider's `@task.pyspark` (a Spark session from a
connection, the stack's Spark Connect server by default), whose Spark work
stops when Airflow stops the task.

Airflow stops a running task (the UI's "Mark as failed" or "Clear" on a
running task or run) with SIGTERM, and its task runner calls the operator's
`on_kill`. The provider's operator has none, so the task's process died while
its Spark job ran on: a Spark Connect server keeps executing an operation
whose client is gone until it notices (with Spark's defaults up to 7.5
minutes; the stack's server within ~25 s,
`lakehouse.platform.spark_connect.DETACHED_TIMEOUT_S`), and a
`bronze_to_silver` marked failed committed silver after it
(docs/operations.md). Here `on_kill` interrupts every operation of the task's
session (`SparkSession.interruptAll`, Spark Connect and classic alike): the
job is cancelled before its commit, the task ends at once.

A task past its `execution_timeout` (the DAGs': `BATCH_TASK_TIMEOUT_MINUTES`)
gets an exception in `execute` instead; the provider's operator then stops
its session, which on Spark Connect releases it and ends its operations on
the server, and Airflow calls `on_kill` after that.
"""

from __future__ import annotations

from airflow.providers.apache.spark.decorators.pyspark import _PySparkDecoratedOperator
from airflow.sdk.bases.decorator import task_decorator_factory


class InterruptiblePySparkOperator(_PySparkDecoratedOperator):
    """`@task.pyspark`'s operator, with an `on_kill` that interrupts the task's
    Spark operations."""

    def on_kill(self) -> None:
        spark = self.op_kwargs.get("spark")  # set by PySparkOperator.execute_callable
        if spark is None:
            return  # not started yet: no Spark work to stop
        if getattr(spark, "is_stopped", False):  # a Spark Connect session the operator's `finally` released
            # (after a timeout: Airflow calls on_kill once execute has raised) ends its operations with it
            self.log.info("stopped: this task's Spark session has ended, its operations with it")
            return
        try:
            interrupted = spark.interruptAll()
        except Exception as exc:  # a stopped session, an unreachable server: nothing of ours runs
            self.log.warning("could not interrupt this task's Spark operations: %s", exc)
            return
        self.log.info("stopped: interrupted %d Spark operation(s) of this task %s", len(interrupted), interrupted)


#: The Airflow connection every Spark task of the DAGs takes its session from:
#: the stack's Spark Connect server (AIRFLOW_CONN_SPARK_DEFAULT,
#: lakehouse.platform.airflow), or the cluster a user points it at.
SPARK_CONN_ID = "spark_default"


def pyspark_task(python_callable=None, multiple_outputs: bool | None = None, conn_id: str = SPARK_CONN_ID,
                 **kwargs):
    """`@task.pyspark` with the same arguments (config_kwargs, ...), its session
    from `conn_id` (SPARK_CONN_ID unless given); the task's Spark operations
    are interrupted when Airflow stops it."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=InterruptiblePySparkOperator,
        conn_id=conn_id,
        **kwargs,
    )
