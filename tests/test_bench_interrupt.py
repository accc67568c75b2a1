"""`make bench` (and `make chaos`) start a stack of their own; a SIGTERM (a
`kill`, a CI timeout, a closed terminal) must stop it with them
(lakehouse.platform.interrupt). Before, the benchmark died at once and its
stack ran on: PostgreSQL, Kafka, Spark and Airflow on a user's machine, until
found by hand."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from lakehouse.platform import stack
from lakehouse.polling import wait_for
from lakehouse.settings import REPO_ROOT, get_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def supervisords(under) -> list[psutil.Process]:
    """The process managers of stacks whose run directory is below `under`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "supervisord" in cmd and str(under) in cmd:
            found.append(proc)
    return found


def test_a_terminated_benchmark_stops_its_stack(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the benchmark's run directory: tempfile.mkdtemp
    with open(tmp_path / "bench.log", "wb") as log:
        bench = subprocess.Popen(
            [sys.executable, "-m", "bench", "--quick", "--only", "batch", "--events-per-day", "1000",
             "--out", str(tmp_path / "out")],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: supervisords(tmp_path), 300, "the benchmark's stack to start", every=1)
        bench.terminate()
        code = bench.wait(timeout=300)
        left = supervisords(tmp_path)
        assert not left, f"the benchmark's stack outlived it: {[p.cmdline() for p in left]}"
        assert code != 0, (tmp_path / "bench.log").read_text()[-2000:]
        assert "stack: stopping and removing the run directory" in (tmp_path / "bench.log").read_text()
    finally:
        if bench.poll() is None:
            bench.kill()
        for proc in supervisords(tmp_path):  # what the benchmark left: stopped here
            conf = proc.cmdline()[-1]
            stack.down(get_settings(lakehouse_run_dir=os.path.dirname(conf)))
