"""`lakehouse` command line: the Makefile's up/down/status/logs/clean/psql."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import subprocess
import sys
import time
from enum import Enum

import typer
from psycopg2.extensions import make_dsn
from pydantic import ValidationError

from lakehouse.platform import airflow, dashboard, stack
from lakehouse.platform.errors import PlatformError
from lakehouse.platform.secrets import ensure_env_file
from lakehouse.platform.services import grafana_binary
from lakehouse.settings import ENV_FILE, describe, env_file_errors, get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)


def _fail(exc: PlatformError) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def this_checkout():
    """Hold this checkout's lock for `up`, `down` and `clean` (an flock on the
    directory of .env; `status` and the rest do not take it), waiting for
    whoever holds it. Two `make up` at once had the second start PostgreSQL
    under the first and fail with "port ... is taken by another process; ...
    set PG_PORT", or fail in initdb on a fresh checkout; now it waits, then
    finds the stack running."""
    fd = os.open(ENV_FILE.parent, os.O_RDONLY)  # not inherited by the programs started (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stack.log("another `make up`, `make down` or `make clean` of this checkout is running; "
                      "waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def one_at_a_time(command):
    """`command`, holding this checkout's lock (this_checkout)."""

    @functools.wraps(command)
    def locked(*args, **kwargs):
        with this_checkout():
            return command(*args, **kwargs)

    return locked


