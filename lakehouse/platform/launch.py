"""Entry point the process manager runs for each program: load the stack's
settings file, then exec the real command with its environment.

    python -m lakehouse.platform.launch <service> --env-file <run>/stack.env

docker-compose.yml runs the same entry point without --env-file: the
container's environment carries the settings.
"""

from __future__ import annotations

import argparse
import os
import sys

from dotenv import dotenv_values

from lakehouse.platform.errors import PlatformError
from lakehouse.settings import Settings


def command_for(name: str, settings: Settings) -> tuple[list[str], dict[str, str]]:
    from lakehouse.platform import airflow, broker

    if name == "broker":
        # checked again on every (re)start by the process manager; `make up` formats
        broker.check_disk(settings)
        if broker.check_storage(settings) is None:
            raise PlatformError(f"no formatted Kafka log in {broker.log_dir(settings)}; start the stack with `make up`")
        broker.write_config(settings)
        broker.check_recovery(settings)  # after a kill -9: no truncation of acknowledged records
        return broker.server_command(settings), {}
    if name == "spark-connect":
        from lakehouse.platform import spark_connect

        return spark_connect.server_command(settings)
    if name.startswith("airflow-"):
        component = name.removeprefix("airflow-")
        return airflow.command(component), airflow.environment(settings)
    if name == "producer":
        # runs until the process manager stops it (SIGTERM flushes, exits 0)
        return [
            sys.executable, "-m", "producer",
            "--rate", str(settings.producer_rate),
            "--bootstrap-servers", settings.kafka_bootstrap_servers,
            "--topic", settings.kafka_topic,
        ], {}
    if name == "streams":
        # Spark's Python workers must run this interpreter (the venv, with pyarrow)
        return [sys.executable, "-m", "spark_jobs.streams"], {"PYSPARK_PYTHON": sys.executable}
    if name == "dashboard":
        return [sys.executable, "-m", "lakehouse.dashboard_app"], {}
    if name == "grafana":
        from lakehouse.platform import grafana

        return grafana.server_command(settings), grafana.environment(settings)
    raise SystemExit(f"unknown service {name!r}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("service")
    p.add_argument("--env-file", help="settings file of the stack; omitted: the environment only (docker compose)")
    args = p.parse_args(argv)
    if args.env_file:
        values = {k: v for k, v in dotenv_values(args.env_file).items() if v is not None}
        os.environ.update(values)
    settings = Settings(_env_file=None)
    try:
        cmd, env = command_for(args.service, settings)
    except PlatformError as exc:
        print(f"error: {exc}", flush=True)
        raise SystemExit(1) from None
    os.environ.update(env)
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, os.environ)


if __name__ == "__main__":
    main()
