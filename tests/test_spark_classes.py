"""Spark's class-data archive (lakehouse.spark.class_archive): made by setup,
passed to every Spark JVM we start, and accepted by the JVM (it maps the
archive; a JVM that refuses a stale archive maps nothing and says so)."""

from __future__ import annotations

import pytest

from lakehouse.platform import spark_connect, stack
from lakehouse.settings import get_settings
from lakehouse.spark import class_archive, driver_java_options
from tests.batch_helpers import connect_session, spark_connect_server
from tests.conftest import make_settings


def test_the_archive_is_passed_once_setup_has_made_it(tmp_path):
    settings = make_settings(tmp_path / "run", lakehouse_jvm_dir=tmp_path / "jvm")
    assert "SharedArchiveFile" not in driver_java_options(settings)
    (tmp_path / "jvm" / "spark").mkdir(parents=True)
    (tmp_path / "jvm" / "spark" / "delta.jar").write_bytes(b"")  # the server's command lists the jars
    class_archive(settings).write_bytes(b"x")
    assert f"-XX:SharedArchiveFile={class_archive(settings)}" in driver_java_options(settings).split()
    argv, _ = spark_connect.server_command(settings)
    assert any(f"-XX:SharedArchiveFile={class_archive(settings)}" in a for a in argv)


@pytest.mark.slow
def test_a_spark_jvm_maps_the_archive_setup_made(tmp_path):
    settings = make_settings(tmp_path / "run")
    archive = class_archive(settings)
    assert archive.is_file(), f"setup made no {archive} (scripts/bootstrap.sh, python -m lakehouse.spark_classes)"
    with spark_connect_server(settings) as server, connect_session(spark_connect.url(settings)) as spark:
        assert spark.range(3).count() == 3
        mapped = {line.split()[-1] for line in open(f"/proc/{server.pid}/maps") if line.rstrip().endswith(".jsa")}
    assert str(archive) in mapped, f"the JVM did not map {archive}; it mapped {sorted(mapped)}"


def test_setup_leaves_the_run_directory_to_make_up():
    """`make up` refuses a run directory it did not make (stack.prepare_run_dir).
    Setup runs Spark to make the archive before any stack exists; Spark made its
    warehouse directory in the run directory, and a fresh clone's `make up`
    stopped at once ("... is not a lakehouse run directory"). Checks this
    checkout's run directory as setup left it (CI: a fresh clone, set up)."""
    run = get_settings().run_dir
    assert not stack.foreign_run_dir(run), (
        f"{run} holds {sorted(p.name for p in run.iterdir())} but no {stack.MARKER}: `make up` would refuse it")