@app.callback()
def _settings_first() -> None:
    # Every command reads the settings: a wrong one is named here, before anything starts.
    if problem := env_file_errors(ENV_FILE):
        typer.secho(f"error: {problem}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        get_settings()
    except ValidationError as exc:
        typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
@one_at_a_time
def up() -> None:
    """Start the embedded stack (idempotent) and print where everything is."""
    t0 = time.monotonic()
    added = ensure_env_file()
    if added:
        stack.log(f"generated {len(added)} secrets into {ENV_FILE} (mode 600)")
    settings = get_settings()
    try:
        result = stack.up(settings)
    except PlatformError as exc:
        _fail(exc)
    if not result.started:
        stack.log("already running; nothing changed")
        if result.other_code != []:  # whose restart applies changed settings too
            stack.log(stack.other_code(result.other_code))
        elif changed := stack.changed_settings(settings):
            stack.log(f"the running stack started with other values of {', '.join(changed)}: "
                      "`make down && make up` applies them")
    else:
        stack.log(f"started {', '.join(result.started)} in {time.monotonic() - t0:.0f}s")
    user = settings.airflow_admin_user
    if "AIRFLOW_ADMIN_PASSWORD" in added:
        login = f"login {user} / {settings.airflow_admin_password.get_secret_value()}  (shown once; kept in .env)"
    else:
        login = f"login {user} / AIRFLOW_ADMIN_PASSWORD in .env"
    dash_user = settings.dashboard_admin_user
    if "DASHBOARD_ADMIN_PASSWORD" in added:
        dash_login = f"login {dash_user} / {settings.dashboard_admin_password.get_secret_value()}  (shown once; kept in .env)"
    else:
        dash_login = f"login {dash_user} / DASHBOARD_ADMIN_PASSWORD in .env"
    overview = (
        f"{dashboard.base_url(settings)}   {dash_login}" if settings.dashboard_enabled
        else "not started (DASHBOARD_ENABLED=false)"
    )
    grafana = (
        f"http://127.0.0.1:{settings.grafana_port}  (dashboard: Lakehouse Platform Overview)"
        if grafana_binary(settings)
        else "not started: no `grafana` binary on PATH (set GRAFANA_BIN, or use `make compose-up`)"
    )
    print(
        f"""
  Airflow UI   {airflow.base_url(settings)}   {login}
  Dashboard    {overview}
  Grafana      {grafana}
  psql (ro)    make psql      # = psql "host={settings.pg_host} port={settings.pg_port} dbname={settings.pg_database} user={settings.pg_reader_user}", password PG_READER_PASSWORD in .env
  logs         {settings.log_dir}   (make logs)
  stop         make down      (data is kept; make clean removes it)
"""
    )


@app.command()
@one_at_a_time
def down() -> None:
    """Stop every process of the stack; data is kept."""
    try:
        stopped = stack.down(get_settings())
    except PlatformError as exc:
        _fail(exc)
    stack.log("stopped" if stopped else "not running")


@app.command()
def status() -> None:
    """Show each service's state."""
    settings = get_settings()
    try:
        states = stack.process_states(settings)
    except PlatformError as exc:
        _fail(exc)
    if not states:
        stack.log(f"not running (run directory {settings.run_dir})")
        raise typer.Exit(3)
    for name, state in states.items():
        print(f"  {name:24s} {state}")
        if name == "streams" and states.get("postgres") == "RUNNING":
            for line in _stream_positions(settings, states):
                print(f"    {line}")
    changed = stack.changed_code(settings)
    if changed != []:
        stack.log(stack.other_code(changed))


def _stream_positions(settings, states: dict[str, str]) -> list[str]:
    """The streams' latest micro-batches (ops.stream_latest, as the reader) and
    what each has still to read (the broker's end offsets now)."""
    from lakehouse import kafka_clients
    from lakehouse.stream.progress import describe_latest, latest_batches

    running = stack.load_stack_settings(settings.run_dir) if (settings.run_dir / "stack.env").exists() else settings
    try:
        batches = latest_batches(running.pg_dsn("reader"))
    except Exception as exc:  # noqa: BLE001 - status reports; it does not fail on monitoring
        return [f"progress unavailable: {str(exc).strip().splitlines()[0]}"]
    if not batches:
        return ["no micro-batch recorded yet"]
    ends = None
    if states.get("broker", "RUNNING") == "RUNNING":  # an external broker is not the stack's program
        try:
            ends = kafka_clients.end_offsets(running, running.kafka_topic)
        except Exception:  # noqa: BLE001 - "?" in the lines
            ends = None
    return describe_latest(batches, running.kafka_topic, ends)


@app.command()
def logs(service: str = typer.Argument(None, help="One service; all when omitted."), lines: int = 40) -> None:
    """Print the last lines of the logs."""
    settings = get_settings()
    files = sorted(settings.log_dir.glob(f"{service or '*'}.log"))
    if not files:
        known = sorted(f.stem for f in settings.log_dir.glob("*.log"))
        if service and known:
            typer.secho(f"error: no log of {service!r} under {settings.log_dir}; logs of: {', '.join(known)}",
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        stack.log(f"no logs under {settings.log_dir}")
        return
    for f in files:
        print(f"==> {f} <==")
        print("\n".join(f.read_text(errors="replace").splitlines()[-lines:]))


@app.command()
@one_at_a_time
def clean() -> None:
    """Stop the stack and remove the run directory (all data)."""
    settings = get_settings()
    try:
        stack.clean(settings)
    except PlatformError as exc:
        _fail(exc)
    stack.log(f"removed {settings.run_dir}")


PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


class Role(str, Enum):
    """The serving database's roles (`Settings._role`)."""

    reader = "reader"
    writer = "writer"
    superuser = "superuser"


@app.command(context_settings=PASSTHROUGH)
def psql(
    ctx: typer.Context, role: Role = typer.Option(Role.reader, help="The database role to log in as.")
) -> None:
    """psql on the serving database (read-only role by default); extra arguments
    go to psql, e.g. `lakehouse psql -c 'SELECT * FROM gold.daily_active_users'`."""
    settings = get_settings()
    user, password = settings._role(role.value)
    env = {**os.environ, "PGPASSWORD": password or ""}
    dsn = make_dsn(host=settings.pg_host, port=settings.pg_port, dbname=settings.pg_database, user=user)
    sys.exit(subprocess.call(["psql", dsn, *ctx.args], env=env))


@app.command("airflow", context_settings={**PASSTHROUGH, "help_option_names": []})
def airflow_cli(ctx: typer.Context) -> None:
    """The Airflow CLI with the embedded stack's configuration, e.g.
    `lakehouse airflow dags trigger lakehouse_bronze_to_gold -c '{"event_date": "2026-11-20"}'`;
    `--help` anywhere is Airflow's (`lakehouse airflow backfill create --help`)."""
    settings = get_settings()
    try:
        env = {**os.environ, **airflow.environment(settings)}
    except PlatformError as exc:
        _fail(exc)
    sys.exit(subprocess.call([airflow.airflow_bin(), *ctx.args], env=env))


if __name__ == "__main__":
    app()
