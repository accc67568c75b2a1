"""docker-compose.yml runs the code of this repository with the settings of
`.env`: it validates, every command points at code that exists, every
variable it uses is documented, and the PostgreSQL init script works against
a real server. (No Docker engine here: nothing is started in containers.)"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml
from typer.testing import CliRunner

from lakehouse.platform import compose, launch, postgres
from lakehouse.platform.secrets import generate_secrets
from lakehouse.settings import REPO_ROOT, SECRET_FIELDS, Settings
from tests.conftest import make_settings, settings_as_environment

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
TEXT = COMPOSE_FILE.read_text()
SPEC = yaml.safe_load(TEXT)  # PyYAML resolves the x-app anchors and merge keys
SERVICES = SPEC["services"]
APP_SERVICES = {n for n, s in SERVICES.items() if s.get("image") == "lakehouse-app:latest"}


def documented() -> set[str]:
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (REPO_ROOT / ".env.example").read_text(), flags=re.M))


def compose_cli() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    ok = subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    return ["docker", "compose"] if ok else None


def test_docker_compose_config_validates(tmp_path):
    cli = compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` (Docker CLI with the Compose v2 plugin) on this machine")
    env = tmp_path / "compose.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in generate_secrets().items()))
    res = subprocess.run(
        [*cli, "--project-directory", str(REPO_ROOT), "--env-file", str(env), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr


def test_every_variable_compose_uses_is_documented():
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", TEXT))  # $${X} is the container's own
    assert used, "compose uses no settings at all?"
    assert used <= documented(), f"not in .env.example: {sorted(used - documented())}"


def test_every_secret_is_required_not_defaulted():
    for field in SECRET_FIELDS:
        name = field.upper()
        assert re.search(rf"\$\{{{name}:\?", TEXT), f"{name} is not passed with :? (required)"
        assert not re.search(rf"\$\{{{name}:-", TEXT), f"{name} has a default in compose"


def test_app_containers_set_only_real_settings():
    fields = {f.upper() for f in Settings.model_fields}
    for name in APP_SERVICES:
        env = SERVICES[name]["environment"]
        assert set(env) <= fields, f"{name}: {sorted(set(env) - fields)} are not settings"
        assert env["PG_HOST"] == "postgres" and env["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")
        assert env["BROKER_EMBEDDED"] == "false"
        assert "lakehouse-run:/var/lib/lakehouse" in SERVICES[name]["volumes"]
    assert {"producer", "raw-landing", "fast-aggregation", "init", "airflow-api-server", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer"} <= APP_SERVICES


def _module_file(module: str):
    spec = importlib.util.find_spec(module)
    return spec.origin if spec else None


def _python_module(argv: list[str]) -> tuple[str, list[str]] | None:
    if len(argv) >= 3 and argv[0] == "python" and argv[1] == "-m":
        return argv[2], argv[3:]
    return None


def _commands():
    for name, svc in SERVICES.items():
        if "command" in svc:
            yield name, "command", svc["command"]
        test = svc.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            yield name, "healthcheck", test[1:]


@pytest.mark.parametrize("name,kind,argv", list(_commands()), ids=lambda v: v if isinstance(v, str) else None)
def test_every_command_points_at_code_that_exists(name, kind, argv, tmp_path):
    parsed = _python_module(argv)
    assert parsed, f"{name} {kind}: expected `python -m <module> ...`, got {argv}"
    module, args = parsed
    origin = _module_file(module)
    assert origin and os.path.isfile(origin), f"{name} {kind}: module {module} does not exist"
    assert str(REPO_ROOT) in origin, f"{name}: {module} is not this repository's code"
    settings = make_settings(tmp_path / "run")
    if module == "lakehouse.platform.launch":  # the service name must be one launch knows
        cmd, _ = launch.command_for(args[0], settings)
        assert cmd
    if module == "lakehouse.platform.compose":
        assert args[0] in ("init", "health")
        if args[0] == "health":
            assert args[1] in ("airflow-api-server", "airflow-scheduler", "dashboard", "stream", *compose.JOB_TYPES)
            if args[1] == "stream":
                assert args[2] == "--query" and args[3]


def test_services_have_health_checks_memory_limits_and_named_volumes():
    declared = set(SPEC["volumes"])
    for name, svc in SERVICES.items():
        assert svc.get("mem_limit"), f"{name} has no memory limit"
        long_running = svc.get("restart") == "unless-stopped"
        if long_running and name != "producer":  # the producer's health is the streams' input rate
            assert svc.get("healthcheck"), f"{name} has no health check"
        for dep in svc.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert {"kafka", "postgres", "grafana"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert SERVICES["postgres"]["image"].startswith("postgres:15")


def test_compose_kafka_is_the_embedded_brokers_version_and_settings():
    """Both ways run one broker: the image's version is jvm/pom.xml's
    kafka.version, and its settings are the embedded broker's."""
    from lakehouse.platform import broker

    pom = (REPO_ROOT / "jvm" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{version}"
    env = SERVICES["kafka"]["environment"]
    props = broker.server_properties(make_settings(REPO_ROOT / ".run-compose-test-unused"))
    for key in ("process.roles", "min.insync.replicas", "default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr", "message.max.bytes",
                "log.segment.bytes", "auto.create.topics.enable", "group.initial.rebalance.delay.ms"):
        name = "KAFKA_" + key.upper().replace(".", "_")
        assert str(env[name]) == props[key], name


def test_one_shot_services_are_awaited_by_long_running_ones():
    """`docker compose up --wait` (make compose-up) exits 0 after a one-shot
    container exits only when a running service depends on its completion."""
    for name, svc in SERVICES.items():
        if svc.get("restart") == "no":
            adopters = [n for n, other in SERVICES.items()
                        if other.get("depends_on", {}).get(name, {}).get("condition") == "service_completed_successfully"
                        and other.get("restart") == "unless-stopped"]
            assert adopters, f"one-shot {name} is awaited by no long-running service"


def test_grafana_gets_what_its_provisioning_reads():
    grafana_env = SERVICES["grafana"]["environment"]
    used = set()
    for f in (REPO_ROOT / "grafana" / "provisioning").rglob("*.yaml"):
        used |= set(re.findall(r"\$\{(\w+)\}", f.read_text()))
    assert used <= set(grafana_env)
    assert any(v.startswith("./grafana/provisioning:/etc/grafana/provisioning") for v in SERVICES["grafana"]["volumes"])


def test_dockerfile_builds_from_the_lock_with_java_17():
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, flags=re.M)
    assert "openjdk-17-jre-headless" in text
    assert "requirements.lock" in text and (REPO_ROOT / "requirements.lock").is_file()
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".run", ".git"} <= set(ignore)


