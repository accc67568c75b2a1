"""docker-compose.yml runs the code of this repository with the settings of
`.env`: it validates, every command points at code that exists, every
variable it uses is documented, and the PostgreSQL init script works against
a real server. (No Docker engine here: nothing is started in containers.)"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import re
import shutil
import subprocess
import uuid

import psycopg2
import pytest
import yaml
from typer.testing import CliRunner

from lakehouse.platform import airflow, compose, launch, postgres, spark_connect
from lakehouse.platform.secrets import generate_secrets
from lakehouse.platform.services import services
from lakehouse.settings import REPO_ROOT, SECRET_FIELDS, Settings
from tests.conftest import make_settings, settings_as_environment

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
TEXT = COMPOSE_FILE.read_text()
SPEC = yaml.safe_load(TEXT)  # PyYAML resolves the x-app anchors and merge keys
SERVICES = SPEC["services"]
APP_SERVICES = {n for n, s in SERVICES.items() if s.get("image") == "lakehouse-app:latest"}
#: The embedded stack's servers that compose runs from their own images instead.
SERVER_IMAGES = {"postgres": "postgres:", "broker": "apache/kafka:", "grafana": "grafana/grafana:"}
LAUNCH = ["python", "-m", "lakehouse.platform.launch"]


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
    assert {"producer", "streams", "spark-connect", "init", "airflow-api-server", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "dashboard"} <= APP_SERVICES


def _resolve(value, secrets: dict[str, str]):
    """A compose value as the container gets it with an .env of only secrets:
    ${X:-default} -> default, ${X:?...} -> the secret."""
    if not isinstance(value, str):
        return str(value)
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)
    return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: secrets[m.group(1)], value)


SECRETS = generate_secrets()


def container_settings(name: str) -> Settings:
    """The settings an application container of compose runs with (defaults + its environment)."""
    env = {k: _resolve(v, SECRETS) for k, v in SERVICES[name]["environment"].items()}
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})


def _launched(argv: list[str]) -> str | None:
    """The program a command starts through lakehouse.platform.launch, if it does."""
    if "lakehouse.platform.launch" in argv:
        return argv[argv.index("lakehouse.platform.launch") + 1]
    return None


def embedded_programs(tmp_path) -> list:
    """The embedded stack's programs with every optional one on, serving Spark
    Connect the way compose does (SPARK_CONNECT_IN_STREAMS as compose sets it)."""
    s = make_settings(tmp_path / "run", producer_enabled=True, streams_enabled=True, dashboard_enabled=True,
                      spark_connect_in_streams=container_settings("streams").spark_connect_in_streams)
    return services(s)


def test_every_application_program_of_the_embedded_stack_runs_in_compose_with_the_same_command(tmp_path):
    """`make up` and compose run the same programs: each program of
    services() that starts through launch (the application image's) is a
    compose service running `python -m lakehouse.platform.launch <program>`;
    the servers are their images."""
    commands = {name: svc.get("command") for name, svc in SERVICES.items()}
    images = {svc.get("image", "") for svc in SERVICES.values()}
    programs = embedded_programs(tmp_path)
    assert {"streams", "spark-connect", "producer"} <= {p.name for p in programs}
    for program in programs:
        name = _launched(program.command) or program.name
        if name in SERVER_IMAGES:
            assert any(i.startswith(SERVER_IMAGES[name]) for i in images), f"{name}: no {SERVER_IMAGES[name]} service"
            continue
        running = [n for n, c in commands.items() if c == [*LAUNCH, name]]
        assert running, f"the embedded program {name} runs in no compose service ({LAUNCH + [name]})"
        assert running == [name], f"{name} runs as compose service(s) {running}, not one of its name"


def test_compose_runs_no_application_program_the_embedded_stack_does_not(tmp_path):
    """No container runs a program of its own (e.g. one query per container
    where `make up` runs both in one streams application)."""
    programs = {_launched(p.command) for p in embedded_programs(tmp_path)}
    for name in APP_SERVICES:
        svc = SERVICES[name]
        if svc.get("restart") == "no":  # the one-shot init: `lakehouse up`'s steps, no program
            continue
        program = _launched(svc["command"])
        assert svc["command"] == [*LAUNCH, program], f"{name} runs {svc['command']}, not an embedded program"
        assert program in programs, f"{name} runs {program}, which the embedded stack does not"


def test_spark_default_points_at_the_compose_service_that_serves_spark_connect():
    """The DAG's Spark tasks (scheduler's container) reach Spark Connect by
    spark_default: its host is a compose service that runs the program serving
    Spark Connect, listening where spark_default says, inside the network only."""
    conns = {name: json.loads(airflow.environment(container_settings(name))["AIRFLOW_CONN_SPARK_DEFAULT"])
             for name in APP_SERVICES if name.startswith("airflow-")}
    conn = conns["airflow-scheduler"]
    assert all(c == conn for c in conns.values()), conns
    host, port = conn["host"], conn["port"]
    assert host in SERVICES, f"spark_default points at {host}:{port}, which is no compose service"
    server = SERVICES[host]
    settings = container_settings(host)
    assert server["command"] == [*LAUNCH, spark_connect.program(settings)]
    binding = spark_connect.server_conf(settings)
    assert binding["spark.connect.grpc.binding.port"] == str(port)
    # binds the address its own name has (hostname: resolvable inside the container too)
    assert binding["spark.connect.grpc.binding.address"] == host == server.get("hostname")
    assert not server.get("ports"), "Spark Connect is published beyond the compose network"
    assert "lakehouse-run:/var/lib/lakehouse" in server["volumes"]  # the same Delta tables as the streams
    assert server["healthcheck"]["test"][1:] == ["python", "-m", "lakehouse.platform.compose", "health", "spark-connect"]
    # no other container serves it on the same port (the streams application would, asked to)
    assert not spark_connect.in_streams(container_settings("streams"))


def _bytes(size: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)b?", str(size).strip().lower())
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2)]


def test_spark_containers_have_room_for_their_heap_and_the_jvm_around_it():
    """A JVM needs ~0.5 GB beside its heap (metaspace, threads, code cache,
    the C heap) and its Python workers: the limit is at least heap + 0.5 GB."""
    heaps = {"spark-connect": container_settings("spark-connect").spark_connect_memory,
             "streams": container_settings("streams").spark_driver_memory}
    for name, heap in heaps.items():
        assert _bytes(SERVICES[name]["mem_limit"]) >= _bytes(heap) + 512 * 2**20, (name, heap)


def test_every_server_a_container_starts_binds_an_address_the_container_has():
    """A bind address is loopback, any, or the container's own service name:
    not another container's (AIRFLOW_HOST is the api-server's name everywhere)."""
    own = {"127.0.0.1", "0.0.0.0", "localhost"}
    scheduler = airflow.environment(container_settings("airflow-scheduler"))
    assert scheduler["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] in own
    api = airflow.environment(container_settings("airflow-api-server"))
    assert api["AIRFLOW__API__HOST"] in own | {"airflow-api-server"}
    assert container_settings("dashboard").dashboard_host in own
    server = spark_connect.server_conf(container_settings("spark-connect"))
    assert server["spark.connect.grpc.binding.address"] in own | {"spark-connect"}
    assert server["spark.driver.bindAddress"] in own


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
            assert args[1] in compose.SERVICES
            if args[1] == "stream":
                assert args[2] == "--query" and args[3]
            res = CliRunner().invoke(compose.app, ["health", *args[1:], "--help"])
            assert res.exit_code == 0, res.output  # the options parse


def test_services_have_health_checks_memory_limits_and_named_volumes():
    declared = set(SPEC["volumes"])
    for name, svc in SERVICES.items():
        assert svc.get("mem_limit"), f"{name} has no memory limit"
        long_running = svc.get("restart") == "unless-stopped"
        if long_running:
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
    env = {k: _resolve(v, SECRETS) for k, v in SERVICES["kafka"]["environment"].items()}
    props = broker.server_properties(make_settings(REPO_ROOT / ".run-compose-test-unused"))
    # addresses and paths are the container's own; every other setting is the embedded broker's
    addresses = {"node.id", "controller.quorum.voters", "listeners", "advertised.listeners", "log.dirs"}
    assert len(set(props) - addresses) >= 20
    for key in set(props) - addresses:
        name = "KAFKA_" + key.upper().replace(".", "_")
        assert name in env, f"compose's broker does not set {key} ({name})"
        assert env[name] == props[key], name


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
    # the spark profile of jvm/pom.xml where the streams and the Spark Connect server
    # look for it (LAKEHOUSE_JVM_DIR's default, <repository>/.jvm, the repository at /app)
    assert re.search(r"^WORKDIR /app$", text, flags=re.M) and "pip install --no-deps -e ." in text
    assert Settings.model_fields["lakehouse_jvm_dir"].default == REPO_ROOT / ".jvm"
    mvn = re.search(r"^RUN mvn .*?(?<!\\)$", text, flags=re.M | re.S).group(0)
    assert "-f jvm/pom.xml -P spark" in mvn and "-DoutputDirectory=/app/.jvm/spark" in mvn and " -C " in mvn
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".run", ".git"} <= set(ignore)


def test_stream_health_checks_name_every_query_the_streams_application_runs(monkeypatch, tmp_path):
    """The health check asks ops.stream_progress for each query of the
    application its container runs (both: raw-landing, fast-aggregation)."""
    checked = {n: s for n, s in SERVICES.items() if s.get("healthcheck", {}).get("test", [])[4:6] == ["health", "stream"]}
    assert "streams" in checked
    for name, svc in checked.items():
        argv, _ = launch.command_for(_launched(svc["command"]), make_settings(tmp_path / "run"))
        module = importlib.import_module(_python_module(["python", *argv[1:]])[0])
        started = {}
        monkeypatch.setattr(module, "run_streaming_job", lambda app_name, starts, target: started.update(starts))
        module.main()  # records the queries it would start
        test = svc["healthcheck"]["test"]
        queries = [test[i + 1] for i, arg in enumerate(test) if arg == "--query"]
        assert sorted(queries) == sorted(started) and len(started) == 2, (name, queries, list(started))


def test_stream_health_needs_every_query_fresh(monkeypatch):
    fresh = {"a": True, "b": False}
    asked = []
    monkeypatch.setattr(compose, "stream_is_fresh", lambda dsn, q, age: asked.append(q) or fresh[q])
    monkeypatch.setattr(compose, "get_settings", lambda: make_settings(REPO_ROOT / ".run-compose-test-unused"))
    runner = CliRunner()
    assert runner.invoke(compose.app, ["health", "stream", "--query", "a"]).exit_code == 0
    assert runner.invoke(compose.app, ["health", "stream", "--query", "a", "--query", "b"]).exit_code == 1
    assert runner.invoke(compose.app, ["health", "stream"]).exit_code == 1  # no query: not healthy
    assert "b" in asked


def test_spark_connect_health_asks_where_spark_default_points(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        s = make_settings(REPO_ROOT / ".run-compose-test-unused", spark_connect_host="localhost", spark_connect_port=port)
        monkeypatch.setattr(compose, "get_settings", lambda: s)
        assert CliRunner().invoke(compose.app, ["health", "spark-connect"]).exit_code == 0
    assert CliRunner().invoke(compose.app, ["health", "spark-connect"]).exit_code == 1  # closed


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


@pytest.mark.integration
def test_producer_health_reads_the_topics_newest_record(core_stack):
    """The producer's container is healthy while the topic gets records: one
    timestamped within --max-age in any partition (on the real broker)."""
    import time

    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    servers, topic = core_stack.kafka_bootstrap_list, f"health-{uuid.uuid4().hex[:8]}"
    client = {"bootstrap_servers": servers}
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        admin.close()
    assert not compose.topic_is_fresh(client, topic, 60)  # empty
    producer = KafkaProducer(bootstrap_servers=servers)
    try:
        producer.send(topic, b"old", partition=0, timestamp_ms=int((time.time() - 3600) * 1000)).get(timeout=30)
        assert not compose.topic_is_fresh(client, topic, 60)  # newest record an hour old
        assert compose.topic_is_fresh(client, topic, 7200)
        producer.send(topic, b"new", partition=1).get(timeout=30)
        assert compose.topic_is_fresh(client, topic, 60)
    finally:
        producer.close()
    assert not compose.topic_is_fresh(client, f"{topic}-missing", 60)
    assert not compose.topic_is_fresh({"bootstrap_servers": ["127.0.0.1:1"]}, topic, 60)  # no broker: unhealthy, no hang


def test_dashboard_health_asks_its_login_page(monkeypatch):
    """An HTTP health check is healthy on a 200 only: not on another status,
    not when nothing listens (stack.http_error, also what `lakehouse up`
    waits with)."""
    import http.server
    import threading

    status = {"/login": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(status.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s = make_settings(REPO_ROOT / ".run-compose-test-unused", dashboard_port=server.server_address[1])
    monkeypatch.setattr(compose, "get_settings", lambda: s)
    try:
        assert CliRunner().invoke(compose.app, ["health", "dashboard"]).exit_code == 0
        status["/login"] = 503
        assert CliRunner().invoke(compose.app, ["health", "dashboard"]).exit_code == 1
    finally:
        server.shutdown()
        server.server_close()
    assert CliRunner().invoke(compose.app, ["health", "dashboard"]).exit_code == 1  # nothing listens
