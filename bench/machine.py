"""What the figures were measured on: the machine and the versions in use."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys

import psutil

PACKAGES = ("pyspark", "deltalake", "apache-airflow", "kafka-python", "psycopg2-binary", "pyarrow")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    return {
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "cpu_model": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
    }


def broker_version() -> str:
    """The embedded broker's version: Apache Kafka, from its jar in .jvm/kafka."""
    try:
        from lakehouse.settings import get_settings

        for jar in get_settings().jvm_jars("kafka"):
            m = re.fullmatch(r"kafka_[\d.]+-(.+)\.jar", jar.name)
            if m:
                return f"Apache Kafka {m.group(1)}"
        return "unknown (no kafka_<scala>-<version>.jar in .jvm/kafka)"
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        return f"unknown ({exc.__class__.__name__})"


def java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        return (out.stderr or out.stdout).splitlines()[0].strip()
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({exc.__class__.__name__})"


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["broker"] = broker_version()
    out["java"] = java_version()
    return out