def test_stream_health_checks_name_the_streams_query():
    """The health check looks up the stream's Spark query name in ops.stream_progress."""
    for name in ("raw-landing", "fast-aggregation"):
        svc = SERVICES[name]
        module = _python_module(svc["command"])[0]
        origin = _module_file(module)
        assert origin, f"{module} does not exist"
        source = Path(origin).read_text()
        declared = re.search(r'^QUERY_NAME\s*=\s*"([^"]+)"', source, flags=re.M)
        assert declared, f"{module} declares no QUERY_NAME"
        test = svc["healthcheck"]["test"]
        assert test[test.index("--query") + 1] == declared.group(1)


def test_compose_cli_rejects_unknown_services():
    res = CliRunner().invoke(compose.app, ["health", "nope"])
    assert res.exit_code != 0


# --- sql/docker-init.sh against a real PostgreSQL (integration) -----------------------------
@pytest.mark.integration
def test_docker_init_script_creates_roles_databases_and_schema(core_stack):
    suffix = uuid.uuid4().hex[:8]
    names = {
        "PG_DATABASE": f"compose_{suffix}",
        "PG_WRITER_USER": f"cw_{suffix}", "PG_WRITER_PASSWORD": uuid.uuid4().hex,
        "PG_READER_USER": f"cr_{suffix}", "PG_READER_PASSWORD": uuid.uuid4().hex,
        "AIRFLOW_DB_NAME": f"caf_{suffix}", "AIRFLOW_DB_USER": f"caf_{suffix}", "AIRFLOW_DB_PASSWORD": uuid.uuid4().hex,
    }
    env = {
        **os.environ, **names,
        "PATH": f"{postgres.bin_dir(core_stack)}:{os.environ['PATH']}",
        "POSTGRES_USER": core_stack.pg_superuser,
        "PGHOST": core_stack.pg_host, "PGPORT": str(core_stack.pg_port),
        "PGPASSWORD": core_stack.pg_superuser_password.get_secret_value(),
    }
    if shutil.which("psql", path=env["PATH"]) is None:
        pytest.fail("psql not found: scripts/bootstrap.sh installs the PostgreSQL client with the server")
    for attempt in (1, 2):  # a second run changes nothing and does not fail
        res = subprocess.run(["bash", str(REPO_ROOT / "sql" / "docker-init.sh")], env=env, capture_output=True, text=True)
        assert res.returncode == 0, f"run {attempt}: {res.stderr}"
    s = Settings(_env_file=None, **{**core_stack.model_dump(), **{k.lower(): v for k, v in names.items()}})
    with psycopg2.connect(s.pg_dsn("writer")) as w, w.cursor() as cur:
        cur.execute("INSERT INTO gold.daily_active_users (event_date, dau_count) VALUES ('2026-01-01', 5)")
    r = psycopg2.connect(s.pg_dsn("reader"))
    r.autocommit = True
    try:
        with r.cursor() as cur:
            cur.execute("SELECT dau_count FROM gold.daily_active_users")
            assert cur.fetchall() == [(5,)]
            for table in ("realtime.events_per_minute", "ops.stream_progress", "ops.batch_runs"):
                cur.execute(f"SELECT count(*) FROM {table}")
            with pytest.raises(psycopg2.Error):
                cur.execute("INSERT INTO gold.daily_active_users (event_date, dau_count) VALUES ('2026-01-02', 1)")
    finally:
        r.close()
    psycopg2.connect(s.pg_dsn("airflow")).close()  # Airflow's role logs into its own database


