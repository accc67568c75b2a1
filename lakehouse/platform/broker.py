"""The embedded broker: Apache Kafka (KRaft, one node that is both broker and
controller) run from its own jars (`.jvm/kafka`, resolved from jvm/pom.xml),
with its log in `<run dir>/kafka`, and the events topic.

Storage is formatted once (`kafka.tools.StorageTool format`) with a cluster id
generated on the first start and kept in `<run dir>/broker/cluster-id`; every
later start checks that the log on disk belongs to that cluster and refuses
otherwise -- nothing here ever re-formats or deletes a log. The controller
quorum is static (`controller.quorum.voters`, this node only), so both ports
are plain configuration and may change between starts.

`prepare()` (run by `lakehouse up` before the broker starts) checks the disk
and the log and formats a new one; `write_config()` + `server_command()` (run
by the launcher on every start, restarts included) give the JVM its
server.properties and Log4j2 file. `BROKER_EMBEDDED=false` skips all of it:
only `ensure_topic()` runs, against KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import AuthorizationError, KafkaError, TopicAlreadyExistsError

from lakehouse.kafka_clients import KafkaOptionsError, client_config, refusals
from lakehouse.platform.errors import PlatformError
from lakehouse.settings import Settings

NODE_ID = 1
MB = 1024 * 1024
MESSAGE_MAX_BYTES = 4 * MB


# --- where things live -----------------------------------------------------------
def host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap_list[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def log_dir(settings: Settings) -> Path:
    """The Kafka log (topic partitions and the KRaft metadata log)."""
    return settings.run_dir / "kafka"


def config_dir(settings: Settings) -> Path:
    """server.properties, log4j2.properties and the kept cluster id."""
    return settings.run_dir / "broker"


def cluster_id_path(settings: Settings) -> Path:
    return config_dir(settings) / "cluster-id"


def java_bin() -> str:
    """Java 17+ for the broker: JAVA_HOME's, else the one on PATH, else Debian's 17."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found:
        return found
    debian = Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
    if debian.is_file():
        return str(debian)
    raise PlatformError("no `java` found for the broker; run `make setup` (installs Java 17) or set JAVA_HOME")


def classpath(settings: Settings) -> str:
    try:
        settings.jvm_jars("kafka")
    except RuntimeError as exc:
        raise PlatformError(str(exc)) from exc
    return str(settings.lakehouse_jvm_dir.resolve() / "kafka" / "*")


# --- configuration -------------------------------------------------------------------
#: Heap bytes of the log cleaner's de-duplication map (log.cleaner.dedupe.buffer.size).
CLEANER_DEDUPE_BUFFER = 16 * MB


def server_properties(settings: Settings) -> dict[str, str]:
    """The broker's configuration: one node, loopback only, replication 1."""
    host, port = host_port(settings)
    cport = settings.broker_controller_port
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{cport}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir(settings)),
        "num.partitions": str(settings.kafka_partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        # retention: time and size per partition, whichever is hit first
        "log.retention.hours": str(settings.broker_retention_hours),
        "log.retention.bytes": str(settings.broker_retention_bytes),
        "log.segment.bytes": str(256 * MB),
        # Time retention goes by each segment's largest record timestamp, which
        # is the producer's (CreateTime). A record stamped older than the
        # retention, alone in a partition's segment, was deleted at the next
        # retention check (30 s after start, then every 5 min) before the
        # streams read it, and raw landing then stopped on Spark's data-loss
        # check at every restart. The broker refuses such a record instead
        # (the producer gets INVALID_TIMESTAMP): nothing it accepts is deleted
        # before its retention has passed.
        "log.message.timestamp.before.max.ms": str(settings.broker_retention_hours * 3_600_000),
        # the producer's max_request_size: oversize events reach the topic (and quarantine)
        "message.max.bytes": str(MESSAGE_MAX_BYTES),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "2",
        # The log cleaner (compaction of __consumer_offsets and
        # __transaction_state) allocates its de-duplication map on the heap at
        # start: Kafka's default 128 MB was most of an idle broker's live heap
        # (the broker 318 MB PSS after start, 227 MB with 16 MB;
        # docs/performance.md, session 41). 16 MB holds ~600,000 keys per
        # cleaning pass, far more than one node's internal topics have.
        "log.cleaner.dedupe.buffer.size": str(CLEANER_DEDUPE_BUFFER),
    }


