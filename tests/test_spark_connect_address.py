"""Where Spark Connect listens and where the DAG's tasks reach it: one setting,
SPARK_CONNECT_HOST, for both sides. 127.0.0.1 by default (`make up`: loopback
only); docker-compose.yml sets the service name, which the server binds (the
address that name has inside the compose network) and the clients connect to.
The driver's own ports stay on loopback either way."""

from __future__ import annotations

import json
import psutil
import pytest

from lakehouse.platform import airflow, spark_connect
from lakehouse.platform.isolated import isolated_settings
from lakehouse.settings import Settings

GRPC = "spark.connect.grpc.binding.address"


def spark_default(settings) -> dict:
    return json.loads(airflow.environment(settings)["AIRFLOW_CONN_SPARK_DEFAULT"])


def test_by_default_spark_connect_is_on_loopback_for_server_and_clients(tmp_path):
    assert Settings.model_fields["spark_connect_host"].default == "127.0.0.1"
    s = isolated_settings(tmp_path / "run")
    assert spark_connect.server_conf(s)[GRPC] == "127.0.0.1"
    assert spark_connect.plugin_conf(s)[GRPC] == "127.0.0.1"
    assert spark_connect.url(s) == f"sc://127.0.0.1:{s.spark_connect_port}"
    conn = spark_default(s)
    assert (conn["conn_type"], conn["host"], conn["port"]) == ("spark_connect", "127.0.0.1", s.spark_connect_port)


def test_server_plugin_and_spark_default_follow_spark_connect_host(tmp_path):
    s = isolated_settings(tmp_path / "run", spark_connect_host="spark-connect")
    argv, env = spark_connect.server_command(s)
    conf = spark_connect.server_conf(s)
    # where gRPC listens, in both ways of serving it, and where the tasks connect
    assert conf[GRPC] == spark_connect.plugin_conf(s)[GRPC] == "spark-connect"
    assert f"--conf={GRPC}=spark-connect" in [f"--conf={a}" for a in argv]
    assert spark_connect.url(s) == f"sc://spark-connect:{s.spark_connect_port}"
    assert spark_default(s)["host"] == "spark-connect"
    # the driver's own ports (RPC, block manager) never leave loopback
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == env["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_spark_connect_host_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_CONNECT_HOST", "spark-connect")
    assert Settings(_env_file=None).spark_connect_host == "spark-connect"


def test_spark_default_can_name_another_spark_without_a_code_change(tmp_path, monkeypatch):
    """AIRFLOW_CONN_SPARK_DEFAULT (Airflow's own variable, from .env or the
    environment) replaces the stack's Spark Connect for the DAG's tasks; the
    Airflow processes get it as given."""
    other = '{"conn_type": "spark_connect", "host": "spark.example", "port": 15002}'
    assert spark_default(isolated_settings(tmp_path / "a", airflow_conn_spark_default=other)) == json.loads(other)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", "sc://spark.example:15002")
    assert Settings(_env_file=None).airflow_conn_spark_default == "sc://spark.example:15002"
    # an isolated stack (tests, benchmark, chaos) keeps its own Spark Connect
    assert spark_default(isolated_settings(tmp_path / "b"))["host"] == "127.0.0.1"


@pytest.mark.integration
@pytest.mark.slow
def test_the_server_binds_the_address_a_host_name_resolves_to(tmp_path):
    """As in compose, where SPARK_CONNECT_HOST is the container's own service
    name: Spark binds what the name resolves to (here `localhost`, loopback),
    and a client of spark_default's URL runs a query."""
    from tests.batch_helpers import connect_session, spark_connect_server

    s = isolated_settings(tmp_path / "run", spark_connect_host="localhost")
    s.run_dir.mkdir(parents=True)
    with spark_connect_server(s, timeout=180), connect_session(spark_connect.url(s)) as spark:
        assert spark.range(4).count() == 4
        bound = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == s.spark_connect_port}
    assert bound and {ip.removeprefix("::ffff:") for ip in bound} == {"127.0.0.1"}, bound


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "local[2,3]", "local-cluster[2,1,1024]"])
def test_with_a_local_master_the_drivers_ports_stay_on_loopback(tmp_path, master):
    from lakehouse.spark import driver_address_conf

    s = isolated_settings(tmp_path / "run", spark_master=master)
    _, env = spark_connect.server_command(s)
    conf = spark_connect.server_conf(s)
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert driver_address_conf(s) == {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    # executors on this machine (local-cluster) run with every Spark JVM's options
    assert conf["spark.executor.extraJavaOptions"] == conf["spark.driver.extraJavaOptions"]
    assert s.spark_java_options in conf["spark.executor.extraJavaOptions"]


@pytest.mark.parametrize("master", ["spark://spark-master:7077", "yarn", "k8s://https://k8s.example:6443"])
def test_with_a_cluster_master_executors_can_reach_the_driver(tmp_path, master):
    """Executors on other machines connect to the driver: it must not bind
    loopback (Spark's default, the machine's address, stays)."""
    from lakehouse.spark import driver_address_conf

    s = isolated_settings(tmp_path / "run", spark_master=master)
    _, env = spark_connect.server_command(s)
    conf = spark_connect.server_conf(s)
    assert conf["spark.master"] == master
    assert "spark.driver.host" not in conf and "spark.driver.bindAddress" not in conf
    assert "SPARK_LOCAL_IP" not in env
    assert driver_address_conf(s) == {}
    # the cluster's executors: UTC, not this machine's archive and 2-core JVM economy
    assert conf["spark.executor.extraJavaOptions"] == "-Duser.timezone=UTC"
