"""The processes of the embedded stack and the supervisord configuration that
runs them. Every program but PostgreSQL starts through `lakehouse.platform.launch`,
which loads the stack's settings file and execs the real command, so the
supervisor file itself carries no settings and no secrets."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.platform import postgres, spark_connect
from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.stream import DATA_LOSS_EXIT_CODE


@dataclass(frozen=True)
class Service:
    name: str
    group: str  # core | airflow | pipeline | dashboard | grafana
    command: list[str]
    port: int | None = None
    port_setting: str | None = None
    #: further (port, setting) pairs the program listens on, checked like `port`
    extra_ports: tuple[tuple[int, str], ...] = ()
    user: str | None = None
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    #: False: the stop signal goes to the program only (a Spark driver then
    #: finishes its micro-batch; its JVM and workers would die of a group
    #: signal mid-batch). The final SIGKILL still goes to the whole group.
    stopasgroup: bool = True
    startsecs: int = 3
    priority: int = 50
    #: `lakehouse down` stops the programs of a wave all at once, wave 0 first:
    #: a program's wave comes after those of the programs that use it.
    stop_wave: int = 0
    #: An Airflow program whose stop can hang (airflow.JOB_COMPONENTS, run with
    #: the stack dump registered): a few seconds before supervisord would kill
    #: it, `lakehouse down` has it write every thread's stack to its log
    #: (airflow.STACK_DUMP_SIGNAL; to any other program that signal is fatal).
    dumps_stack: bool = False
    #: Exit codes that mean "stopped, do not restart" (supervisord's exitcodes
    #: with autorestart=unexpected); empty: every exit is restarted.
    final_exit_codes: tuple[int, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def _launch(name: str, settings: Settings) -> list[str]:
    return [sys.executable, "-m", "lakehouse.platform.launch", name, "--env-file", str(env_file(settings))]


def env_file(settings: Settings) -> Path:
    return settings.run_dir / "stack.env"


def grafana_binary(settings: Settings) -> str | None:
    b = settings.grafana_bin
    return b if Path(b).is_file() else shutil.which(b)


def services(settings: Settings) -> list[Service]:
    """Every service of the embedded stack, in start order."""
    from lakehouse.platform import airflow, broker

    out = [
        Service(
            "postgres", "core", postgres.server_command(settings),
            port=settings.pg_port, port_setting="PG_PORT",
            user=postgres.os_user_name(settings), stopsignal="INT", stopwaitsecs=60, priority=1, stop_wave=2,
        ),
    ]
    if settings.broker_embedded:
        # Apache Kafka: SIGTERM is its controlled shutdown (log flushed, clean-shutdown
        # marker written, so the next start skips log recovery); give it time.
        out.append(
            Service("broker", "core", _launch("broker", settings),
                    port=broker.host_port(settings)[1], port_setting="KAFKA_BOOTSTRAP_SERVERS",
                    extra_ports=((settings.broker_controller_port, "BROKER_CONTROLLER_PORT"),),
                    stopsignal="TERM", stopwaitsecs=60, startsecs=5, priority=2, stop_wave=2)
        )
    if spark_connect.program(settings) == "spark-connect":
        # The long-running Spark of the DAG's Spark tasks (`spark_default`): Spark
        # Connect, part of Spark; no task starts a JVM of its own. Not run when
        # the streams program serves it (SPARK_CONNECT_IN_STREAMS) or
        # spark_default is another Spark's (AIRFLOW_CONN_SPARK_DEFAULT).
        out.append(Service("spark-connect", "airflow", _launch("spark-connect", settings),
                           port=settings.spark_connect_port, port_setting="SPARK_CONNECT_PORT",
                           stopwaitsecs=60, startsecs=10, priority=9, stop_wave=2))
    out += [
        # Airflow's other programs report to the API server while they stop.
        Service("airflow-api-server", "airflow", _launch("airflow-api-server", settings),
                port=settings.airflow_port, port_setting="AIRFLOW_PORT", startsecs=5, priority=10, stop_wave=1),
        Service("airflow-scheduler", "airflow", _launch("airflow-scheduler", settings),
                dumps_stack="scheduler" in airflow.JOB_COMPONENTS, priority=11),
        Service("airflow-dag-processor", "airflow", _launch("airflow-dag-processor", settings),
                dumps_stack="dag-processor" in airflow.JOB_COMPONENTS, priority=12),
        Service("airflow-triggerer", "airflow", _launch("airflow-triggerer", settings),
                dumps_stack="triggerer" in airflow.JOB_COMPONENTS, priority=13),
    ]
    if settings.producer_enabled:
        out.append(Service("producer", "pipeline", _launch("producer", settings), stopwaitsecs=30, priority=30))
    if settings.streams_enabled:
        # Both queries in one Spark application (spark_jobs.streams). SIGINT to the
        # driver only: it stops between micro-batches (the JVM ignores SIGINT).
        # Serving Spark Connect to the DAG too, it listens on SPARK_CONNECT_PORT
        # and stops after Airflow's scheduler, whose tasks use it.
        serves = spark_connect.in_streams(settings)
        out.append(Service("streams", "pipeline", _launch("streams", settings), stopsignal="INT",
                           port=settings.spark_connect_port if serves else None,
                           port_setting="SPARK_CONNECT_PORT" if serves else None,
                           stopasgroup=False, stopwaitsecs=90, startsecs=10, priority=31,
                           stop_wave=1 if serves else 0,
                           # Kafka data loss, a checkpoint of another topic, refused starting offsets:
                           # restarting would fail the same way (lakehouse.stream.app)
                           final_exit_codes=(DATA_LOSS_EXIT_CODE,)))
    if settings.dashboard_enabled:
        # The overview dashboard without Grafana (lakehouse.dashboard_app), as the reader role.
        out.append(Service("dashboard", "dashboard", _launch("dashboard", settings),
                           port=settings.dashboard_port, port_setting="DASHBOARD_PORT", startsecs=3, priority=39))
    if grafana_binary(settings):
        out.append(Service("grafana", "grafana", _launch("grafana", settings),
                           port=settings.grafana_port, port_setting="GRAFANA_PORT", priority=40))
    return out


def render_supervisor_conf(settings: Settings, svcs: list[Service]) -> str:
    logs = settings.log_dir
    lines = [
        "; generated by `lakehouse up`; edit lakehouse/platform/services.py instead",
        "[unix_http_server]",
        f"file={socket_path(settings)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={pid_path(settings)}",
        f"directory={REPO_ROOT}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket_path(settings)}",
        "",
    ]
    for s in svcs:
        lines += [
            f"[program:{s.name}]",
            "command=" + " ".join(_quote(a) for a in s.command),
            "autostart=false",
            *(["autorestart=unexpected", "exitcodes=" + ",".join(map(str, s.final_exit_codes))]
              if s.final_exit_codes else ["autorestart=true"]),
            "startretries=10",
            f"startsecs={s.startsecs}",
            f"stopsignal={s.stopsignal}",
            f"stopwaitsecs={s.stopwaitsecs}",
            f"stopasgroup={str(s.stopasgroup).lower()}",
            "killasgroup=true",
            f"priority={s.priority}",
            f"stdout_logfile={logs / (s.name + '.log')}",
            "redirect_stderr=true",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
        ]
        if s.user:
            lines.append(f"user={s.user}")
        lines += [f"{k}={v}" for k, v in s.extra.items()]
        lines.append("")
    return "\n".join(lines)


def _quote(arg: str) -> str:
    arg = arg.replace("%", "%%")
    return f'"{arg}"' if any(c in arg for c in " \t;'") else arg


#: The longest path a Unix socket may have (Linux: sun_path's 108 bytes, one the
#: terminating NUL), less what supervisord adds to bind it first under a temporary
#: name (".<its pid>", up to 7 digits).
UNIX_PATH_MAX = 107 - 8


def socket_path(settings: Settings) -> Path:
    """supervisord's control socket: in the run directory; when that path is too
    long for a Unix socket (a deep checkout: supervisord refused to start with
    "AF_UNIX path too long"), in this user's private directory under /tmp,
    named after the run directory (stack.private_socket_dir makes it)."""
    path = settings.run_dir / "supervisor.sock"
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(settings.run_dir)).hexdigest()[:16]
    return Path("/tmp") / f"lakehouse-{os.getuid()}" / f"{digest}.sock"


def pid_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisord.pid"


def conf_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisord.conf"
