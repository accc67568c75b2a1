"""The embedded platform: real PostgreSQL cluster, Apache Kafka broker, supervisord."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lakehouse.platform import stack
from lakehouse.platform.errors import PlatformError
from lakehouse.settings import REPO_ROOT
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def test_reader_sees_tables_and_cannot_write(core_stack):
    conn = psycopg2.connect(core_stack.pg_dsn("reader"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('realtime', 'gold', 'ops')"
        )
        tables = {r[0] for r in cur.fetchall()}
        assert {
            "realtime.events_per_minute", "realtime.logins_per_source", "realtime.purchases_per_minute",
            "gold.daily_active_users", "gold.conversion_rate_daily",
            "gold.events_per_source_daily", "gold.purchases_per_page_daily",
        } <= tables
        cur.execute("SELECT count(*) FROM gold.daily_active_users")
        for stmt in (
            "INSERT INTO gold.daily_active_users (event_date, dau_count) VALUES ('2026-01-01', 1)",
            "SET default_transaction_read_only = off; INSERT INTO realtime.purchases_per_minute VALUES (now(), 1)",
            "CREATE TABLE gold.intruder (x int)",
        ):
            with pytest.raises(psycopg2.Error):
                cur.execute(stmt)
    conn.close()


def test_writer_can_upsert(pg):
    with pg, pg.cursor() as cur:
        cur.execute(
            "INSERT INTO realtime.purchases_per_minute (window_start, purchase_count) VALUES ('2020-01-01', 3) "
            "ON CONFLICT (window_start) DO UPDATE SET purchase_count = EXCLUDED.purchase_count"
        )
        cur.execute("SELECT purchase_count FROM realtime.purchases_per_minute WHERE window_start = '2020-01-01'")
        assert cur.fetchone()[0] == 3
        cur.execute("DELETE FROM realtime.purchases_per_minute WHERE window_start = '2020-01-01'")


def test_broker_produce_and_consume(core_stack):
    servers = core_stack.kafka_bootstrap_list
    key = uuid.uuid4().hex.encode()
    producer = KafkaProducer(bootstrap_servers=servers)
    meta = producer.send(core_stack.kafka_topic, key=key, value=b'{"hello": 1}').get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=servers, consumer_timeout_ms=5000)
    tp = TopicPartition(core_stack.kafka_topic, meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    got = [m for m in consumer if m.key == key]
    partitions = consumer.partitions_for_topic(core_stack.kafka_topic)
    consumer.close()
    assert [m.value for m in got] == [b'{"hello": 1}']
    # the stack created the topic with KAFKA_PARTITIONS partitions (0 partitions was accepted before)
    assert partitions == set(range(core_stack.kafka_partitions))


def test_second_up_is_noop(core_stack):
    result = stack.up(core_stack, groups=("core",))
    assert result.started == []
    assert set(result.already_running) == {"postgres", "broker"}


def _superuser_sql(settings, statement: str, *args):
    """Run one statement as the superuser; its first row, if it has rows."""
    with closing(psycopg2.connect(settings.pg_dsn("superuser"))) as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute(statement, args)
        return cur.fetchone() if cur.description else None


def _index_exists(settings, name: str) -> bool:
    return _superuser_sql(settings, "SELECT to_regclass(%s) IS NOT NULL", name)[0]


def test_up_leaves_a_stack_started_from_other_code_as_it_is_and_says_so(core_stack):
    """`git pull && make up` while the stack runs: the programs go on running
    the code they started from, so `make up` neither applies this checkout's
    schema under them (old streams recorded no progress under the new key
    of ops.stream_progress) nor starts one of this checkout's programs among
    them; it says which files changed and that `make down && make up` runs
    the new code."""
    from typer.testing import CliRunner

    from lakehouse.platform.cli import app

    record = stack.code_record(core_stack)
    started = record.read_text()
    _superuser_sql(core_stack, "DROP INDEX ops.stream_progress_future")  # sql/04_ops.sql makes it again
    supervisor = stack._proxy(core_stack).supervisor  # noqa: SLF001
    try:
        assert stack.up(core_stack, groups=("core",)).other_code == []  # started from this checkout's code
        assert _index_exists(core_stack, "ops.stream_progress_future")
        _superuser_sql(core_stack, "DROP INDEX ops.stream_progress_future")
        record.write_text(json.dumps({**json.loads(started), "sql/04_ops.sql": "0" * 64, "dags/gone.py": "1" * 64}))
        result = stack.up(core_stack, groups=("core",))
        assert (result.started, result.other_code) == ([], ["dags/gone.py", "sql/04_ops.sql"])
        assert not _index_exists(core_stack, "ops.stream_progress_future")
        assert stack.other_code(result.other_code).startswith(
            "the running stack started from other code (dags/gone.py, sql/04_ops.sql changed since): "
            "`make up` leaves it and its database schema as they are")
        shown = CliRunner().invoke(app, ["status"], env={"LAKEHOUSE_RUN_DIR": str(core_stack.run_dir)})
        assert shown.exit_code == 0 and stack.other_code(result.other_code) in shown.output, shown.output
        supervisor.stopProcess("broker", True)
        with pytest.raises(PlatformError, match=r"^broker not running, and the running stack started from other "
                                                r"code .*`make down && make up` restarts it"):
            stack.up(core_stack, groups=("core",))
        assert supervisor.getProcessInfo("broker")["statename"] == "STOPPED"
        record.unlink()  # a stack started by a version that recorded no code
        with pytest.raises(PlatformError, match="was started by an earlier version of this checkout"):
            stack.up(core_stack, groups=("core",))
    finally:
        record.write_text(started)
        stack.up(core_stack, groups=("core",))
    assert supervisor.getProcessInfo("broker")["statename"] == "RUNNING"
    assert _index_exists(core_stack, "ops.stream_progress_future")


def test_setup_replaces_no_dependency_under_a_running_stack(tmp_path, core_stack):
    """`git pull` brought a new requirements.lock and the stack runs: setup
    (the first step of `make up`) stops before replacing .venv under the
    running programs, and says what to do. The checkout's own CLI tells
    whether its stack runs (here it is pointed at a running stack)."""
    import shutil

    checkout = tmp_path / "checkout"
    for name in ("scripts/bootstrap.sh", "requirements.lock", "pyproject.toml", "jvm/pom.xml"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, checkout / name)
    venv = checkout / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".lakehouse-stamp").write_text("made from an older lock\n")
    cli = venv / "bin" / "lakehouse"
    cli.write_text(f"#!/bin/sh\nLAKEHOUSE_RUN_DIR='{core_stack.run_dir}' exec '{Path(sys.executable).parent / 'lakehouse'}' \"$@\"\n")
    cli.chmod(0o755)
    done = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=checkout, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("[setup] error: requirements.lock (or pyproject.toml) changed, and the stack of this checkout is "
            "running on .venv: stop it first (make down; its data is kept), then run this again") in done.stderr
    assert (venv / ".lakehouse-stamp").read_text() == "made from an older lock\n"
    assert sorted(p.name for p in venv.rglob("*")) == [".lakehouse-stamp", "bin", "lakehouse"]


def _waits(proc: subprocess.Popen, out: Path, said: str) -> None:
    """`proc` said `said` (and nothing else) into `out`, and goes on waiting."""
    from lakehouse.polling import wait_for

    wait_for(lambda: said in out.read_text(), 60, "the waiting line", every=0.2)
    time.sleep(1)
    assert proc.poll() is None, out.read_text()
    assert out.read_text() == said


def test_setup_waits_for_another_setup_of_the_same_checkout(tmp_path):
    """`make up` in one terminal and `make test` in another, on a fresh
    checkout: the second setup waits for the first instead of replacing its
    half-made .venv and .jvm (the two once left a .jvm without the broker's
    jars under a stamp that vouched for it). Here the second is stopped right
    after the lock (PYTHON=false: "Python 3.11 is required") to show that it
    goes on once the first has finished, and not before."""
    import fcntl
    import shutil

    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts/bootstrap.sh", checkout / "scripts/bootstrap.sh")
    out = tmp_path / "setup.out"
    with open(checkout / ".setup.lock", "w") as first:
        fcntl.flock(first, fcntl.LOCK_EX)  # the first setup, running
        with open(out, "w") as sink:
            second = subprocess.Popen(["bash", "scripts/bootstrap.sh"], cwd=checkout, stdout=sink,
                                      stderr=subprocess.STDOUT, env={**os.environ, "PYTHON": "false"})
        _waits(second, out, "[setup] another setup of this checkout is running; waiting for it to finish\n")
    second.wait(timeout=60)  # the first finished: the second goes on, to its own checks
    assert second.returncode == 1
    assert "[setup] error: Python 3.11 is required" in out.read_text()


def test_port_taken_gives_one_line_error(tmp_path, core_stack):
    settings = make_settings(tmp_path / "run", pg_port=core_stack.pg_port)
    with pytest.raises(PlatformError, match=f"port {core_stack.pg_port} .* PG_PORT"):
        stack.up(settings, groups=("core",))
    stack.clean(settings)


def test_port_taken_leaves_nothing_running_and_another_port_then_starts(tmp_path, core_stack):
    """The error says "set PG_PORT in .env": a `make up` refused so leaves no
    supervisord (with the old port in its stack.env) behind, so the next one,
    with the port changed, starts on the new port."""
    from lakehouse.platform.isolated import free_port

    settings = make_settings(tmp_path / "run", pg_port=core_stack.pg_port)
    moved = settings.model_copy(update={"pg_port": free_port()})
    try:
        with pytest.raises(PlatformError, match=f"port {core_stack.pg_port} .* PG_PORT"):
            stack.up(settings, groups=("core",))
        assert stack.process_states(settings) == {}
        assert stack.up(moved, groups=("core",)).started == ["postgres", "broker"]
        with psycopg2.connect(moved.pg_dsn("reader")) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        conn.close()
    finally:
        stack.clean(moved)


def test_logs_of_an_unknown_service_names_the_services(tmp_path, monkeypatch):
    """`make logs SERVICE=stream` (no such program) says so and lists the
    services, instead of "no logs under <a directory full of logs>"."""
    from typer.testing import CliRunner

    from lakehouse.platform.cli import app

    settings = make_settings(tmp_path / "run")
    settings.log_dir.mkdir(parents=True)
    for name in ("streams", "producer"):
        (settings.log_dir / f"{name}.log").write_text(f"{name} line\n")
    monkeypatch.setenv("LAKEHOUSE_RUN_DIR", str(settings.run_dir))
    runner = CliRunner()
    ok = runner.invoke(app, ["logs", "streams"])
    assert ok.exit_code == 0 and "streams line" in ok.stdout
    bad = runner.invoke(app, ["logs", "stream"])
    assert bad.exit_code == 1
    assert "no log of 'stream'" in bad.output and "logs of: producer, streams" in bad.output


def test_psql_with_an_unknown_role_names_the_roles_not_a_traceback():
    from typer.testing import CliRunner

    from lakehouse.platform.cli import app

    result = CliRunner().invoke(app, ["psql", "--role", "admin", "-c", "SELECT 1"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "'admin' is not one of 'reader', 'writer', 'superuser'" in result.output
    assert "Traceback" not in result.output


def test_make_status_of_a_stopped_stack_says_so_without_an_error(tmp_path):
    """`make status` with nothing running prints "not running" and succeeds
    (make used to add "*** [Makefile] Error 3"); the CLI keeps exit code 3
    (LSB's "not running") for scripts."""
    env = {**os.environ, "LAKEHOUSE_RUN_DIR": str(tmp_path / "run")}
    made = subprocess.run(["make", "-s", "status"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "not running" in made.stdout + made.stderr
    assert "Error" not in made.stdout + made.stderr
    cli = subprocess.run([str(Path(sys.executable).parent / "lakehouse"), "status"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 3 and "not running" in cli.stdout + cli.stderr


def test_up_down_and_clean_of_a_checkout_run_one_at_a_time(tmp_path):
    """Two `make up` at once (two terminals; the second's setup returns as
    soon as the first's ends): the second started PostgreSQL under the
    first and failed with "port ... is taken by another process; ... set
    PG_PORT". `up`, `down` and `clean` now wait for one that is running
    (held here by the CLI's own lock, as a `make up` holds it); `status`
    does not wait."""
    from lakehouse.platform.cli import this_checkout

    lakehouse = str(Path(sys.executable).parent / "lakehouse")
    env = {**os.environ, "LAKEHOUSE_RUN_DIR": str(tmp_path / "run")}
    out = tmp_path / "down.out"
    with this_checkout():  # a `make up` of this checkout, running
        with open(out, "w") as sink:
            down = subprocess.Popen([lakehouse, "down"], cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        status = subprocess.run([lakehouse, "status"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=120)
        assert status.returncode == 3 and "not running" in status.stdout + status.stderr
        _waits(down, out, "[lakehouse] another `make up`, `make down` or `make clean` of this checkout "
                          "is running; waiting for it to finish\n")
    assert down.wait(timeout=60) == 0  # it finished
    assert out.read_text().endswith("[lakehouse] not running\n")


def test_foreign_run_dir_is_refused_and_kept(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    with pytest.raises(PlatformError, match="not a lakehouse run directory"):
        stack.up(make_settings(run), groups=("core",))
    with pytest.raises(PlatformError, match="not removing"):
        stack.clean(make_settings(run))
    assert (run / "precious.txt").read_text() == "keep me"


def test_stale_pid_file_is_removed(tmp_path):
    settings = make_settings(tmp_path / "run")
    stack.prepare_run_dir(settings)
    pidfile = settings.run_dir / "supervisord.pid"
    pidfile.write_text("999999")
    assert stack.supervisord_pid(settings) is None
    assert not pidfile.exists()


def test_down_frees_ports_and_up_keeps_data_in_a_run_directory_too_deep_for_a_unix_socket(tmp_path):
    """Its run directory's path is too long for supervisord's socket there (a
    deep checkout: `make up` failed with "AF_UNIX path too long"); the socket
    goes to a private directory under /tmp (services.socket_path)."""
    from lakehouse.platform.services import UNIX_PATH_MAX, socket_path

    settings = make_settings(tmp_path / ("a-deep-checkout-" * 6) / "run")
    assert len(str(settings.run_dir / "supervisor.sock")) > UNIX_PATH_MAX
    sock = socket_path(settings)
    assert sock.parent.parent == Path("/tmp")
    stack.up(settings, groups=("core",))
    try:
        assert sock.is_socket() and sock.parent.stat().st_mode & 0o777 == 0o700
        with psycopg2.connect(settings.pg_dsn("writer")) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO gold.daily_active_users (event_date, dau_count) VALUES ('2026-03-01', 42)")
        conn.close()
        assert stack.down(settings)
        assert stack.port_free("127.0.0.1", settings.pg_port)
        assert stack.port_free("127.0.0.1", int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1]))
        assert stack.port_free("127.0.0.1", settings.broker_controller_port)
        assert stack.up(settings, groups=("core",)).started == ["postgres", "broker"]
        with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
            cur.execute("SELECT dau_count FROM gold.daily_active_users WHERE event_date = '2026-03-01'")
            assert cur.fetchone() == (42,)
        conn.close()
    finally:
        stack.clean(settings)
