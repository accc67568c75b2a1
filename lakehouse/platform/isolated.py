"""Settings for a stack that must not collide with `make up`: its own run
directory, free ports and fresh secrets. The tests' fixtures and the benchmark
both start their stacks with these."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from lakehouse.platform.secrets import generate_secrets
from lakehouse.platform.stack import port_free
from lakehouse.settings import Settings

#: Isolated stacks listen on ports from here up to the kernel's ephemeral range.
LOWEST_PORT = 10000
_handed_out: set[int] = set()


def ephemeral_ports(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    """The range the kernel takes the local ports of outgoing connections from."""
    try:
        low, high = (int(v) for v in path.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def default_ports() -> set[int]:
    """The ports a `make up` stack listens on by default (Settings): never
    given to an isolated stack, so that one started later still finds them."""
    ports = {f.default for name, f in Settings.model_fields.items()
             if name.endswith("_port") and isinstance(f.default, int)}
    bootstrap = Settings.model_fields["kafka_bootstrap_servers"].default
    return ports | {int(address.rsplit(":", 1)[1]) for address in bootstrap.split(",")}


def free_port() -> int:
    """A TCP port nobody uses right now, below the kernel's ephemeral range,
    not handed out before by this process, not a default port of `make up`
    (default_ports). Not the OS's pick for port 0: that
    comes from the ephemeral range, where any outgoing connection made before
    the service starts (the stack's own, to PostgreSQL or Kafka) may take it
    as its local port; a benchmark stack's Spark Connect server once could not
    start so ("port 41279 for spark-connect is taken by another process").
    Random, so that two processes starting stacks at the same time rarely
    choose the same port (the stack refuses to start a service on a taken
    port, with that message)."""
    low, _ = ephemeral_ports()
    rng = random.SystemRandom()
    reserved = _handed_out | default_ports()
    if low - LOWEST_PORT >= 1000:
        for _ in range(1000):
            port = rng.randrange(LOWEST_PORT, low)
            if port not in reserved and port_free("127.0.0.1", port, reuse_address=False):
                _handed_out.add(port)
                return port
    with socket.socket() as s:  # no room below the ephemeral range: the OS's pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_settings(run_dir: Path | str, **overrides) -> Settings:
    """Settings for an isolated stack: given run dir, free ports, fresh secrets,
    no Grafana; keyword overrides win. `.env` is not read."""
    values = {k.lower(): v for k, v in generate_secrets().items()}
    values.update(
        lakehouse_run_dir=run_dir,
        pg_port=free_port(),
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        broker_controller_port=free_port(),
        airflow_port=free_port(),
        airflow_scheduler_health_port=free_port(),
        airflow_worker_log_port=free_port(),
        airflow_trigger_log_port=free_port(),
        spark_connect_port=free_port(),
        dashboard_port=free_port(),
        grafana_bin="/nonexistent/grafana",
        airflow_conn_spark_default=None,  # the stack's own Spark Connect, whatever the environment says
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)
