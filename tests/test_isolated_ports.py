"""Ports of isolated stacks (tests' and the benchmark's): below the kernel's
ephemeral range, free, and distinct (lakehouse.platform.isolated.free_port)."""

from __future__ import annotations

import socket

from lakehouse.platform.isolated import LOWEST_PORT, default_ports, ephemeral_ports, free_port, isolated_settings


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable():
    low, _ = ephemeral_ports()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_PORT <= p < low for p in ports)
    assert not set(ports) & default_ports()
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_a_port_someone_listens_on_is_never_chosen(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        picks = iter([port, port, free])
        monkeypatch.setattr("lakehouse.platform.isolated.ephemeral_ports", lambda: (65536, 65536))
        monkeypatch.setattr("lakehouse.platform.isolated.LOWEST_PORT", 1024)
        monkeypatch.setattr("random.SystemRandom.randrange", lambda self, a, b: next(picks))
        assert free_port() == free


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path):
    f = tmp_path / "ip_local_port_range"
    f.write_text("40000\t50000\n")
    assert ephemeral_ports(f) == (40000, 50000)
    assert ephemeral_ports(tmp_path / "missing") == (32768, 60999)


def test_an_isolated_stacks_ports_are_all_different(tmp_path):
    s = isolated_settings(tmp_path / "run")
    ports = [s.pg_port, int(s.kafka_bootstrap_servers.rsplit(":", 1)[1]), s.broker_controller_port, s.airflow_port,
             s.airflow_scheduler_health_port, s.airflow_worker_log_port, s.airflow_trigger_log_port,
             s.spark_connect_port, s.dashboard_port]
    assert len(set(ports)) == len(ports)


def test_make_ups_default_ports_are_reserved():
    assert {55432, 19092, 19093, 15002, 8080, 8050} <= default_ports()
