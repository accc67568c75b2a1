"""A deleted and recreated topic: the raw-landing query stops with Spark's
data-loss message (failOnDataLoss=true), having landed every record of the
old topic once, instead of silently re-reading or skipping offsets."""

from __future__ import annotations

import pytest

from lakehouse.spark import spark_session
from spark_jobs import raw_landing
from tests.kafka_helpers import recreate_topic
from tests.streams_helpers import delta_rows, stream_settings, wait_for
from tests.test_streams_bad_input import kafka_python

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_recreated_topic_stops_the_query_with_sparks_data_loss_message(core_stack, tmp_path):
    settings = stream_settings(core_stack, tmp_path, stream_fail_on_data_loss=True)
    spark = spark_session(settings, "test-streams-data-loss")
    query = raw_landing.start(spark, settings)
    try:
        p = kafka_python(settings)
        for i in range(30):
            p.send(settings.kafka_topic, value=b"not json %d" % i, partition=i % settings.kafka_partitions)
        p.flush(30)
        wait_for(lambda: len(delta_rows(settings, "quarantine")) >= 30, 180, "the first records")
        recreate_topic(settings, settings.kafka_topic, settings.kafka_partitions)
        for i in range(3):
            p.send(settings.kafka_topic, value=b"after %d" % i, partition=i % settings.kafka_partitions)
        p.flush(30)
        p.close()
        wait_for(lambda: not query.isActive, 180, "the query to stop")
        message = str(query.exception())
        assert "failOnDataLoss" in message, message
        assert len(delta_rows(settings, "quarantine")) == 30
    finally:
        query.stop()
        spark.stop()
