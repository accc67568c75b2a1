"""Start, inspect and stop the embedded stack under supervisord.

`up` is idempotent: it starts supervisord when it is not running, then only the
services that are not running, each after what it needs is ready (PostgreSQL
before Airflow's migration, the broker before the topic). `down` stops them all
(the servers last) and waits until supervisord has exited, so every port is
free; data stays.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from supervisor.xmlrpc import SupervisorTransport

from lakehouse.platform import airflow, broker, postgres, spark_connect
from lakehouse.platform.errors import PlatformError
from lakehouse.platform.services import (
    Service,
    conf_path,
    env_file,
    pid_path,
    render_supervisor_conf,
    services,
    socket_path,
)
from lakehouse.settings import REPO_ROOT, Settings

MARKER = ".lakehouse-run"
MARKER_TEXT = "lakehouse run directory v1\n"


def log(msg: str) -> None:
    print(f"[lakehouse] {msg}", flush=True)


# --- run directory ------------------------------------------------------------
def foreign_run_dir(run: Path) -> bool:
    """True when `run` holds something but no MARKER: not ours to start a stack in."""
    return run.exists() and not (run / MARKER).exists() and any(run.iterdir())


def prepare_run_dir(settings: Settings) -> None:
    run = settings.run_dir
    marker = run / MARKER
    if foreign_run_dir(run):
        raise PlatformError(
            f"{run} is not a lakehouse run directory (no {MARKER}); set LAKEHOUSE_RUN_DIR elsewhere or move it away"
        )
    if marker.exists() and marker.read_text() != MARKER_TEXT:
        raise PlatformError(f"{marker} is from another version or corrupted; run `make clean` to start afresh")
    run.mkdir(parents=True, exist_ok=True)
    run.chmod(0o755)  # the PostgreSQL OS user must traverse it
    marker.write_text(MARKER_TEXT)
    for sub in (settings.log_dir, settings.data_dir, settings.checkpoint_dir, settings.airflow_home):
        sub.mkdir(parents=True, exist_ok=True)
    settings.log_dir.chmod(0o777)  # writable by the PostgreSQL OS user


def stack_env(settings: Settings) -> dict[str, str]:
    """Every setting as the launcher reads it (stack.env), secrets included."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, (dict, list)):  # e.g. KAFKA_OPTIONS: JSON, as pydantic-settings reads it
            value = json.dumps(value)
        env[name.upper()] = str(value)
    env["LAKEHOUSE_RUN_DIR"] = str(settings.run_dir)
    return env


def write_stack_env(settings: Settings) -> None:
    """All settings, secrets included, for the launcher (mode 600, run dir only)."""
    path = env_file(settings)
    path.touch(mode=0o600)
    # Single-quoted, as python-dotenv (the launcher's and pydantic-settings'
    # reader) reads them back verbatim: a value may hold spaces, quotes, `#`
    # (unquoted, " #" starts a comment) or newlines.
    path.write_text("".join(f"{name}='{_single_quoted(value)}'\n" for name, value in stack_env(settings).items()))
    path.chmod(0o600)


def _single_quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _differing(started: dict, now: dict) -> list[str]:
    """Keys whose values differ between two records, or that one of them lacks."""
    return sorted(key for key in started.keys() | now.keys() if started.get(key) != now.get(key))


def changed_settings(settings: Settings) -> list[str]:
    """Names of the settings whose values differ from those the running stack
    started with (its stack.env): `make up` leaves a running stack as it is."""
    path = env_file(settings)
    if not path.exists():
        return []
    return _differing(dotenv_values(path), stack_env(settings))


#: What the stack's programs run, relative to the checkout: their Python code,
#: the schema applied at start, the dashboard's definition and the dependency
#: pins. `make up` on a running stack compares them with those it started from.
CODE = ("lakehouse", "spark_jobs", "producer", "dags", "sql", "grafana",
        "requirements.lock", "pyproject.toml", "jvm/pom.xml")


