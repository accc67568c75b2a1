"""Every setting of the lakehouse, read once from the environment (and `.env`).

This is the only place a setting is defined. `.env.example` documents each one;
`tests/test_settings.py` checks the two stay in step. Secrets have no working
default: `lakehouse up` generates missing ones into `.env` (mode 600).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where the settings of `make up` are kept (secrets generated into it).
ENV_FILE = REPO_ROOT / ".env"

#: Docker Compose reads `.env` too (`make compose-up`): its own variables
#: there (COMPOSE_PROJECT_NAME, DOCKER_HOST, ...) are not settings of ours.
COMPOSE_PREFIXES = ("compose_", "docker_")

#: A TCP port, and a share of events (the producer's).
Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Settings(BaseSettings):
    # A name in .env that is no setting (a typo, a setting since renamed) is an
    # error that names it, not a value silently ignored (pydantic's "forbid");
    # the environment is read for the settings' names only.
    model_config = SettingsConfigDict(
        env_file=str(ENV_FILE), env_file_encoding="utf-8", extra="forbid"
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        def dotenv_less_compose():  # .env may also hold Docker Compose's own variables
            return {k: v for k, v in dotenv_settings().items() if not k.lower().startswith(COMPOSE_PREFIXES)}

        return init_settings, env_settings, dotenv_less_compose, file_secret_settings

    # --- run directory -----------------------------------------------------
    lakehouse_run_dir: Path = Field(
        REPO_ROOT / ".run", description="Where data, logs, pid files and checkpoints live."
    )

    # --- PostgreSQL ---------------------------------------------------------
    pg_host: str = "127.0.0.1"
    pg_port: Port = 55432
    pg_bin_dir: Path | None = Field(None, description="PostgreSQL server binaries; found under /usr/lib/postgresql when unset.")
    pg_os_user: str = Field("postgres", description="Unprivileged OS user that owns the cluster when run as root.")
    pg_superuser: str = "lakehouse_admin"
    pg_superuser_password: SecretStr | None = None
    pg_database: str = "lakehouse"
    pg_writer_user: str = "lakehouse_writer"
    pg_writer_password: SecretStr | None = None
    pg_reader_user: str = "lakehouse_reader"
    pg_reader_password: SecretStr | None = None
    airflow_db_name: str = "airflow"
    airflow_db_user: str = "airflow"
    airflow_db_password: SecretStr | None = None

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_topic: str = "user-events"
    kafka_partitions: int = Field(3, ge=1)
    broker_embedded: bool = Field(
        True, description="Start the embedded Apache Kafka broker (KRaft, one node) under `make up`."
    )
    broker_controller_port: Port = Field(19093, description="The embedded broker's KRaft controller listener (127.0.0.1).")
    broker_heap: str = Field("512m", description="Maximum heap of the embedded broker's JVM (-Xmx).")
    broker_java_options: str = Field(
        "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true",
        description="Further JVM options of the embedded broker (Kafka's own start script's defaults).",
    )
    broker_retention_hours: int = Field(168, ge=1, description="Records older than this are deleted (log.retention.hours).")
    broker_retention_bytes: int = Field(
        4 * 1024**3, ge=-1, description="Per-partition log size above which the oldest segments go (-1: no cap)."
    )
    broker_min_free_mb: int = Field(256, ge=0, description="The broker does not start with less free disk than this.")
    broker_recovery_truncate: bool = Field(
        False, description="After an unclean stop, let Kafka truncate a corrupt log segment (drops the records after "
        "the damage); false: the broker refuses to start and says which segment.",
    )

    # --- Spark and Delta -----------------------------------------------------
    spark_master: str = "local[2]"
    spark_driver_memory: str = Field(
        "512m", description="Heap of the streams application when it does not serve Spark Connect "
        "(SPARK_CONNECT_IN_STREAMS=false; serving it, SPARK_CONNECT_MEMORY), and of local sessions; "
        "the streams' state is in RocksDB, off-heap."
    )
    spark_java_options: str = Field(
        "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=240m -XX:TrimNativeHeapInterval=1000 "
        "-Xms64m -XX:MaxHeapFreeRatio=40 -XX:-ShrinkHeapInSteps",
        description="JVM options of every Spark JVM we start (streams, Spark Connect server, local sessions, and "
        "their executors under a local-cluster master; a cluster's executors get only UTC): on "
        "2 cores C1-only JIT and the serial GC cost less CPU than they lose in peak speed. C1-only shrinks the "
        "JIT's code cache to 48 MB, which the classes Spark generates for every micro-batch fill within minutes "
        "(then the JVM's sweeper spends a fifth of a core evicting code): 240 MB, the JDK's usual size. Every "
        "second the JVM hands the C heap's free memory back (glibc keeps what RocksDB, the codecs and the JVM "
        "freed): the streams' peak while draining ~3% lower at the median, up to 6% per run "
        "(docs/performance.md, session 17). At each full GC (SPARK_PERIODIC_GC_INTERVAL) the heap shrinks at once, "
        "not in steps over several collections, to at most 40% free, down to 64 MB (the JDK's default initial "
        "heap, 1/64 of the machine's memory, is a floor it never shrinks under): between DAG runs the Spark "
        "Connect server holds ~0.8 GB PSS instead of ~1.8 GB (docs/performance.md, session 21).",
    )
    streams_java_options: str = Field(
        "-XX:MinHeapFreeRatio=10",
        description="JVM options of the streams application only, after SPARK_JAVA_OPTIONS: when a full GC "
        "leaves less than 10% of the heap free the JVM grows it to 10% free, not to the JDK's 40%. The streams' "
        "peak while draining 1.18 GB PSS instead of 1.25-1.32, at a drain rate ~5% lower; the same option on "
        "every Spark JVM made a plain Spark copy ~11% slower, so a Spark Connect server of its own does without "
        "it (docs/performance.md, session 32). When the streams serve Spark Connect (SPARK_CONNECT_IN_STREAMS) "
        "the DAG's jobs run with it: the stack's peak during a run ~0.4 GB lower (session 36).",
    )
    spark_periodic_gc_interval: str = Field(
        "1min", description="How often every Spark JVM we start runs a full garbage collection "
        "(spark.cleaner.periodicGC.interval; Spark's default 30min), after which its heap shrinks "
        "(SPARK_JAVA_OPTIONS): the heap a burst of work (a DAG run, a drain) grew is given back within about "
        "this time.",
    )
    spark_connect_host: str = Field(
        "127.0.0.1",
        description="Where Spark Connect listens and where the DAG's Spark tasks reach it (spark_default): "
        "127.0.0.1 under `make up` (loopback only). docker-compose.yml sets its service name, spark-connect, "
        "which inside the compose network is that container's own address: the server binds it (reachable "
        "from the other containers, published nowhere) and the clients connect to it.",
    )
    airflow_conn_spark_default: str | None = Field(
        None,
        description="Airflow's `spark_default` connection (JSON or URI, as Airflow reads AIRFLOW_CONN_*), when the "
        "DAG's Spark tasks should use another Spark than the stack's: e.g. "
        '{"conn_type": "spark_connect", "host": "spark.example", "port": 15002}. Unset: the stack\'s Spark '
        "Connect (SPARK_CONNECT_HOST, SPARK_CONNECT_PORT); set, the stack starts no Spark Connect of its own.",
    )
    spark_connect_port: Port = Field(
        15002, description="The Spark Connect server the DAG's Spark tasks use (spark_default), on SPARK_CONNECT_HOST."
    )
    spark_connect_memory: str = Field(
        "1g", description="Heap of the JVM that serves Spark Connect (driver = local executors of every DAG "
        "Spark task): the streams application's under SPARK_CONNECT_IN_STREAMS, else the server's. 1g holds a "
        "20M-event day in the time 2g took, ~1 GB lower at the run's peak; 768m spent that day in full "
        "collections. Raise it for larger days (figures: docs/performance.md, session 42).",
    )
    spark_connect_in_streams: bool = Field(
        False,
        description="true: the streams application also serves Spark Connect to the DAG (Spark's "
        "SparkConnectPlugin), with SPARK_CONNECT_MEMORY as its heap: one Spark JVM for the stack instead of two, "
        "0.7-0.9 GB less during a DAG run, but realtime's freshness p95 ~11-14 s while a run works instead of "
        "~2-3 s (docs/decisions.md). false (default), or STREAMS_ENABLED=false: a Spark Connect server of its own "
        "(program spark-connect). `make up` only: docker-compose.yml sets it false and runs the server as its "
        "service spark-connect.",
    )
    delta_snapshot_partitions: int = Field(
        2, ge=1, description="Partitions of the Spark job delta-spark runs to rebuild a table's snapshot before each "
        "read and commit (spark.databricks.delta.snapshotPartitions; Delta's default 50 suits a cluster): on 2 local "
        "cores 50 tasks made every gold write and count ~4 s slower.",
    )
    spark_listing_parallelism: int = Field(
        8, ge=1, description="Most tasks of a Spark job that lists files (spark.sql.sources.parallelPartitionDiscovery."
        "parallelism; Spark's default 10,000 suits a cluster): Delta's VACUUM lists a table with that many tasks, "
        "which took ~30 s for a one-file table on 2 local cores, ~2.5 s with 8.",
    )
    lakehouse_data_dir: Path | None = Field(None, description="Delta tables root; <run dir>/lakehouse when unset.")
    lakehouse_jvm_dir: Path = Field(
        REPO_ROOT / ".jvm",
        description="Where setup resolved jvm/pom.xml's artifacts (kafka/: the broker; spark/: Kafka connector, delta-spark).",
    )

    # --- batch layer (lakehouse_bronze_to_gold, lakehouse_maintenance) -------
    batch_max_rejected_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Share of a date's rows that may break a critical rule before the quality gate fails (0 = strict).",
    )
    batch_allowed_lateness_minutes: int = Field(
        60, ge=0, description="A date D is complete once raw landing has read the topic past D+1 00:00 UTC plus this."
    )
    batch_completeness_timeout_minutes: int = Field(
        360, ge=1, description="The completeness sensor fails the run after waiting this long."
    )
    batch_completeness_poke_seconds: int = Field(
        30, ge=1, le=3600,
        description="The completeness sensor looks again this often while it waits (holding no worker slot between).",
    )
    batch_task_timeout_minutes: int = Field(
        60, ge=1,
        description="A task of lakehouse_bronze_to_gold or lakehouse_maintenance that runs longer than this is "
        "stopped, its Spark job with it, and retried (a hung server or cluster cannot hold the DAG's one active run "
        "for ever; a 20M-event day's longest task takes ~5 minutes on two cores).",
    )
    batch_catch_up_minutes: int = Field(
        15, ge=1, le=1440,
        description="Every this many minutes lakehouse_catch_up runs the dates that are missing or stale in gold.",
    )
    delta_vacuum_retention_hours: int = Field(
        168, ge=168, description="Vacuum keeps files younger than this (>= 7 days, time travel and slow readers); "
        "set on bronze and silver as Delta's table properties (catalog.retention_properties)."
    )
    delta_compact_after_days: int = Field(
        2, ge=1, description="A date partition this many days old is closed (no more late data) and compacted."
    )
    ops_progress_retention_days: int = Field(
        7, ge=1,
        description="ops.stream_progress keeps this many days of micro-batches (~200,000 rows a day while "
        "producing; each stream's latest row is always kept); lakehouse_maintenance deletes older ones.",
    )
    realtime_retention_days: int = Field(
        30, ge=1,
        description="The realtime tables keep this many days of one-minute windows (~10,000 rows a day while "
        "producing); lakehouse_maintenance deletes older windows. Gold keeps every day.",
    )
    airflow_log_retention_days: int = Field(
        30, ge=1,
        description="Airflow's log files (task runs, DAG parsing: ~3 MB a day) older than this many days are "
        "deleted by lakehouse_maintenance, as Airflow's own log groomer does.",
    )

    # --- Airflow ------------------------------------------------------------
    airflow_host: str = "127.0.0.1"
    airflow_port: Port = 8080
    airflow_scheduler_health_port: Port = Field(8974, description="Scheduler's /health server.")
    airflow_worker_log_port: Port = Field(8793, description="LocalExecutor workers' log server.")
    airflow_trigger_log_port: Port = Field(8794, description="Triggerer's log server.")
    airflow_parallelism: int = Field(
        2, ge=1, description="Task instances the LocalExecutor runs at once (2 suits 2 cores)."
    )
    airflow_scheduler_idle_sleep_seconds: float = Field(
        0.25, gt=0, le=10,
        description="How long Airflow's scheduler sleeps after a loop that found nothing to do "
        "([scheduler] scheduler_idle_sleep_time, Airflow's default 1). Every hand-off of a DAG run (its "
        "start, each next task, its end) waits for the next loop: 0.25 made the REST-triggered 1M-event "
        "run ~3 s faster, for ~5% more of one core while idle (docs/performance.md, session 18).",
    )
    airflow_admin_user: str = "admin"
    airflow_admin_password: SecretStr | None = None
    airflow_secret_key: SecretStr | None = None
    airflow_fernet_key: SecretStr | None = None

    # --- producer and streams -----------------------------------------------
    producer_enabled: bool = Field(True, description="Run the producer under `make up`.")
    producer_rate: float = Field(200.0, ge=0.0, description="Events per second the producer sends under `make up`.")
    producer_seed: int = 42
    producer_duplicate_fraction: Fraction = 0.01
    producer_late_fraction: Fraction = 0.01
    producer_malformed_fraction: Fraction = 0.002
    streams_enabled: bool = Field(True, description="Run the streams program (raw landing, fast aggregation) under `make up`.")
    stream_trigger_seconds: float = Field(2.0, gt=0.0, description="Micro-batch trigger interval of raw landing.")
    stream_min_records_per_batch: int = Field(
        50_000, ge=0,
        description="Raw landing starts a batch only once this many records wait (Spark's minOffsetsPerTrigger; "
        "0: off) or STREAM_MAX_BATCH_DELAY_SECONDS have passed: each batch's two Delta commits cost about a "
        "second of CPU whatever its size, and every commit adds four entries to the table's _delta_log, which "
        "delta-spark lists whole at each commit. So a slow topic lands in few, large batches (one a minute at "
        "up to ~800 events/s), leaving the cores to fast aggregation, while a backlog still lands in "
        "back-to-back batches.",
    )
    stream_max_batch_delay_seconds: float = Field(
        60.0, gt=0.0,
        description="Longest raw landing holds waiting records back for STREAM_MIN_RECORDS_PER_BATCH "
        "(Spark's maxTriggerDelay).",
    )
    stream_max_records_per_batch: int = Field(100_000, ge=1, description="Cap on Kafka records per micro-batch.")
    stream_starting_offsets: str = Field(
        "earliest",
        description="Where a new checkpoint starts (Spark's startingOffsets): earliest, latest, or JSON naming "
        'KAFKA_TOPIC and every partition, e.g. {"user-events": {"0": 1200, "1": -2, "2": -1}} (-2 earliest, '
        "-1 latest).",
    )
    stream_fail_on_data_loss: bool = True
    realtime_watermark_minutes: float = Field(2.0, ge=0.0)
    realtime_trigger_seconds: float = Field(
        0.5, gt=0.0,
        description="Micro-batch trigger interval of fast aggregation (realtime freshness); raw landing keeps "
        "STREAM_TRIGGER_SECONDS (fewer, larger Delta commits).",
    )
    realtime_future_skew_minutes: float = Field(
        5.0, ge=0.0,
        description="Events further ahead of their Kafka timestamp than this are kept in bronze but left out of "
        "realtime (they would move its watermark); counted in ops.stream_progress.future_events.",
    )
    kafka_options: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Kafka client settings for both streams (JSON object; keys with or without the "
        "'kafka.' prefix), passed to Spark's Kafka source as kafka.<key>: security.protocol, sasl.*, ssl.*, ...",
    )

    @field_validator("kafka_options", mode="before")
    @classmethod
    def _kafka_options_json(cls, value):
        """KAFKA_OPTIONS as JSON text (environment, stack.env, keyword) or a mapping."""
        if isinstance(value, str):
            import json

            value = json.loads(value) if value.strip() else {}
        return value

    @model_validator(mode="after")
    def _starting_offsets_name_the_topic(self):
        """STREAM_STARTING_OFFSETS as Spark reads it (earliest, latest, or JSON
        {topic: {partition: offset}}) and naming KAFKA_TOPIC only: refused here,
        when `make up` reads the settings, not by every start of the streams."""
        import json

        value = self.stream_starting_offsets.strip()
        if value.lower() in ("earliest", "latest"):
            return self
        example = f'{{"{self.kafka_topic}": {{"0": 1200, "1": -2}}}}'
        try:
            offsets = json.loads(value)
        except ValueError:
            offsets = None
        if not (isinstance(offsets, dict) and offsets and all(
                isinstance(parts, dict) and parts and all(
                    str(p).isdigit() and type(o) is int and o >= -2 for p, o in parts.items())
                for parts in offsets.values())):
            raise ValueError(f"STREAM_STARTING_OFFSETS must be earliest, latest, or JSON like {example} "
                             f"(-2 earliest, -1 latest); got {value!r}")
        if set(offsets) != {self.kafka_topic}:
            raise ValueError(f"STREAM_STARTING_OFFSETS names topic {', '.join(sorted(offsets))}, and the streams "
                             f"read KAFKA_TOPIC={self.kafka_topic}")
        return self

    # --- Grafana ------------------------------------------------------------
    grafana_bin: str = Field("grafana", description="Grafana server binary (name on PATH or a path).")
    grafana_port: Port = 3000
    grafana_home: Path | None = Field(None, description="Grafana's homepath (conf/defaults.ini, public/); found from the binary when unset.")
    grafana_admin_user: str = "admin"
    grafana_admin_password: SecretStr | None = None

    # --- overview dashboard (embedded; no Grafana binary needed) ---------------
    dashboard_enabled: bool = Field(
        True, description="Serve the overview dashboard (the Grafana JSON's panels) under `make up`."
    )
    dashboard_host: str = Field(
        "127.0.0.1", description="Address the dashboard listens on: loopback; 0.0.0.0 only inside a container."
    )
    dashboard_port: Port = Field(8050, description="Port of the overview dashboard.")
    dashboard_json: Path = Field(
        REPO_ROOT / "grafana" / "dashboards" / "lakehouse_overview.json",
        description="The Grafana dashboard JSON the embedded dashboard renders (the one definition).",
    )
    dashboard_admin_user: str = "admin"
    dashboard_admin_password: SecretStr | None = None
    dashboard_secret_key: SecretStr | None = None

    # --- derived paths -------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.lakehouse_run_dir.resolve()

    @property
    def data_dir(self) -> Path:
        return (self.lakehouse_data_dir or self.run_dir / "lakehouse").resolve()

    def jvm_jars(self, profile: str) -> list[Path]:
        """The jars of one profile of jvm/pom.xml (kafka or spark), as setup resolved them."""
        folder = self.lakehouse_jvm_dir.resolve() / profile
        jars = sorted(folder.glob("*.jar"))
        if not jars:
            raise RuntimeError(f"no JVM artifacts in {folder}; run `make setup` (resolves jvm/pom.xml)")
        return jars

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.run_dir / "airflow"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def table_path(self, layer: str, name: str) -> str:
        """Location of a Delta table, e.g. table_path("bronze", "events")."""
        return str(self.data_dir / layer / name)

    # --- connection strings --------------------------------------------------
    def pg_dsn(self, role: str = "writer", database: str | None = None) -> str:
        """libpq DSN for one of the roles: superuser, writer, reader or airflow
        (values quoted as libpq wants: a password may hold spaces and quotes)."""
        from psycopg2.extensions import make_dsn

        user, password = self._role(role)
        db = database or (self.airflow_db_name if role == "airflow" else self.pg_database)
        return make_dsn(host=self.pg_host, port=self.pg_port, dbname=db, user=user, password=password or None)

    def sqlalchemy_url(self, role: str = "writer", database: str | None = None) -> str:
        from sqlalchemy.engine import URL

        user, password = self._role(role)
        db = database or (self.airflow_db_name if role == "airflow" else self.pg_database)
        return URL.create(
            "postgresql+psycopg2", user, password, self.pg_host, self.pg_port, db
        ).render_as_string(hide_password=False)

    def _role(self, role: str) -> tuple[str, str | None]:
        pairs = {
            "superuser": (self.pg_superuser, self.pg_superuser_password),
            "writer": (self.pg_writer_user, self.pg_writer_password),
            "reader": (self.pg_reader_user, self.pg_reader_password),
            "airflow": (self.airflow_db_user, self.airflow_db_password),
        }
        user, secret = pairs[role]
        return user, secret.get_secret_value() if secret else None

    @property  # not cached: model_copy(update=...) would keep the old list
    def kafka_bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]


#: Settings whose values are secrets: generated into `.env` when missing.
SECRET_FIELDS = (
    "pg_superuser_password",
    "pg_writer_password",
    "pg_reader_password",
    "airflow_db_password",
    "airflow_admin_password",
    "airflow_secret_key",
    "airflow_fernet_key",
    "grafana_admin_password",
    "dashboard_admin_password",
    "dashboard_secret_key",
)


def describe(error: ValidationError) -> str:
    """A settings error for people: each wrong setting under its environment
    name (as in .env), its value and what is wrong."""
    lines = []
    for e in error.errors():
        name = "_".join(str(part) for part in e["loc"]).upper()
        if e["type"] == "extra_forbidden":  # its value may be a secret: not shown
            near = difflib.get_close_matches(name, [f.upper() for f in Settings.model_fields], n=1)
            lines.append(f"{name}: not a setting" + (f" (did you mean {near[0]}?)" if near else "")
                         + "; correct or remove it")
            continue
        message = e["msg"].removeprefix("Value error, ")
        value = "" if not name or "input" not in e or isinstance(e["input"], dict) else f"={e['input']!r}"
        lines.append(f"{name}{value}: {message}" if name else message)
    return "settings (.env or the environment; .env.example documents each): " + "; ".join(lines)


def env_file_errors(path: Path = ENV_FILE) -> str | None:
    """What is wrong with `path` as a file of NAME=value lines, for people; None
    when nothing is. python-dotenv skips a statement it cannot parse with a
    warning (`PRODUCER_RATE 500` left the producer at its default); the lines
    are named, never shown: they may hold a password."""
    from dotenv.parser import parse_stream

    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        bad = [binding.original.line for binding in parse_stream(f) if binding.error]
    if not bad:
        return None
    lines = ("line " if len(bad) == 1 else "lines ") + ", ".join(str(n) for n in bad)
    return (f"{path.name}, {lines}: not NAME=value (one setting per line; # starts a comment; "
            "quote a value with spaces); correct or remove what is there")


def get_settings(**overrides) -> Settings:
    """Fresh settings from the environment; keyword overrides win (tests use them)."""
    return Settings(**overrides)
