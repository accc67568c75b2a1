"""Which program serves Spark Connect to the DAG (SPARK_CONNECT_IN_STREAMS):
asked to, the streams application, through Spark's SparkConnectPlugin (one
Spark JVM for the stack); by default, or without streams, the server of its
own. Pure units on the settings and the program list; the streams serving a
REST-triggered DAG run end to end is tests/test_batch_stack.py, the server of
its own tests/test_platform_airflow.py."""

from __future__ import annotations

from lakehouse.platform import spark_connect
from lakehouse.platform.isolated import isolated_settings
from lakehouse.platform.services import services


def by_name(settings):
    return {s.name: s for s in services(settings)}


def test_by_default_a_server_of_its_own_serves_spark_connect(tmp_path):
    from lakehouse.settings import Settings

    assert Settings.model_fields["spark_connect_in_streams"].default is False


def test_asked_to_the_streams_serve_spark_connect_and_no_server_of_its_own_runs(tmp_path):
    s = isolated_settings(tmp_path / "run", streams_enabled=True, spark_connect_in_streams=True)
    progs = by_name(s)
    assert spark_connect.in_streams(s) and spark_connect.program(s) == "streams"
    assert "spark-connect" not in progs
    streams = progs["streams"]
    assert (streams.port, streams.port_setting) == (s.spark_connect_port, "SPARK_CONNECT_PORT")
    # stops after the scheduler whose tasks use it (wave 0), before the broker and PostgreSQL it uses (2)
    assert progs["airflow-scheduler"].stop_wave < streams.stop_wave < progs["broker"].stop_wave


def test_the_server_of_its_own_runs_when_asked_or_without_streams(tmp_path):
    for overrides in ({"spark_connect_in_streams": False, "streams_enabled": True}, {"streams_enabled": False}):
        s = isolated_settings(tmp_path / "run", **overrides)
        progs = by_name(s)
        assert spark_connect.program(s) == "spark-connect", overrides
        assert progs["spark-connect"].port == s.spark_connect_port
        if "streams" in progs:
            assert progs["streams"].port is None and progs["streams"].stop_wave == 0


def test_no_spark_connect_in_the_stack_when_spark_default_is_another_sparks(tmp_path):
    """AIRFLOW_CONN_SPARK_DEFAULT names a cluster's endpoint: the stack starts
    no Spark Connect (no 2g JVM nobody uses), whatever SPARK_CONNECT_IN_STREAMS says."""
    other = '{"conn_type": "spark_connect", "host": "spark.example", "port": 15002}'
    for in_streams in (False, True):
        s = isolated_settings(tmp_path / "run", streams_enabled=True, spark_connect_in_streams=in_streams,
                              airflow_conn_spark_default=other)
        progs = by_name(s)
        assert spark_connect.external(s) and spark_connect.program(s) is None
        assert not spark_connect.in_streams(s)
        assert "spark-connect" not in progs
        assert progs["streams"].port is None and progs["streams"].stop_wave == 0


def test_the_plugin_listens_where_the_server_would_with_the_servers_heap(tmp_path):
    s = isolated_settings(tmp_path / "run", spark_connect_memory="1536m")
    plugin = spark_connect.plugin_conf(s)
    server = spark_connect.server_conf(s)
    assert plugin["spark.plugins"] == "org.apache.spark.sql.connect.SparkConnectPlugin"
    for key in ("spark.connect.grpc.binding.address", "spark.connect.grpc.binding.port", "spark.driver.memory"):
        assert plugin[key] == server[key], key
    assert plugin["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert plugin["spark.driver.memory"] == "1536m"
