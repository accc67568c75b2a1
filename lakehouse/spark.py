"""The one way the lakehouse builds a SparkSession: the configured master,
UTC session time (event dates and windows are UTC), small shuffles (local mode
on two cores), Python workers on this interpreter (the venv, with pyarrow), and
the JVM artifacts of jvm/pom.xml's `spark` profile: Spark's Kafka connector and
delta-spark (its SQL extension and catalog)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lakehouse.settings import Settings


#: Dates and windows are UTC in the JVM too, whatever the machine's zone.
UTC_JAVA_OPTION = "-Duser.timezone=UTC"


def class_archive(settings: Settings) -> Path:
    """The class-data archive of Spark's JVMs (the JDK's application class-data
    sharing): the classes a Spark JVM loads, already parsed and verified, made
    once by setup (`python -m lakehouse.spark_classes`). Every Spark JVM maps
    it read-only instead of loading those classes from the jars: a local
    session started and ran its first Delta jobs with a third less CPU (JVM
    CPU 21-22 s against 32-34 s, docs/performance.md), and the JVMs share
    its pages (ARCHIVE_AT_FIXED_ADDRESS). A stale archive (another JDK or
    other jars) is refused by the JVM, which then loads the classes as
    without one."""
    return settings.lakehouse_jvm_dir.resolve() / "spark-classes.jsa"


#: Map the class-data archives at the address they were made for. JDK 17.0.15
#: maps them elsewhere by default (`ArchiveRelocationMode=1`, for address
#: randomisation) and then rewrites every pointer in them: each JVM dirtied its
#: own private copy of the archive (~150 MB of Spark's 190 MB), so the pages
#: were not shared at all. At the archive's own address the read-only part
#: stays clean file pages that the streams, the Spark Connect server and any
#: other Spark JVM share: ~46 MB PSS less for each of two JVMs (the JDK's
#: diagnostic option, hence the unlock; docs/performance.md, session 41).
ARCHIVE_AT_FIXED_ADDRESS = "-XX:+UnlockDiagnosticVMOptions -XX:ArchiveRelocationMode=0"


def path_option(name: str, path: Path) -> str:
    """`name=path` as one option of a Spark JVM option string
    (`spark.*.extraJavaOptions`), which Spark splits at whitespace outside
    quotes: a path with a space (a checkout in "My Projects") is quoted, so it
    stays one option."""
    value = str(path)
    if any(c.isspace() or c in "\"'\\" for c in value):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name}={value}"


def driver_java_options(settings: Settings, *, with_archive: bool = True) -> str:
    """The JVM options of every Spark JVM we start (streams, Spark Connect
    server, local sessions): UTC, SPARK_JAVA_OPTIONS, and the class-data
    archive once setup has made it (`with_archive=False`: the JVM that makes it)."""
    options = f"{UTC_JAVA_OPTION} {settings.spark_java_options}".strip()
    archive = class_archive(settings)
    if with_archive and archive.is_file():
        options += f" {path_option('-XX:SharedArchiveFile', archive)} {ARCHIVE_AT_FIXED_ADDRESS}"
    return options


#: Where a driver's own ports (RPC, block manager, file server) listen when
#: its executors are on this machine.
LOOPBACK = "127.0.0.1"


def is_local_master(master: str) -> bool:
    """`local`, `local[N]`, `local[N,F]`, `local-cluster[W,C,M]`: every executor
    runs on this machine."""
    return master == "local" or master.startswith(("local[", "local-cluster["))


def driver_address_conf(settings: Settings) -> dict[str, str]:
    """The driver's address. With a local master (SPARK_MASTER, `local[2]` by
    default), loopback only: by default Spark binds the machine's first
    non-loopback address, reachable from the network. With a cluster master
    (`spark://`, `yarn`, `k8s://`) the executors, on other machines, must
    reach the driver, so Spark's default stays (the machine's address;
    SPARK_LOCAL_IP or `spark.driver.host` in spark-defaults.conf pick another)."""
    if is_local_master(settings.spark_master):
        return {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}
    return {}


def executor_java_options(settings: Settings) -> str:
    """The executors' JVM options. With a local master they are JVMs on this
    machine (`local-cluster`; `local[N]` runs its tasks in the driver's JVM,
    which ignores them): the same options as every Spark JVM we start. A
    cluster's executors run on machines of their own, sized and tuned by the
    cluster (spark-defaults.conf), where this machine's class-data archive
    does not exist and a 2-core laptop's economy (serial GC, C1 only) would
    slow them down: UTC only."""
    return driver_java_options(settings) if is_local_master(settings.spark_master) else UTC_JAVA_OPTION


#: How much of its recent work Spark's status store keeps: the data behind its
#: web UI and status APIs, which it records whether or not the UI runs (every
#: Spark JVM of ours runs without one), each SQL execution with its plan
#: description, plan graph and metrics. Spark keeps the last 1,000 SQL
#: executions, jobs and stages and 200 Spark Connect statements and sessions:
#: the streams reach 1,000 executions within minutes of micro-batches,
#: the Spark Connect server within about twenty DAG runs, and then carry
#: them in their heaps for good (docs/performance.md, session 45). Nothing of
#: ours reads them: a query's progress comes from its own listener
#: (`lakehouse.stream.progress`), not from the status store.
STATUS_RETENTION = {
    "spark.sql.ui.retainedExecutions": "50",
    "spark.ui.retainedJobs": "50",
    "spark.ui.retainedStages": "100",
    "spark.sql.connect.ui.retainedStatements": "50",
    "spark.sql.connect.ui.retainedSessions": "50",
}


def jvm_conf(settings: Settings) -> dict[str, str]:
    """Spark settings that bring in the Kafka connector and delta-spark, from
    the jars setup resolved (no network at run time), size Delta's snapshot
    job and file listings for the machine (DELTA_SNAPSHOT_PARTITIONS,
    SPARK_LISTING_PARALLELISM), run a full GC every
    SPARK_PERIODIC_GC_INTERVAL so that a JVM gives back what a burst of work
    grew, and keep Spark's warehouse directory (made by the first SQL
    statement, unused: every table is a Delta path) in the run directory, not
    in the directory the JVM was started from (the checkout, under `make up`),
    and keep only a little of Spark's status history (STATUS_RETENTION)."""
    return {
        "spark.jars": ",".join(str(j) for j in settings.jvm_jars("spark")),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.databricks.delta.snapshotPartitions": str(settings.delta_snapshot_partitions),
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(settings.spark_listing_parallelism),
        # a full GC this often, after which the heap shrinks (SPARK_JAVA_OPTIONS)
        "spark.cleaner.periodicGC.interval": settings.spark_periodic_gc_interval,
        "spark.sql.warehouse.dir": str(settings.run_dir / "spark-warehouse"),
        **STATUS_RETENTION,
    }


def spark_session(settings: Settings, app_name: str, *, java_options: str = "", **conf: str):
    """A local Spark session (SPARK_MASTER) with the settings above; `java_options`
    are added to the driver JVM's (SPARK_JAVA_OPTIONS), `conf` to Spark's."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", f"{driver_java_options(settings)} {java_options}".strip())
        .config("spark.executor.extraJavaOptions", executor_java_options(settings))
    )
    for key, value in {**driver_address_conf(settings), **jvm_conf(settings), **conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
