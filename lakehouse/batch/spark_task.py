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

A server that stops or restarts under a running task (killed, out of memory,
restarted) leaves pyspark's errors for it (`[RESPONSE_ALREADY_RECEIVED]
INVALID_HANDLE.SESSION_NOT_FOUND ...`, `Stream removed`, `Cannot call
methods on a stopped SparkContext`), which name neither the server nor where
to look; the task fails with `SparkServerLost`, which does, and Airflow
retries it as before.
"""

from __future__ import annotations

import threading

from airflow.providers.apache.spark.decorators.pyspark import _PySparkDecoratedOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk.bases.decorator import task_decorator_factory
from airflow.sdk.exceptions import AirflowException

#: How long a task's end waits for the Spark server to release the task's
#: session: a server that does not answer (hung, frozen, cut off) must not keep
#: a task Airflow timed out from ending. pyspark's gRPC calls have no deadline;
#: the release is left behind in a daemon thread, and the server cancels the
#: operations of a client that is gone (~25 s, lakehouse.platform.spark_connect)
#: once it answers again.
SERVER_WAIT_S = 10

#: pyspark's error conditions for a session the server no longer has: it
#: restarted under a running job (RESPONSE_ALREADY_RECEIVED: the job's stream
#: reattached to a server without the session) or between two calls.
LOST_SESSION = frozenset({"RESPONSE_ALREADY_RECEIVED", "NO_ACTIVE_SESSION", "INVALID_HANDLE.SESSION_NOT_FOUND",
                          "INVALID_HANDLE.SESSION_CHANGED"})


class SparkServerLost(RuntimeError):
    """The Spark server stopped or restarted while the task ran; Airflow
    retries the task (a try replaces what an earlier one may have written)."""


def server_lost(exc: BaseException) -> bool:
    """Whether `exc` says the task's Spark server went away (stopped, killed,
    restarted), not that the task's own work failed: a lost session, a gRPC
    stream the server ended or could not be reached on after pyspark's
    retries, or a Spark driver that stopped under the job (a server shutting
    down); also such an error retold by code that caught it (Great
    Expectations: quality.ValidationNotRun). Airflow's own exceptions (a
    failed quality gate, whose message quotes data) and an operation the
    task's on_kill interrupted (OPERATION_CANCELED) are none of these."""
    import grpc  # pyspark's dependency; not loaded when the DAG files are parsed

    if isinstance(exc, AirflowException):
        return False
    text = str(exc)
    if getattr(exc, "getCondition", lambda: None)() in LOST_SESSION or any(f"[{c}]" in text for c in LOST_SESSION):
        return True
    if getattr(exc, "getGrpcStatusCode", lambda: None)() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return True
    return "Cannot call methods on a stopped SparkContext" in text


class _ServerAwareTask(PythonOperator):
    """Sits between the provider's PySparkOperator (which builds the session,
    runs the callable, and stops the session in a `finally`) and PythonOperator
    in the MRO: that stop waits for the server at most SERVER_WAIT_S, and the
    callable's errors that say the server went away become SparkServerLost."""

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
        try:
            return super().execute_callable()
        except Exception as exc:
            if not server_lost(exc):
                raise
            first = next(iter(str(exc).strip().splitlines()), "")
            raise SparkServerLost(
                f"the Spark server of connection {self.conn_id!r} went away while this task ran: it stopped or "
                "restarted, and this task's session ended with it. On the stack, `make status` shows whether it "
                "runs again and `make logs SERVICE=spark-connect` (SERVICE=streams with SPARK_CONNECT_IN_STREAMS="
                "true) why it stopped; a java.lang.OutOfMemoryError there calls for a larger SPARK_CONNECT_MEMORY. "
                "Airflow retries the task, which is safe: a try replaces what an earlier one may have written. "
                f"({type(exc).__name__}: {first})") from exc


class InterruptiblePySparkOperator(_PySparkDecoratedOperator, _ServerAwareTask):
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
