"""The launcher's stack.env (lakehouse.platform.stack): every setting as a
started stack reads it, and which of them a later `make up` would change."""

from __future__ import annotations

from lakehouse.platform.isolated import isolated_settings
from lakehouse.platform.stack import changed_settings, load_stack_settings, write_stack_env


def test_a_running_stack_started_with_the_same_settings_reports_no_change(tmp_path):
    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p #1";'
    s = isolated_settings(tmp_path / "run", kafka_options={"security.protocol": "SASL_SSL", "sasl.jaas.config": jaas},
                          airflow_conn_spark_default='{"conn_type": "spark_connect", "host": "h", "port": 1}')
    (tmp_path / "run").mkdir()
    assert changed_settings(s) == []  # no stack started yet
    write_stack_env(s)
    assert changed_settings(s) == []
    assert load_stack_settings(s.run_dir).kafka_options == s.kafka_options


def test_make_up_on_a_running_stack_names_the_settings_it_did_not_apply(tmp_path):
    s = isolated_settings(tmp_path / "run")
    (tmp_path / "run").mkdir()
    write_stack_env(s)
    later = s.model_copy(update={"spark_connect_memory": "3g", "producer_rate": s.producer_rate + 1,
                                 "airflow_conn_spark_default": "sc://elsewhere:15002"})
    assert changed_settings(later) == ["AIRFLOW_CONN_SPARK_DEFAULT", "PRODUCER_RATE", "SPARK_CONNECT_MEMORY"]
