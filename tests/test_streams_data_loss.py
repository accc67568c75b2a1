"""A deleted and recreated topic: raw landing stops with Spark's data-loss
message (failOnDataLoss=true), having landed every record of the old topic
once, instead of silently re-reading or skipping offsets. The application
then exits with DATA_LOSS_EXIT_CODE and says what to do, and the process
manager does not restart it into the same failure. So for the other
failures a restart cannot fix: a checkpoint of another topic, and starting
offsets Spark refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.platform import services
from lakehouse.stream import DATA_LOSS_EXIT_CODE
from tests.conftest import make_settings
from tests.kafka_helpers import recreate_topic
from tests.streams_helpers import delta_rows, kill_job, start_job, stream_settings, wait_for
from tests.test_streams_bad_input import kafka_python


def land_records_that_are_not_json(settings, job, log_path, n: int = 30) -> None:
    """Send `n` records that are not JSON; wait until the running job has
    quarantined them."""
    p = kafka_python(settings)
    for i in range(n):
        p.send(settings.kafka_topic, value=b"not json %d" % i, partition=i % settings.kafka_partitions)
    p.flush(30)
    p.close()
    wait_for(lambda: len(delta_rows(settings, "quarantine")) >= n or job.poll() is not None, 240,
             "the first records")
    assert job.poll() is None, log_path.read_text()[-3000:]


def streams_stopped_for_good(settings, log_path) -> str:
    """Run the streams application; it must exit with DATA_LOSS_EXIT_CODE (a
    stop the process manager does not restart). Its log."""
    job = start_job("spark_jobs.streams", settings, log_path)
    try:
        code = job.wait(240)
    finally:
        if job.poll() is None:
            kill_job(job)
    log = log_path.read_text()
    assert code == DATA_LOSS_EXIT_CODE, log[-3000:]
    return log


@pytest.mark.integration
@pytest.mark.slow
def test_a_recreated_topic_stops_raw_landing_with_sparks_data_loss_message(core_stack, tmp_path):
    settings = stream_settings(core_stack, tmp_path, stream_fail_on_data_loss=True)
    log_path = tmp_path / "raw_landing.log"
    job = start_job("spark_jobs.raw_landing", settings, log_path)
    try:
        land_records_that_are_not_json(settings, job, log_path)
        recreate_topic(settings, settings.kafka_topic, settings.kafka_partitions)
        p = kafka_python(settings)
        for i in range(3):
            p.send(settings.kafka_topic, value=b"after %d" % i, partition=i % settings.kafka_partitions)
        p.flush(30)
        p.close()
        code = job.wait(240)
        log = log_path.read_text()
        assert code == DATA_LOSS_EXIT_CODE, log[-3000:]
        assert "failOnDataLoss" in log, log[-3000:]  # Spark's own message
        assert "raw-landing stopped: Kafka no longer holds records" in log and "STREAM_FAIL_ON_DATA_LOSS" in log
        assert len(delta_rows(settings, "quarantine")) == 30
    finally:
        if job.poll() is None:
            kill_job(job)


@pytest.mark.integration
@pytest.mark.slow
def test_a_changed_topic_stops_the_streams_before_their_checkpoints_take_it(core_stack, tmp_path):
    """KAFKA_TOPIC changed under existing checkpoints: the streams application
    exits with DATA_LOSS_EXIT_CODE before its queries start, naming both
    topics, and neither checkpoint logs a batch of the new topic. (Started,
    Spark logged the new topic's offsets as the next batch and failed on data
    loss, at every start, even once KAFKA_TOPIC was set back.)"""
    from lakehouse.stream.app import checkpoint_topics
    from spark_jobs import fast_aggregation, raw_landing

    settings = stream_settings(core_stack, tmp_path)
    checkpoints = [raw_landing.checkpoint(settings), fast_aggregation.checkpoint(settings)]
    log_path = tmp_path / "streams.log"
    job = start_job("spark_jobs.streams", settings, log_path)
    try:
        land_records_that_are_not_json(settings, job, log_path)
        wait_for(lambda: all(checkpoint_topics(c) == {settings.kafka_topic} for c in checkpoints), 60,
                 "both checkpoints to log the topic")
    finally:
        if job.poll() is None:
            kill_job(job)
    logged = {c: sorted(p.name for p in (Path(c) / "offsets").iterdir()) for c in checkpoints}

    moved = stream_settings(core_stack, tmp_path)  # same run directory, another topic
    assert moved.kafka_topic != settings.kafka_topic and moved.checkpoint_dir == settings.checkpoint_dir
    log = streams_stopped_for_good(moved, log_path)
    assert (f"raw-landing not started: its checkpoint {checkpoints[0]} holds offsets of topic "
            f"{settings.kafka_topic}, and KAFKA_TOPIC is {moved.kafka_topic}") in log, log[-3000:]
    assert {c: sorted(p.name for p in (Path(c) / "offsets").iterdir()) for c in checkpoints} == logged
    assert all(checkpoint_topics(c) == {settings.kafka_topic} for c in checkpoints)
    assert len(delta_rows(settings, "quarantine")) == 30


@pytest.mark.integration
@pytest.mark.slow
def test_starting_offsets_without_every_partition_stop_the_streams_instead_of_a_restart_loop(core_stack, tmp_path):
    """STREAM_STARTING_OFFSETS naming one partition of three: Spark refuses it
    at every start (its Kafka source asserts every partition is named), and
    the process manager restarted the streams forever. The application now
    exits with DATA_LOSS_EXIT_CODE, saying what to set."""
    topic_settings = stream_settings(core_stack, tmp_path)
    settings = topic_settings.model_copy(
        update={"stream_starting_offsets": f'{{"{topic_settings.kafka_topic}": {{"0": 0}}}}'})
    log = streams_stopped_for_good(settings, tmp_path / "streams.log")
    assert "you must specify all TopicPartitions" in log  # Spark's own message
    assert "stopped: STREAM_STARTING_OFFSETS names some of the topic's partitions" in log, log[-3000:]


def test_the_process_manager_does_not_restart_the_streams_after_data_loss(tmp_path):
    """supervisord restarts every other exit of the streams program (a crash
    resumes from the checkpoints), and every exit of the other programs."""
    settings = make_settings(tmp_path / "run")
    svcs = services.services(settings)
    programs = services.render_supervisor_conf(settings, svcs).split("[program:")[1:]
    conf = {p.split("]", 1)[0]: p.splitlines() for p in programs}
    assert "autorestart=unexpected" in conf["streams"] and f"exitcodes={DATA_LOSS_EXIT_CODE}" in conf["streams"]
    assert not any(line.startswith("exitcodes=") and "0" in line.split("=")[1].split(",")
                   for line in conf["streams"])
    for name, lines in conf.items():
        if name != "streams":
            assert "autorestart=true" in lines, name
