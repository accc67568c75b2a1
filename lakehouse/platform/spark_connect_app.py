"""The Spark application behind the stack's program spark-connect: a PySpark
driver that spark-submit runs (`lakehouse.platform.spark_connect.server_command`
passes every setting as `--conf`, `spark.plugins` among them). Its session
loads Spark's own SparkConnectPlugin, which serves Spark Connect's gRPC
service from this application, as in Spark's `bin/spark-connect-shell`; the
DAG's tasks are its clients.

Not Spark's SparkConnectServer class: that one forces every client session onto
a class loader of its own (`spark.sql.artifact.isolation.*`, for sessions that
upload JVM classes; ours never do), and Spark keys its cache of generated code
by class loader, so each DAG task compiled again what the previous tasks and
runs had compiled: ~190 classes, ~4 s of a core per run (docs/performance.md,
session 39).

Once the session is up the driver has nothing more to do, but spark-submit's
JVM (Spark's PythonRunner) lives only as long as its driver process, and
PySpark has imported pandas, pyarrow and numpy by then (~80 MB). So the
process replaces itself (exec, same pid, no exit) with a bare interpreter that
only watches its parent: ~10 MB. Stopping: the process manager's SIGTERM goes
to both processes; the JVM's shutdown hook stops Spark. When the JVM is killed
the watcher sees its parent gone and exits; when the watcher ends, the JVM
ends with it (a failure, so the process manager starts both again).

Imports nothing from the project: spark-submit runs this file as a script.
"""

from __future__ import annotations

import os
import sys

#: The driver's remaining life: wait, in a bare interpreter (-S: no site
#: packages), until the JVM that started it is gone.
WATCHER = """\
import os, time
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(2)
print("the Spark JVM is gone; exiting", flush=True)
raise SystemExit(1)
"""


def main() -> None:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()  # every setting comes from spark-submit
    print(f"{spark.conf.get('spark.app.name')}: Spark Connect is served by this application", flush=True)
    os.execv(sys.executable, [sys.executable, "-S", "-c", WATCHER])


if __name__ == "__main__":
    main()
