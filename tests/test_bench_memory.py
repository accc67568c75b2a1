"""The benchmark's memory sampler on real processes (Linux /proc)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from bench.memory import sample_named


def test_a_program_with_a_zombie_child_still_has_a_pss():
    # The Spark Connect server leaves an exited, unreaped child (spark-submit's
    # shell): a zombie has no smaps, and must not make the program's PSS unknown.
    parent = subprocess.Popen([sys.executable, "-c",
                               "import os, time\nif os.fork() == 0:\n    os._exit(0)\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while not any(c.status() == psutil.STATUS_ZOMBIE for c in psutil.Process(parent.pid).children()):
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.05)
        rss, pss = sample_named({"program": parent.pid})["program"]
        assert pss is not None and 0 < pss <= rss
    finally:
        parent.kill()
        parent.wait()