LOG4J2 = """\
# generated by lakehouse.platform.broker: everything to stdout, which the
# process manager writes to {log}
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""


def write_config(settings: Settings) -> Path:
    """Write server.properties and log4j2.properties; returns server.properties."""
    cdir = config_dir(settings)
    cdir.mkdir(parents=True, exist_ok=True)
    props = cdir / "server.properties"
    props.write_text(
        "# generated by lakehouse.platform.broker from the settings; edit .env instead\n"
        + "".join(f"{k}={v}\n" for k, v in server_properties(settings).items())
    )
    (cdir / "log4j2.properties").write_text(LOG4J2.format(log=settings.log_dir / "broker.log"))
    return props


def jvm_options(settings: Settings) -> list[str]:
    heap = settings.broker_heap
    return [
        f"-Xmx{heap}", f"-Xms{min_heap(heap)}",
        *settings.broker_java_options.split(),
        f"-Dlog4j2.configurationFile={config_dir(settings) / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={settings.log_dir}",
    ]


def min_heap(heap: str) -> str:
    """Initial heap: 64m, or the maximum when that is smaller."""
    return heap if _bytes(heap) < 64 * MB else "64m"


def _bytes(size: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", size.strip())
    if not m:
        raise PlatformError(f"BROKER_HEAP={size!r} is not a JVM size; use e.g. 512m or 1g")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": MB, "g": 1024 * MB}[m.group(2).lower()]


def server_command(settings: Settings) -> list[str]:
    """The broker's command line (server.properties must be written first)."""
    return [java_bin(), *jvm_options(settings), "-cp", classpath(settings),
            "kafka.Kafka", str(config_dir(settings) / "server.properties")]


# --- storage: format once, check every start ------------------------------------------
def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 (as StorageTool's
    random-uuid prints it; never starting with '-', which a CLI would misread)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def read_meta(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def check_disk(settings: Settings) -> None:
    """Refuse to start the broker on a (nearly) full disk: Kafka would take its
    log directory offline and stop at the first write."""
    where = log_dir(settings)
    probe = where if where.exists() else settings.run_dir
    free = shutil.disk_usage(probe).free
    need = settings.broker_min_free_mb * MB
    if free < need:
        raise PlatformError(
            f"only {free // MB} MB free on the disk of {where} (the broker needs {settings.broker_min_free_mb} MB, "
            "BROKER_MIN_FREE_MB); free space there or move LAKEHOUSE_RUN_DIR to a larger disk -- nothing was deleted"
        )


def check_storage(settings: Settings) -> str | None:
    """The cluster id of the formatted log, after checking it is ours; None
    when there is no log yet. Raises (and touches nothing) when the log is
    not one this run directory made."""
    logs = log_dir(settings)
    meta = logs / "meta.properties"
    kept = cluster_id_path(settings).read_text().strip() if cluster_id_path(settings).exists() else None
    if not meta.exists():
        if logs.exists() and any(logs.iterdir()):
            raise PlatformError(
                f"{logs} holds files but no meta.properties, so it is no Kafka log this stack formatted; "
                "move it away (it is kept) and run `make up` again"
            )
        return None
    found = read_meta(meta)
    cid = found.get("cluster.id")
    if not cid:
        raise PlatformError(f"{meta} has no cluster.id (corrupted?); restore it from a backup or move {logs} away "
                            "(it is kept) and run `make up` again")
    if kept and cid != kept:
        raise PlatformError(
            f"the Kafka log in {logs} belongs to cluster {cid}, this run directory's is {kept} "
            f"({cluster_id_path(settings)}); put the right log back or move {logs} away (nothing was deleted)"
        )
    if found.get("node.id") not in (None, str(NODE_ID)):
        raise PlatformError(f"the Kafka log in {logs} is node {found['node.id']}'s, not node {NODE_ID}'s; "
                            f"move {logs} away (nothing was deleted)")
    return cid


def format_storage(settings: Settings, cluster_id: str) -> None:
    """`kafka.tools.StorageTool format` on an empty log directory. Kafka itself
    refuses an already formatted one; we never pass --ignore-formatted."""
    props = write_config(settings)
    res = subprocess.run(
        [java_bin(), "-Xmx256m", f"-Dlog4j2.configurationFile={config_dir(settings) / 'log4j2.properties'}",
         "-cp", classpath(settings), "kafka.tools.StorageTool", "format",
         "--cluster-id", cluster_id, "--config", str(props)],
        capture_output=True, text=True, timeout=120,
    )
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln[0].isspace()]
        last = lines[-1].split(". Use --ignore-formatted")[0] if lines else f"exit code {res.returncode}"
        raise PlatformError(f"formatting the Kafka log in {log_dir(settings)} failed: {last}")


CLEAN_SHUTDOWN = ".kafka_cleanshutdown"
CORRUPT_HINT = re.compile(r"isvalid: false|Exception in thread|CorruptRecordException")


def segments_to_recover(settings: Settings) -> list[Path]:
    """The segments Kafka's log recovery reads (and may truncate) on its next
    start: none after a clean shutdown; else, per partition, those from the
    one holding its recovery point on."""
    logs = log_dir(settings)
    if not (logs / "meta.properties").exists() or (logs / CLEAN_SHUTDOWN).exists():
        return []
    points: dict[str, int] = {}
    try:
        for line in (logs / "recovery-point-offset-checkpoint").read_text().splitlines()[2:]:
            topic, part, offset = line.rsplit(" ", 2)
            points[f"{topic}-{part}"] = int(offset)
    except (OSError, ValueError):
        points = {}
    out: list[Path] = []
    for part in sorted(p for p in logs.iterdir() if p.is_dir() and re.search(r"-\d+$", p.name)):
        if part.name.startswith("__cluster_metadata"):
            continue  # the KRaft metadata log: Raft's own recovery, not LogSegment truncation
        segs = sorted(part.glob("*.log"), key=lambda f: int(f.stem) if f.stem.isdigit() else -1)
        point = points.get(part.name, 0)
        first = max([i for i, f in enumerate(segs) if f.stem.isdigit() and int(f.stem) <= point], default=0)
        out += [f for f in segs[first:] if f.stat().st_size > 0]
    return out


