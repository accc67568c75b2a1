# The application image of docker-compose.yml: Python 3.11, Java 17 for
# Spark, the pinned dependencies (requirements.lock) and this repository,
# installed editable at /app so dags/, sql/ and grafana/ sit where the code
# expects them (lakehouse.settings.REPO_ROOT). The one-shot init and every
# program of `make up`'s stack but the servers (producer, streams, Spark Connect
# server, Airflow's four, dashboard) run this image: what `make setup` gives the
# embedded stack (scripts/bootstrap.sh), built the same way.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LAKEHOUSE_RUN_DIR=/var/lib/lakehouse \
    PYSPARK_PYTHON=/usr/local/bin/python

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps postgresql-client maven \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# JVM artifacts from the one pinned list (jvm/pom.xml), as `make setup` does,
# checksums enforced (-C): the spark profile, Spark's Kafka connector and
# delta-spark, which the streams and the Spark Connect server load from
# .jvm/spark (LAKEHOUSE_JVM_DIR); the kafka profile is not needed, the broker
# is its own image here.
COPY jvm/pom.xml jvm/pom.xml
RUN mvn -B -C -q -f jvm/pom.xml -P spark dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory=/app/.jvm/spark \
    && rm -rf /root/.m2
# Dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY . .
RUN pip install --no-deps -e . \
    && python scripts/compile_pyspark_zip.py \
    && useradd --create-home --uid 50000 lakehouse \
    && mkdir -p /var/lib/lakehouse \
    && chown lakehouse /var/lib/lakehouse
# Spark's class-data archive (.jvm/spark-classes.jsa), as `make setup` makes
# it: every Spark JVM starts with a third less CPU (lakehouse/spark_classes.py).
# Made with a throw-away run directory, so nothing root-owned lands in the
# volume's directory; without it Spark's JVMs start as before.
RUN LAKEHOUSE_RUN_DIR=/tmp/spark-classes-run python -m lakehouse.spark_classes \
    || echo "warning: no class-data archive; Spark's JVMs start without it"; \
    rm -rf /tmp/spark-classes-run /tmp/lakehouse-spark-classes-*

# Spark, Airflow and PostgreSQL clients refuse or misbehave as root; the named
# volume mounted at /var/lib/lakehouse inherits this directory's owner.
USER lakehouse
CMD ["python", "-m", "lakehouse.platform.cli", "--help"]
