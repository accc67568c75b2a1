"""Measure the producer's send rate and the Spark Kafka source's read rate
against a private embedded Tansu broker (started and stopped here).

    .venv/bin/python scripts/measure_kafka_io.py --records 200000 --repeats 3

Producer: generated messages (pre-built, so only sending is timed), as fast
as the broker takes them, per compression. Source: Spark local[2] reads the
topic with Trigger.AvailableNow into the `noop` sink in batches of
--batch records; rows/s of every batch after the first (warm-up) is reported,
per minPartitions setting. Figures are medians; the machine's load average is
printed with them, since every figure here is shared-CPU noisy.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaAdminClient  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402

from lakehouse.settings import Settings  # noqa: E402
from producer.generator import EventGenerator, GeneratorConfig  # noqa: E402
from producer.sender import produce  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(settings: Settings) -> subprocess.Popen:
    from lakehouse.platform import broker

    proc = subprocess.Popen(broker.server_command(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list).close()
            return proc
        except Exception:  # noqa: BLE001 -- not up yet
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("broker did not start")


def new_topic(settings: Settings, name: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    admin.create_topics([NewTopic(name, 3, 1)])
    admin.close()
    return name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-partitions", default="none,4,6")
    ap.add_argument("--skip-producer", action="store_true")
    ap.add_argument("--skip-source", action="store_true")
    args = ap.parse_args()

    settings = Settings(_env_file=None, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    broker = start_broker(settings)
    try:
        msgs = EventGenerator(GeneratorConfig(oversize_share=0)).messages(args.records)
        print(f"load average {os.getloadavg()[0]:.1f}; {args.records} messages, "
              f"{sum(len(m.value) for m in msgs) / len(msgs):.0f} bytes each on average", flush=True)
        if not args.skip_producer:
            for comp in ("lz4", None):
                rates = []
                for i in range(args.repeats):
                    topic = new_topic(settings, f"produce-{comp}-{i}")
                    rates.append(produce(msgs, settings, topic=topic, compression_type=comp).rate)
                print(f"producer compression={comp}: median {statistics.median(rates):,.0f} msg/s "
                      f"(runs {', '.join(f'{r:,.0f}' for r in rates)}; load {os.getloadavg()[0]:.1f})", flush=True)

        if args.skip_source:
            return
        topic = new_topic(settings, "read")
        produce(msgs, settings, topic=topic)
        os.environ["PYSPARK_PYTHON"] = sys.executable
        from pyspark.sql import SparkSession

        from lakehouse.kafka_source import register

        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.sql.shuffle.partitions", "2").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        register(spark)
        for mp in args.min_partitions.split(","):
            rates, totals = [], []
            for _ in range(args.repeats):
                reader = (spark.readStream.format("lakehouse_kafka")
                          .option("bootstrap.servers", settings.kafka_bootstrap_servers).option("subscribe", topic)
                          .option("maxOffsetsPerTrigger", str(args.batch)))
                if mp != "none":
                    reader = reader.option("minPartitions", mp)
                t0 = time.monotonic()
                q = (reader.load().writeStream.format("noop").trigger(availableNow=True)
                     .option("checkpointLocation", tempfile.mkdtemp(prefix="measure-ck-")).start())
                q.awaitTermination()
                totals.append(args.records / (time.monotonic() - t0))
                for p in q.recentProgress[1:]:
                    if p["numInputRows"]:
                        rates.append(p["numInputRows"] / (p["durationMs"]["triggerExecution"] / 1000))
            print(f"source minPartitions={mp}: median {statistics.median(rates):,.0f} rows/s per batch after "
                  f"the first; whole query incl. warm-up median {statistics.median(totals):,.0f} rows/s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        spark.stop()
    finally:
        broker.terminate()
        broker.wait(10)


if __name__ == "__main__":
    main()
