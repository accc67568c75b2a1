"""Spark's class-data archive (lakehouse.spark.class_archive): made by setup,
passed to every Spark JVM we start, and accepted by the JVM (it maps the
archive; a JVM that refuses a stale archive maps nothing and says so) at the
address it was made for, so its pages stay shared between the JVMs."""

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
    assert "-XX:ArchiveRelocationMode=0" in driver_java_options(settings).split()
    argv, _ = spark_connect.server_command(settings)
    assert any(f"-XX:SharedArchiveFile={class_archive(settings)}" in a for a in argv)


@pytest.mark.slow
def test_a_spark_jvm_maps_the_archive_setup_made(tmp_path):
    settings = make_settings(tmp_path / "run")
    archive = class_archive(settings)
    assert archive.is_file(), f"setup made no {archive} (scripts/bootstrap.sh, python -m lakehouse.spark_classes)"
    with spark_connect_server(settings) as server, connect_session(spark_connect.url(settings)) as spark:
        assert spark.range(3).count() == 3
        mapped = {_mapped_path(line) for line in open(f"/proc/{server.pid}/maps") if line.rstrip().endswith(".jsa")}
        resident, dirty = _archive_pages_kb(server.pid, archive)
    assert str(archive) in mapped, f"the JVM did not map {archive}; it mapped {sorted(mapped)}"
    # Relocated (the JDK's default ArchiveRelocationMode=1) the JVM rewrites
    # nearly every page it maps: ~150 of 185 MB dirty, a private copy per JVM.
    # At its own address only the read-write part is written (~55 MB).
    assert dirty < resident / 2, (
        f"{dirty // 1024} of the archive's {resident // 1024} resident MB are dirty: "
        "the JVM relocated it, so no other JVM shares its pages")


def _archive_pages_kb(pid: int, archive) -> tuple[int, int]:
    """(resident, dirty) kB of the JVM's mappings of `archive` (/proc/<pid>/smaps)."""
    resident = dirty = 0
    ours = False
    for line in open(f"/proc/{pid}/smaps"):
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
            ours = _mapped_path(line) == str(archive)
        elif ours and head[0] == "Rss:":
            resident += int(head[1])
        elif ours and head[0] in ("Private_Dirty:", "Shared_Dirty:"):
            dirty += int(head[1])
    return resident, dirty


def _mapped_path(line: str) -> str:
    """The file of a /proc/<pid>/maps (or smaps) mapping line: its sixth field
    to the end of the line (a path may hold spaces)."""
    fields = line.split(maxsplit=5)
    return fields[5].rstrip("\n") if len(fields) == 6 else ""


def test_an_archive_path_with_a_space_reaches_the_jvm_whole(tmp_path):
    """A checkout in a directory with a space ("My Projects"): Spark splits a
    JVM option string at whitespace outside quotes, so the archive's option is
    quoted (lakehouse.spark.path_option) and the Spark Connect server's JVM
    gets it as one argument. Before, such a checkout ran without the archive,
    and setup could not make it: the JVM took the path's second half for its
    main class. (The JVM ignores this archive, made for other jars.)"""
    jvm = tmp_path / "my projects" / "jvm"
    jvm.mkdir(parents=True)
    (jvm / "spark").symlink_to(get_settings().lakehouse_jvm_dir.resolve() / "spark")
    settings = make_settings(tmp_path / "run", lakehouse_jvm_dir=jvm)
    class_archive(settings).write_bytes(b"not an archive")
    with spark_connect_server(settings) as server:
        argv = open(f"/proc/{server.pid}/cmdline", "rb").read().decode().split("\0")
    assert f"-XX:SharedArchiveFile={class_archive(settings)}" in argv, argv


def test_setup_leaves_the_run_directory_to_make_up():
    """`make up` refuses a run directory it did not make (stack.prepare_run_dir).
    Setup runs Spark to make the archive before any stack exists; Spark made its
    warehouse directory in the run directory, and a fresh clone's `make up`
    stopped at once ("... is not a lakehouse run directory"). Checks this
    checkout's run directory as setup left it (CI: a fresh clone, set up)."""
    run = get_settings().run_dir
    assert not stack.foreign_run_dir(run), (
        f"{run} holds {sorted(p.name for p in run.iterdir())} but no {stack.MARKER}: `make up` would refuse it")
