"""Makes Spark's class-data archive (`lakehouse.spark.class_archive`), run by
setup (scripts/bootstrap.sh) after the venv and the JVM artifacts:

    python -m lakehouse.spark_classes

A local Spark session with the JDK's `-XX:ArchiveClassesAtExit` does what
our Spark JVMs do at start and in their first jobs (a Delta table written by
partition, read, aggregated, a date replaced, OPTIMIZE and VACUUM); when its
JVM exits, the JDK writes the classes it loaded into the archive. Written
next to the target and renamed into place, so a JVM never maps half an
archive. No network, no running stack.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from lakehouse.settings import Settings, get_settings
from lakehouse.spark import class_archive, driver_java_options, path_option, spark_session


def _workload(spark, root: Path) -> None:
    table = str(root / "t")
    df = spark.range(20000).selectExpr(
        "id", "uuid() AS event_id", "CAST(date_add(DATE'2026-01-01', CAST(id % 3 AS INT)) AS DATE) AS event_date",
        "CAST(id % 7 AS STRING) AS kind", "current_timestamp() AS ts")
    df.write.format("delta").partitionBy("event_date").save(table)
    events = spark.read.format("delta").load(table)
    events.groupBy("event_date", "kind").count().orderBy("event_date").collect()
    events.createOrReplaceTempView("events")
    spark.sql("SELECT event_date, count(DISTINCT event_id), max(ts) FROM events GROUP BY event_date").collect()
    spark.sql("SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY ts) AS n FROM events) "
              "WHERE n = 1").count()
    (events.where("event_date = DATE'2026-01-02'").write.format("delta").mode("overwrite")
     .option("replaceWhere", "event_date = DATE'2026-01-02'").save(table))
    spark.sql(f"OPTIMIZE delta.`{table}`").collect()
    spark.sql(f"VACUUM delta.`{table}`").collect()
    events.toPandas()


def make(settings: Settings) -> Path:
    target = class_archive(settings)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    # -Xlog: the JDK lists every class it leaves out (generated, or failing its verification) as a warning
    options = (f"{driver_java_options(settings, with_archive=False)} "
               f"{path_option('-XX:ArchiveClassesAtExit', partial)} -Xlog:cds*=error")
    root = Path(tempfile.mkdtemp(prefix="lakehouse-spark-classes-"))
    # Spark's warehouse directory too (its first SQL statement makes it): setup
    # runs before the stack's run directory exists, and `make up` refuses a run
    # directory it did not make (stack.prepare_run_dir).
    spark = spark_session(settings, "lakehouse-spark-classes", **{
        "spark.driver.extraJavaOptions": options, "spark.sql.warehouse.dir": str(root / "spark-warehouse")})
    gateway = spark.sparkContext._gateway
    try:
        _workload(spark, root)
    finally:
        spark.stop()
        # The JVM exits once the gateway's stdin closes; the JDK writes the archive on the way out.
        proc = gateway.proc
        proc.stdin.close()
        proc.wait(timeout=600)
        shutil.rmtree(root, ignore_errors=True)
    if not partial.is_file() or partial.stat().st_size == 0:
        raise RuntimeError(f"the JVM wrote no class-data archive at {partial}")
    partial.replace(target)
    return target


def main() -> int:
    target = make(get_settings())
    print(f"[setup] Spark's class-data archive: {target} ({target.stat().st_size // 2**20} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