def check_recovery(settings: Settings) -> None:
    """After an unclean stop (kill -9, power loss) Kafka recovers the segments
    past each recovery point and truncates a segment at its first invalid
    batch, dropping every record after it. A torn last batch (a write cut
    short: never acknowledged) is the normal case and is left to Kafka;
    damage anywhere else would lose acknowledged records, so the broker does
    not start unless BROKER_RECOVERY_TRUNCATE says so. Checked with Kafka's
    own DumpLogSegments."""
    segs = segments_to_recover(settings)
    if not segs or settings.broker_recovery_truncate:
        return
    res = subprocess.run(
        [java_bin(), "-Xmx256m", f"-Dlog4j2.configurationFile={config_dir(settings) / 'log4j2.properties'}",
         "-cp", classpath(settings), "kafka.tools.DumpLogSegments", "--files", ",".join(map(str, segs))],
        capture_output=True, text=True, timeout=600,
    )
    current = None
    for line in (res.stdout + "\n" + res.stderr).splitlines():
        if line.startswith("Dumping "):
            current = line.removeprefix("Dumping ").strip()
        elif CORRUPT_HINT.search(line):
            where = re.search(r"position: (\d+)", line)
            at = f" at byte {where.group(1)}" if where else ""
            raise PlatformError(
                f"Kafka log segment {current or line.strip()[:200]} is corrupt{at}; Kafka's recovery would truncate it "
                f"there and drop every later record. Back up {log_dir(settings)}, then restore the file, or accept the "
                "loss with BROKER_RECOVERY_TRUNCATE=true in .env (nothing was deleted)"
            )
    if res.returncode != 0:
        raise PlatformError(f"checking the Kafka log before recovery failed ({res.stderr.strip()[-200:]}); "
                            f"see {log_dir(settings)}")


def prepare(settings: Settings, say: Callable[[str], None] = print) -> str:
    """Before the broker starts: enough disk, a log of this run directory's
    cluster (formatted once, on the first start). Returns the cluster id."""
    check_disk(settings)
    cid = check_storage(settings)
    kept = cluster_id_path(settings)
    if cid is None:
        cid = kept.read_text().strip() if kept.exists() else new_cluster_id()
        say(f"formatting the Kafka log in {log_dir(settings)} (cluster {cid})")
        format_storage(settings, cid)
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(cid + "\n")
    write_config(settings)
    check_recovery(settings)
    return cid


# --- readiness and the topic ---------------------------------------------------------
def last_error(settings: Settings, lines: int = 400) -> str | None:
    """The last ERROR/FATAL message of the broker's log (what to tell the user)."""
    path = settings.log_dir / "broker.log"
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return None
    for line in reversed(tail):
        if re.search(r"\] (ERROR|FATAL) ", line) or line.startswith("error:"):
            return line.strip()[:400]
    return None


def ensure_topic(settings: Settings, timeout: float = 120.0, alive: Callable[[], None] | None = None) -> None:
    """Create the events topic with KAFKA_PARTITIONS partitions unless it
    exists (idempotent), waiting for the broker to answer. `alive` raises
    when the broker process has died meanwhile."""
    try:
        client = client_config(settings)
    except KafkaOptionsError as exc:
        raise PlatformError(str(exc)) from exc
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            with refusals() as refused:
                try:
                    admin = KafkaAdminClient(**client, request_timeout_ms=5000, bootstrap_timeout_ms=5000)
                except KafkaError:
                    if refused:  # the broker answered: waiting longer changes nothing
                        raise PlatformError(f"broker at {settings.kafka_bootstrap_servers} refused the connection: "
                                            f"{refused[-1]} (KAFKA_OPTIONS in .env)") from None
                    raise
            try:
                if settings.kafka_topic not in admin.list_topics():
                    admin.create_topics(
                        [NewTopic(settings.kafka_topic, settings.kafka_partitions, 1)]
                    )
                return
            except TopicAlreadyExistsError:
                return
            finally:
                admin.close()
        except AuthorizationError as exc:  # signed in, not allowed: waiting longer changes nothing
            raise PlatformError(f"broker at {settings.kafka_bootstrap_servers} refused creating or listing "
                                f"{settings.kafka_topic!r}: {exc} (KAFKA_OPTIONS in .env)") from exc
        except KafkaError as exc:
            last = exc
            time.sleep(0.5)
    raise PlatformError(f"broker at {settings.kafka_bootstrap_servers} did not answer within {timeout:.0f}s: {last}")
