"""The producer against the real broker: everything generated arrives, keyed
by user, pacing holds, and the CLI stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest
from kafka.partitioner.default import murmur2

from lakehouse.settings import REPO_ROOT
from producer.generator import EventGenerator, GeneratorConfig, Message
from producer.sender import ProducerError, produce
from tests.kafka_helpers import fresh_topic, read_topic

pytestmark = pytest.mark.integration


def test_every_message_arrives_on_its_key_partition(core_stack):
    topic = fresh_topic(core_stack, "prod")
    msgs = EventGenerator(GeneratorConfig(malformed_fraction=0.05, oversize_share=0.0)).messages(3000)
    huge = Message(b"7", b'{"padding":"' + b"x" * 1_000_000 + b'"}', "malformed", None, "oversize")
    stats = produce(msgs + [huge], core_stack, topic=topic)
    assert (stats.sent, stats.failed) == (3001, 0)
    assert stats.by_kind["malformed"] == sum(m.kind == "malformed" for m in msgs) + 1

    records = read_topic(core_stack, topic, expected=3001)
    assert Counter((r.key, r.value) for r in records) == Counter((m.key, m.value) for m in msgs + [huge])
    for r in records:  # the Java client's partitioner: a user's events stay in order on one partition
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3
    assert len({r.partition for r in records}) == 3


def test_rate_is_paced_and_stop_flushes(core_stack):
    topic = fresh_topic(core_stack, "pace")
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    stats = produce(EventGenerator().iter_messages(), core_stack, rate=1000, topic=topic, stop=stop)
    # ~1.5 s at 1000/s, less the client's start: never more than the pace
    # allows (an unpaced producer sends tens of thousands here). How far below
    # the pace a busy machine falls is the benchmark's business, not a test's:
    # the offline check once measured 745/s here (elapsed time includes the flush).
    assert 500 <= stats.sent <= 1700
    assert stats.rate <= 1000 * 1.15
    assert len(read_topic(core_stack, topic, expected=stats.sent)) == stats.sent


def test_cli_runs_until_sigterm_then_flushes_and_exits_0(core_stack):
    topic = fresh_topic(core_stack, "cli")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer", "--rate", "2000", "--log-every", "0.5",
         "--bootstrap-servers", core_stack.kafka_bootstrap_servers, "--topic", topic],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    try:
        for line in proc.stdout:  # wait for the first periodic rate line (log form: not a TTY)
            lines.append(line)
            if line.startswith("producer sent="):
                break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += out.splitlines()
    assert proc.returncode == 0, "".join(lines)
    assert any(re.search(r"rate=\d+/s", line) for line in lines)
    done = next(line for line in lines if line.startswith("producer done"))
    sent = int(re.search(r"sent=(\d+)", done).group(1))
    assert sent > 0 and "failed=0" in done
    assert len(read_topic(core_stack, topic, expected=sent)) == sent


def test_cli_workers_split_the_count_without_repeating_events(core_stack):
    topic = fresh_topic(core_stack, "workers")
    done = subprocess.run(
        [sys.executable, "-m", "producer", "--rate", "0", "--count", "5001", "--workers", "2",
         "--malformed-fraction", "0", "--duplicate-fraction", "0",
         "--bootstrap-servers", core_stack.kafka_bootstrap_servers, "--topic", topic],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sent=5001 failed=0" in done.stdout
    records = read_topic(core_stack, topic, expected=5001)
    ids = [json.loads(r.value)["event_id"] for r in records]
    assert len(ids) == len(set(ids)) == 5001


@pytest.mark.parametrize("args, says", [
    (["--start", "notadate"], "is not an ISO-8601 time"),
    (["--rate", "-5"], "'--rate'"),
    (["--compression", "snap"], "'snappy'"),
    (["--late-fraction", "2"], "'--late-fraction'"),
    (["--duplicate-fraction", "0.6", "--late-fraction", "0.6"], "sum to <= 1"),
])
def test_cli_refuses_a_bad_option_with_its_name_not_a_traceback(args, says):
    from typer.testing import CliRunner

    from producer.cli import app

    result = CliRunner().invoke(app, ["--count", "1", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_cli_names_a_wrong_setting_not_a_traceback():
    from typer.testing import CliRunner

    from producer.cli import app

    result = CliRunner().invoke(app, ["--count", "1"], env={"PRODUCER_SEED": "abc"})
    assert result.exit_code == 2, result.output
    assert "PRODUCER_SEED='abc'" in result.output and "Traceback" not in result.output


def test_cli_names_kafka_options_the_python_client_cannot_take():
    from typer.testing import CliRunner

    from producer.cli import app

    result = CliRunner().invoke(app, ["--count", "1"], env={"KAFKA_OPTIONS": '{"kafka.sasl.foo": "x"}'})
    assert result.exit_code == 2, result.output
    assert "KAFKA_OPTIONS sasl.foo: not supported" in result.output and "Traceback" not in result.output


def test_no_broker_or_no_topic_is_one_error_that_names_it(core_stack):
    """Before: a traceback of kafka-python's timeout, after 30 s (no broker)
    or 60 s (no such topic)."""
    import socket

    messages = EventGenerator().messages(3)
    with pytest.raises(ProducerError, match="topic 'no-such-topic' has no partitions .* does not exist"):
        produce(messages, core_stack, topic="no-such-topic", max_block_ms=2000)
    with socket.socket() as bound:  # a port nothing listens on
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        nowhere = core_stack.model_copy(update={"kafka_bootstrap_servers": address})
        with pytest.raises(ProducerError, match=f"no Kafka broker answered at {address} .*make status"):
            produce(messages, nowhere, bootstrap_timeout_ms=2000)
