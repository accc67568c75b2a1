"""The stack on a secured Kafka cluster: KAFKA_OPTIONS alone, as
docs/streaming.md shows it (SASL_SSL with SCRAM-SHA-512, a PEM trust store),
for every client of the topic.

The cluster is Apache Kafka from the project's jars, one node whose clients'
listener takes SASL_SSL only (a certificate from a CA made here for
127.0.0.1, SCRAM credentials added when its storage is formatted), as a
managed Kafka would. `make up`'s programs run against it with
BROKER_EMBEDDED=false: topic creation, the producer, both streaming queries;
then the DAG's completeness check asks it for the date's offsets. A wrong
password is refused at once with the broker's answer, not after two minutes
of retries.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from lakehouse.platform import broker, stack
from lakehouse.platform.errors import PlatformError
from lakehouse.polling import wait_for
from tests.conftest import free_port, make_settings
from tests.kafka_helpers import make_certificates

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER, PASSWORD = "lakehouse", "s3cret-\"quoted\"-pw"
MECHANISM = "SCRAM-SHA-512"


def jaas(user: str, password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{escaped}";'


@pytest.fixture(scope="module")
def secured_cluster(tmp_path_factory):
    """A one-node Kafka cluster whose clients must use SASL_SSL (SCRAM-SHA-512);
    yields (bootstrap address, CA certificate path). Brokers and controller
    talk over listeners of their own."""
    where = tmp_path_factory.mktemp("secured-kafka")
    ca, keystore = make_certificates(where)
    client_port, internal_port, controller_port = free_port(), free_port(), free_port()
    host = "127.0.0.1"
    # the embedded broker's settings for everything but the listeners
    base = make_settings(where / "run", kafka_bootstrap_servers=f"{host}:{internal_port}",
                         broker_controller_port=controller_port)
    props = {
        **broker.server_properties(base),
        "log.dirs": str(where / "log"),
        "listeners": f"INTERNAL://{host}:{internal_port},SECURE://{host}:{client_port},"
                     f"CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"INTERNAL://{host}:{internal_port},SECURE://{host}:{client_port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SECURE:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "listener.name.secure.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.secure.{MECHANISM.lower()}.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.secure.ssl.keystore.type": "PEM",
        "listener.name.secure.ssl.keystore.location": keystore,
    }
    config = where / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    java = [broker.java_bin(), "-Xmx256m", "-cp", broker.classpath(base)]
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "--cluster-id", broker.new_cluster_id(),
                    "--config", str(config), "--add-scram", f"{MECHANISM}=[name={USER},password={PASSWORD}]"],
                   check=True, capture_output=True, timeout=120)
    log = open(where / "broker.log", "wb")
    proc = subprocess.Popen([*java, "kafka.Kafka", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: stack.port_open(host, client_port), 120, "the secured broker to listen", every=0.5)
        yield f"{host}:{client_port}", ca
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def client_settings(tmp_path, cluster, password=PASSWORD, trust="ca", **overrides):
    """A stack of `make up`'s programs on the secured cluster: KAFKA_OPTIONS as
    docs/streaming.md writes it (trust=None: no trust store, the system's CAs)."""
    bootstrap, ca = cluster
    options = {"security.protocol": "SASL_SSL", "sasl.mechanism": MECHANISM, "sasl.jaas.config": jaas(USER, password)}
    if trust:
        options |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": ca}
    return make_settings(tmp_path / "run", broker_embedded=False, kafka_bootstrap_servers=bootstrap,
                         kafka_options=options, **overrides)


def test_the_stack_runs_on_a_sasl_ssl_cluster_with_kafka_options_alone(secured_cluster, tmp_path):
    """`up` creates the topic over SASL_SSL; the producer sends over it; raw
    landing and fast aggregation read it; the completeness check reads the
    date's offsets from it."""
    from bench.kafka_util import high_watermarks
    from lakehouse import catalog, kafka_clients
    from lakehouse.batch import completeness, jobs
    from lakehouse.batch.catch_up import bronze_rows_per_date

    settings = client_settings(tmp_path, secured_cluster, producer_rate=50.0)
    try:
        stack.up(settings, groups=("core", "pipeline"))
        assert "broker" not in stack.process_states(settings)
        client = kafka_clients.client_config(settings)

        def on_topic() -> dict[int, int]:
            """The topic's end offsets, asked over SASL_SSL."""
            return high_watermarks(settings, settings.kafka_topic)

        def landed() -> int | None:
            """Bronze's rows once the producer's records reached it (None before)."""
            rows = sum(bronze_rows_per_date(catalog.BRONZE_EVENTS.path(settings)).values())
            return rows if rows >= 200 and sum(on_topic().values()) >= 200 else None

        wait_for(landed, 600, "the producer's events in bronze", every=5)
        with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
            wait_for(lambda: cur.execute("SELECT count(*) FROM realtime.events_per_minute") or cur.fetchone()[0],
                     300, "realtime rows", every=3)
        conn.close()

        # the DAG's completeness check asks the cluster for the offsets at a cutoff ...
        mid = datetime.now(timezone.utc)
        before = sum(on_topic().values())
        wait_for(lambda: sum(on_topic().values()) > before + 50, 120, "records sent after the cutoff", every=1)
        targets, beginnings = completeness.targets(client, settings.kafka_topic, mid)
        ends = on_topic()
        assert 0 < sum(targets.values()) < sum(ends.values()), (targets, ends)
        assert set(beginnings.values()) == {0}
        # ... and the DAG's sensor, for a past date, against raw landing's
        # committed progress, with the settings the stack's programs get
        past = (datetime.now(timezone.utc) - timedelta(days=2)).date()
        launched = stack.load_stack_settings(settings.run_dir)

        def checked():
            verdict, position = jobs.check_complete(launched, past, lambda: psycopg2.connect(settings.pg_dsn("writer")))
            return (verdict, position) if position else None

        verdict, position = wait_for(checked, 300, "raw landing's progress on the topic", every=5)
        assert verdict.complete, verdict
        assert settings.kafka_topic in position["end_offsets"]
        assert stack.process_states(settings)["streams"] == "RUNNING"
    finally:
        stack.clean(settings)


@pytest.mark.parametrize("mistake, answer", [
    ({"password": "wrong"}, "SaslAuthenticationFailed"),
    ({"trust": None}, "CERTIFICATE_VERIFY_FAILED"),  # the system's CAs: the cluster's CA is not among them
])
def test_a_wrong_password_or_an_untrusted_certificate_is_refused_at_once(secured_cluster, tmp_path, mistake, answer):
    """`make up` says what the broker answered, within seconds, instead of
    retrying for two minutes and blaming a broker that does not answer."""
    settings = client_settings(tmp_path, secured_cluster, **mistake)
    started = time.monotonic()
    with pytest.raises(PlatformError, match=f"refused the connection: .*{answer}"):
        broker.ensure_topic(settings, timeout=120)
    assert time.monotonic() - started < 60
