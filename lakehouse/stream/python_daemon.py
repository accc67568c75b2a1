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
"""

from __future__ import annotations

import gc

import pandas  # noqa: F401  (pyarrow imports it on its first pa.array of Python values)
import pyarrow.compute  # noqa: F401
import pyspark.worker  # noqa: F401  (the worker module: the daemon imports it after each fork)
from pyspark import daemon

import lakehouse.validation  # noqa: F401

if __name__ == "__main__":
    gc.freeze()
    daemon.manager()