def code_digest(root: Path = REPO_ROOT) -> dict[str, str]:
    """Each file of CODE under `root` (bytecode caches left out) -> its sha256."""
    digest = {}
    for entry in CODE:
        top = root / entry
        for f in [top] if top.is_file() else sorted(top.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                digest[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return digest


def code_record(settings: Settings) -> Path:
    return settings.run_dir / "stack.code"


def write_stack_code(settings: Settings, root: Path = REPO_ROOT) -> None:
    """Record the code the stack starts from (code_digest), next to its stack.env."""
    code_record(settings).write_text(json.dumps(code_digest(root), indent=0, sort_keys=True) + "\n")


def changed_code(settings: Settings, root: Path = REPO_ROOT) -> list[str] | None:
    """Files of CODE added, removed or changed since the running stack
    started (its stack.code); None when it started without a record (by a
    version before this one)."""
    path = code_record(settings)
    if not path.exists():
        return None
    return _differing(json.loads(path.read_text()), code_digest(root))


def other_code(changed: list[str] | None) -> str:
    """`make up`'s words for a running stack that started from other code."""
    if changed is None:
        what = "was started by an earlier version of this checkout"
    else:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        what = f"started from other code ({shown} changed since)"
    return (f"the running stack {what}: `make up` leaves it and its database schema as they are; "
            "`make down && make up` restarts it on this checkout's code (data is kept)")


def load_stack_settings(run_dir: Path) -> Settings:
    """Settings of a started stack, as its launcher sees them (tests use this)."""
    values = {k.lower(): v for k, v in dotenv_values(run_dir / "stack.env").items() if v is not None}
    # a stack started by another version may have settings this one does not know
    return Settings(_env_file=None, **{k: v for k, v in values.items() if k in Settings.model_fields})


# --- supervisord ---------------------------------------------------------------
def _proxy(settings: Settings):
    transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def supervisord_pid(settings: Settings) -> int | None:
    """The running supervisord's pid; a stale pid file is removed."""
    path = pid_path(settings)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        pid = 0
    if pid and _pid_alive(pid):
        return pid
    log(f"removing stale pid file {path}")
    path.unlink(missing_ok=True)
    socket_path(settings).unlink(missing_ok=True)
    return None


def private_socket_dir(path: Path) -> None:
    """The directory of a control socket outside the run directory
    (services.socket_path): made 0700, and refused if another user owns it or
    may enter it (they could take the socket's name or reach the stack)."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PlatformError(f"{path} (for supervisord's socket: the run directory's path is too long for one) "
                            f"must be a directory of this user's, mode 0700; remove it or set LAKEHOUSE_RUN_DIR "
                            f"to a shorter path")


def _start_supervisord(settings: Settings, svcs: list[Service]) -> None:
    if socket_path(settings).parent != settings.run_dir:
        private_socket_dir(socket_path(settings).parent)
    conf_path(settings).write_text(render_supervisor_conf(settings, svcs))
    supervisord = str(Path(sys.executable).parent / "supervisord")
    res = subprocess.run([supervisord, "-c", str(conf_path(settings))], capture_output=True, text=True)
    if res.returncode != 0:
        raise PlatformError(f"supervisord did not start: {(res.stderr or res.stdout).strip()}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if _proxy(settings).supervisor.getState()["statename"] == "RUNNING":
                return
        except (OSError, xmlrpc.client.Fault):
            pass
        time.sleep(0.2)
    raise PlatformError(f"supervisord did not answer on {socket_path(settings)}; see {settings.log_dir}/supervisord.log")


def process_states(settings: Settings) -> dict[str, str]:
    """Service name -> supervisor state (RUNNING, STOPPED, FATAL, ...); {} when down."""
    if supervisord_pid(settings) is None:
        return {}
    try:
        return {p["name"]: p["statename"] for p in _proxy(settings).supervisor.getAllProcessInfo()}
    except OSError as exc:
        raise PlatformError(
            f"supervisord is running but its socket {socket_path(settings)} does not answer ({exc}); "
            "stop it with `make down` or kill the pid in supervisord.pid"
        ) from exc


def port_free(host: str, port: int, *, reuse_address: bool = True) -> bool:
    """Whether a listener could bind host:port now. With `reuse_address` (a
    service about to start, which sets SO_REUSEADDR itself) a port whose last
    connections linger in TIME_WAIT counts as free; without it (choosing a
    port for later) it does not."""
    with socket.socket() as s:
        if reuse_address:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports_free(svc: Service) -> None:
    """Raise the one-line error of `make up` when a port of svc is taken."""
    ports = ([(svc.port, svc.port_setting)] if svc.port is not None else []) + list(svc.extra_ports)
    for port, setting in ports:
        if not port_free("127.0.0.1", port):
            raise PlatformError(
                f"port {port} for {svc.name} is taken by another process; free it or set {setting} in .env"
            )


def _start(settings: Settings, svc: Service) -> None:
    check_ports_free(svc)
    try:
        _proxy(settings).supervisor.startProcess(svc.name, True)
    except xmlrpc.client.Fault as exc:
        if "ALREADY_STARTED" in exc.faultString:
            return
        if svc.name == "broker" and (why := broker.last_error(settings)):
            if why.startswith("error: "):  # the launcher's own check: already says what to do
                raise PlatformError(why.removeprefix("error: ")) from exc
            raise PlatformError(f"the broker did not start: {why} -- see {settings.log_dir / 'broker.log'}; "
                                "nothing was deleted") from exc
        raise PlatformError(
            f"{svc.name} did not start ({exc.faultString}); see {settings.log_dir / (svc.name + '.log')}"
        ) from exc


# --- readiness -----------------------------------------------------------------
def _broker_watch(settings: Settings):
    """A check for the wait on the broker: raises (and stops its restarts) once
    the process has exited, with the last error of its log as the message."""
    proxy = _proxy(settings).supervisor
    first = proxy.getProcessInfo("broker")["start"]

    def alive() -> None:
        info = proxy.getProcessInfo("broker")
        if info["statename"] in ("RUNNING", "STARTING") and info["start"] == first:
            return
        try:
            proxy.stopProcess("broker", True)
        except xmlrpc.client.Fault:
            pass
        why = broker.last_error(settings) or f"it is {info['statename']}"
        if why.startswith("error: "):
            raise PlatformError(why.removeprefix("error: "))
        raise PlatformError(f"the broker stopped while starting: {why} -- see {settings.log_dir / 'broker.log'}; "
                            "nothing was deleted")

    return alive


def port_open(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether something accepts a connection on host:port now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_open(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.5)
    raise PlatformError(f"{what} is not listening on {host}:{port} after {timeout:.0f}s")


def http_error(url: str, timeout: float = 5.0) -> str | None:
    """None when GET `url` answers 200 now; else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return None if r.status == 200 else f"HTTP {r.status}"
    except OSError as exc:
        return str(exc)


def wait_http_ok(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = http_error(url, 3)
        if last is None:
            return
        time.sleep(0.5)
    raise PlatformError(f"{what} not healthy at {url} after {timeout:.0f}s: {last}")


# --- commands ------------------------------------------------------------------
@dataclass
class UpResult:
    started: list[str]
    already_running: list[str]
    #: changed_code of a running stack that started from other code (then
    #: `up` changed nothing); [] when it runs this checkout's
    other_code: list[str] | None = field(default_factory=list)


def up(settings: Settings, groups: tuple[str, ...] = ("core", "airflow", "pipeline", "dashboard", "grafana")) -> UpResult:
    """Start (the given groups of) the embedded stack; a no-op when it runs."""
    prepare_run_dir(settings)
    postgres.bin_dir(settings)
    postgres.ensure_cluster(settings)
    svcs = [s for s in services(settings) if s.group in groups]
    states = process_states(settings)
    if not states:
        # Every port first: a start refused for a taken port leaves no
        # supervisord behind, whose stack.env would keep the old port when
        # the next `make up` runs with the port changed in .env.
        for s in svcs:
            check_ports_free(s)
        write_stack_env(settings)
        write_stack_code(settings)
        _start_supervisord(settings, svcs)
        states = process_states(settings)
        changed = []
    else:
        changed = changed_code(settings)
    missing = [s.name for s in svcs if s.name not in states]
    if missing:
        raise PlatformError(
            f"the running stack has no {', '.join(missing)}; run `make down` then `make up` to reconfigure"
        )
    todo = [s for s in svcs if states.get(s.name) != "RUNNING"]
    if changed != []:
        # Neither this checkout's schema (sql/) under programs running the code
        # they started from, nor a program of this checkout among them: seen
        # after `git pull` over a running stack, old streams recorded no
        # progress under the new key of ops.stream_progress, and the old
        # scheduler's task processes could not load the new DAG file.
        if todo:
            raise PlatformError(f"{', '.join(s.name for s in todo)} not running, and {other_code(changed)}")
        return UpResult([], [s.name for s in svcs], changed)
    result = UpResult([s.name for s in todo], [s.name for s in svcs if s not in todo])
    by_name = {s.name: s for s in todo}

    if "postgres" in by_name:
        log("starting PostgreSQL")
        _start(settings, by_name["postgres"])
    if "core" in groups:
        postgres.wait_ready(settings)
        postgres.apply_schema(settings)  # idempotent: roles, databases, sql/
    if "broker" in by_name:
        broker.prepare(settings, say=log)  # disk, cluster id; formats a new log once
        log("starting Apache Kafka (KRaft, one node)")
        _start(settings, by_name["broker"])
        broker.ensure_topic(settings, alive=_broker_watch(settings))
    elif settings.broker_embedded is False and "core" in groups:
        broker.ensure_topic(settings)
    airflow_todo = [s for s in todo if s.group == "airflow"]
    if airflow_todo:
        log("migrating Airflow's metadata database")
        airflow.migrate(settings)
        for s in airflow_todo:
            log(f"starting {s.name}")
            _start(settings, s)
        wait_http_ok(airflow.base_url(settings) + "/api/v2/monitor/health", 180, "Airflow API server")
    for s in todo:
        if s.group in ("pipeline", "dashboard", "grafana"):
            log(f"starting {s.name}")
            _start(settings, s)
    connect = spark_connect.program(settings)
    if connect in by_name:  # the DAG's Spark: listening by now, or say so
        wait_port_open(settings.spark_connect_host, settings.spark_connect_port, 180,
                       f"Spark Connect (program {connect})")
    if "dashboard" in by_name:
        from lakehouse.platform import dashboard

        wait_http_ok(dashboard.base_url(settings) + "/login", 120, "the overview dashboard")
    return result


def down(settings: Settings, timeout: float = 120) -> bool:
    """Stop every process of the stack and wait for supervisord to exit.

    The programs stop in waves (`Service.stop_wave`), each all at once: the
    programs that use the servers, then Airflow's API server, then the
    servers. supervisord's own shutdown stops one program at a time, and the
    stop times added up (~25-45 s for the whole stack)."""
    pid = supervisord_pid(settings)
    if pid is None:
        return False
    wave = {s.name: s.stop_wave for s in services(settings)}
    try:
        names = [p["name"] for p in _proxy(settings).supervisor.getAllProcessInfo()]
        for w in sorted({wave.get(n, 0) for n in names}):
            _stop_together(settings, [n for n in names if wave.get(n, 0) == w])
    except (OSError, xmlrpc.client.Fault) as exc:
        log(f"stopping the programs together failed ({exc}); supervisord stops them one by one")
    try:
        _proxy(settings).supervisor.shutdown()
    except (OSError, xmlrpc.client.Fault):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        raise PlatformError(f"supervisord (pid {pid}) did not stop within {timeout:.0f}s; see {settings.log_dir}")
    socket_path(settings).unlink(missing_ok=True)
    return True


#: Seconds before supervisord's SIGKILL at which `_stop_together` has a
#: program with `Service.dumps_stack` that is still stopping write its stacks.
STACK_DUMP_LEAD = 5


def _stop_together(settings: Settings, names: list[str]) -> None:
    """Send each program its stop signal at once and wait until all have
    stopped; supervisord kills one that outlives its stopwaitsecs, and one
    that can write its stacks (`Service.dumps_stack`) writes them to its log
    first, so the log tells where it hung."""
    proxy = _proxy(settings).supervisor
    svc = {s.name: s for s in services(settings)}
    for name in names:
        try:
            proxy.stopProcess(name, False)
        except xmlrpc.client.Fault as exc:
            if "NOT_RUNNING" not in exc.faultString:
                raise
    started = time.monotonic()
    dump_at = {n: started + svc[n].stopwaitsecs - STACK_DUMP_LEAD for n in names if n in svc and svc[n].dumps_stack}
    pending = set(names)
    deadline = started + 150  # beyond every stopwaitsecs (services.py); then supervisord's shutdown
    while pending and time.monotonic() < deadline:
        info = {n: proxy.getProcessInfo(n) for n in pending}
        pending = {n for n in pending if info[n]["statename"] == "STOPPING"}
        for n in sorted(pending & dump_at.keys()):
            if time.monotonic() >= dump_at[n]:
                del dump_at[n]
                log(f"{n} has not stopped after {svc[n].stopwaitsecs - STACK_DUMP_LEAD} s; "
                    f"its threads' stacks go to {settings.log_dir / (n + '.log')}")
                try:
                    os.kill(info[n]["pid"], airflow.STACK_DUMP_SIGNAL)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)


def clean(settings: Settings) -> None:
    """Remove the run directory (and the cluster it links to). Stops the stack first."""
    down(settings)
    run = settings.run_dir
    if not run.exists():
        return
    if not (run / MARKER).exists():
        raise PlatformError(f"{run} is not a lakehouse run directory (no {MARKER}); not removing it")
    pgdata = postgres.data_dir(settings)
    if pgdata.is_symlink():
        shutil.rmtree(pgdata.resolve(), ignore_errors=True)
    shutil.rmtree(run)
