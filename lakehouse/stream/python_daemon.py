"""Spark's Python daemon for the streams (`spark.python.daemon.module`), with
the validation UDF's imports done once, before it forks the workers.

Spark's own daemon (`pyspark.daemon`) forks a Python worker per task and lets
each import what its UDF needs after the fork: pyspark's worker module, and for
the validation UDF lakehouse.validation, msgspec, pyarrow and pandas (pyarrow
imports it on its first `pa.array` of Python values). That is ~0.7 s more for
every new worker and ~40 MB of private memory in each worker the two queries
keep (two at the streams' peak: one per task slot). Imported here, a new
worker is a fork with everything in place, and the workers share those pages
copy-on-write (`gc.freeze` keeps Python's collector from writing to, and so
copying, them).

pyspark imports after the fork on purpose: a fork copies only the forking
thread, so a lock another thread holds at that moment stays locked in the
child. These imports start two threads, both idle until used: jemalloc's
background thread (in libarrow) and OpenBLAS's thread server (numpy, under
pandas). Both libraries register at-fork handlers that put their threads and
locks in order in the child. Measured in docs/performance.md ("The streams'
Python workers"); `tests/test_streams_bad_input.py` runs every kind of bad
input through workers forked from this daemon.

Spark starts the daemon with its own Python in front of the path
(`PythonUtils.sparkPythonPath`: pyspark.zip, py4j's zip and spark-core's jar),
for a Spark without pyspark installed. Each worker's first task adds Spark's
file directory to `sys.path` and calls `importlib.invalidate_caches()`
(`pyspark.worker_util.setup_spark_files`), which makes every zip importer on
the path read its archive's directory again: 8,400 entries, 0.17 s and ~21 MB
of private memory in every worker. Where pyspark and py4j are installed (this
virtualenv, in the versions Spark ships), the daemon drops those archives
from the path before it imports anything from them (`without_spark_archives`),
so the workers have no zip importer to re-read.
"""

from __future__ import annotations

import fnmatch
import gc
import importlib.machinery
import os
import re
import sys
import zipfile
import zipimport
from pathlib import Path

#: The archives Spark puts in front of its Python workers' path
#: (PythonUtils.sparkPythonPath), by file name.
SPARK_ARCHIVES = ("pyspark.zip", "py4j-*-src.zip", "spark-core_*.jar")


def without_spark_archives(path: list[str]) -> list[str]:
    """`path` without Spark's archives (SPARK_ARCHIVES) when the pyspark and
    py4j they hold are installed, in the same versions, on the rest of it;
    otherwise (a Spark whose Python is not installed where its workers run,
    or another version of it) `path` unchanged."""
    archives = [p for p in path if any(fnmatch.fnmatch(os.path.basename(p), a) for a in SPARK_ARCHIVES)]
    rest = [p for p in path if p not in archives]
    if archives and all(_installed_as_shipped(m, archives, rest) for m in ("pyspark", "py4j")):
        return rest
    return path


def _version(text: str) -> str | None:
    found = re.search(r"""__version__[^=]*=\s*['"]([^'"]+)['"]""", text)
    return found.group(1) if found else None


def _installed_as_shipped(module: str, archives: list[str], rest: list[str]) -> bool:
    """Whether `module` can be imported from `rest` in the version the first
    of `archives` holding it ships (its `version.py`)."""
    spec = importlib.machinery.PathFinder.find_spec(module, rest)
    if spec is None or spec.origin is None:
        return False
    installed = Path(spec.origin).with_name("version.py")
    for archive in archives:
        try:
            with zipfile.ZipFile(archive) as z:
                shipped = z.read(f"{module}/version.py").decode()
        except (KeyError, OSError, zipfile.BadZipFile):
            continue
        version = _version(shipped)
        return version is not None and installed.is_file() and _version(installed.read_text()) == version
    return False


def _drop_spark_archives() -> None:
    kept = without_spark_archives(sys.path)
    for entry in set(sys.path) - set(kept):
        sys.path_importer_cache.pop(entry, None)
        zipimport._zip_directory_cache.pop(entry, None)
    sys.path[:] = kept


_drop_spark_archives()

import pandas  # noqa: E402,F401  (pyarrow imports it on its first pa.array of Python values)
import pyarrow.compute  # noqa: E402,F401
import pyspark.worker  # noqa: E402,F401  (the worker module: the daemon imports it after each fork)
from pyspark import daemon  # noqa: E402

import lakehouse.validation  # noqa: E402,F401

if __name__ == "__main__":
    gc.freeze()
    daemon.manager()