@pytest.mark.integration
def test_stream_health_reads_recent_progress(core_stack, pg):
    name = f"health-{uuid.uuid4().hex[:8]}"
    fresh, stale, never = f"{name}-fresh", f"{name}-stale", f"{name}-never"
    with pg, pg.cursor() as cur:
        cur.execute(
            "INSERT INTO ops.stream_progress (query_name, batch_id, input_rows, recorded_at) "
            "VALUES (%s, 0, 10, now() - interval '1 hour'), (%s, 1, 10, now() - interval '5 seconds')",
            (stale, fresh),
        )
    reader_dsn = core_stack.pg_dsn("reader")
    assert compose.stream_is_fresh(reader_dsn, fresh, 60)
    assert not compose.stream_is_fresh(reader_dsn, stale, 60)  # last batch an hour ago
    assert not compose.stream_is_fresh(reader_dsn, never, 60)


@pytest.mark.integration
@pytest.mark.slow
def test_compose_init_against_real_services(core_stack, monkeypatch):
    """`compose init` (the one-shot container) on real PostgreSQL and broker:
    schema, topic and Airflow's metadata database (about 30 s on a fresh one)."""
    settings_as_environment(core_stack, monkeypatch)
    res = CliRunner().invoke(compose.app, ["init"])
    assert res.exit_code == 0, res.output
    assert "schema, topic and Airflow metadata ready" in res.output
    with psycopg2.connect(core_stack.pg_dsn("airflow")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('dag', 'dag_run', 'alembic_version')")
        assert cur.fetchone()[0] == 3
