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
the server, and Airflow calls `on_kill` after that. The release waits for
the server at most `SERVER_WAIT_S`: the timeout is for a server that hangs,
and pyspark's release would wait for such a server for ever, and the task
with it (seen with a server frozen by SIGSTOP).
"""

from __future__ import annotations

import threading

from airflow.providers.apache.spark.decorators.pyspark import _PySparkDecoratedOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk.bases.decorator import task_decorator_factory

#: How long a task's end waits for the Spark server to release the task's
#: session: a server that does not answer (hung, frozen, cut off) must not keep
#: a task Airflow timed out from ending. pyspark's gRPC calls have no deadline;
#: the release is left behind in a daemon thread, and the server cancels the
#: operations of a client that is gone (~25 s, lakehouse.platform.spark_connect)
#: once it answers again.
SERVER_WAIT_S = 10


class _SessionStopInTime(PythonOperator):
    """Sits between the provider's PySparkOperator (which builds the session,
    runs the callable, and stops the session in a `finally`) and PythonOperator
    in the MRO: that stop waits for the server at most SERVER_WAIT_S."""

    def execute_callable(self):
        spark = self.op_kwargs.get("spark")
        if spark is not None:
            stop = spark.stop  # best effort: pyspark logs a failed release and goes on

            def stop_in_time() -> None:
                release = threading.Thread(target=stop, name="spark-session-release", daemon=True)
                release.start()
                release.join(SERVER_WAIT_S)
                if release.is_alive():
                    self.server_silent = True
                    self.log.warning(
                        "the Spark server did not answer the session's release within %d s; the task ends "
                        "without it (the server cancels the task's operations once it answers again and no "
                        "client has reattached)", SERVER_WAIT_S)

            spark.stop = stop_in_time
        return super().execute_callable()


class InterruptiblePySparkOperator(_PySparkDecoratedOperator, _SessionStopInTime):
    """`@task.pyspark`'s operator, with an `on_kill` that interrupts the task's
    Spark operations, and a session stop that waits for the server at most
    SERVER_WAIT_S."""

    def on_kill(self) -> None:
        spark = self.op_kwargs.get("spark")  # set by PySparkOperator.execute_callable
        if spark is None:
            return  # not started yet: no Spark work to stop
        if getattr(self, "server_silent", False):  # the session's release got no answer: nor would an interrupt
            return
        if getattr(spark, "is_stopped", False):  # a Spark Connect session the operator's `finally` released
            # (after a timeout: Airflow calls on_kill once execute has raised) ends its operations with it
            self.log.info("stopped: this task's Spark session has ended, its operations with it")
            return
        try:
            # in this thread: on SIGTERM (the only way here with a live session) the task's main thread
            # stands inside a call of the same client (another thread's interrupt waited on it, 1 run
            # in 5), and Airflow's supervisor kills the process 5 s after its SIGTERM in any case
            interrupted = spark.interruptAll()
        except Exception as exc:  # a stopped session, an unreachable server: nothing more to do here
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
