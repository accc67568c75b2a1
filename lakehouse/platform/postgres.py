"""The project-owned PostgreSQL cluster: created once in the run directory,
served by the machine's PostgreSQL binaries on loopback, initialised from `sql/`.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to
an unprivileged OS user (``PG_OS_USER``) and every server command runs as it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import subprocess
import time
from contextlib import closing
from pathlib import Path

import psycopg2
from psycopg2 import sql as pgsql

from lakehouse.platform.errors import PlatformError
from lakehouse.settings import REPO_ROOT, Settings

SQL_DIR = REPO_ROOT / "sql"
FALLBACK_PARENT = Path("/var/lib/lakehouse-pg")


def bin_dir(settings: Settings) -> Path:
    """The newest installed PostgreSQL server binaries, or PG_BIN_DIR."""
    if settings.pg_bin_dir:
        candidates = [settings.pg_bin_dir]
    else:
        candidates = sorted(
            (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    for c in candidates:
        if (Path(c) / "postgres").exists():
            return Path(c)
    raise PlatformError(
        "PostgreSQL server binaries not found; run `make setup` (installs postgresql-15) or set PG_BIN_DIR"
    )


def as_root() -> bool:
    return os.geteuid() == 0


def _os_user(settings: Settings) -> pwd.struct_passwd | None:
    if not as_root():
        return None
    try:
        return pwd.getpwnam(settings.pg_os_user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", settings.pg_os_user],
            check=True,
        )
        return pwd.getpwnam(settings.pg_os_user)


def os_user_name(settings: Settings) -> str | None:
    """The user the server runs as (None: ourselves)."""
    u = _os_user(settings)
    return u.pw_name if u else None


def _run_as(settings: Settings, argv: list[str], **kw) -> subprocess.CompletedProcess:
    user = os_user_name(settings)
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def _reachable_by(user: str, path: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)]).returncode == 0


def data_dir(settings: Settings) -> Path:
    """Cluster directory: `<run dir>/postgres`, a link to a reachable place when
    the server's OS user cannot traverse the run directory (e.g. under /root)."""
    return settings.run_dir / "postgres"


def fallback_dir(settings: Settings) -> Path:
    return FALLBACK_PARENT / hashlib.sha256(str(settings.run_dir).encode()).hexdigest()[:12]


def ensure_cluster(settings: Settings) -> Path:
    """initdb once; later calls only check the directory is a cluster of ours."""
    pgdata = data_dir(settings)
    if (pgdata / "PG_VERSION").exists():
        return pgdata
    if pgdata.exists() and any(pgdata.iterdir()):
        raise PlatformError(
            f"{pgdata} exists but is not a PostgreSQL cluster; move it away or run `make clean`"
        )
    password = settings.pg_superuser_password
    if password is None:
        raise PlatformError("PG_SUPERUSER_PASSWORD is not set; run `make up` once to generate .env")

    user = _os_user(settings)
    target = pgdata
    if user and not _reachable_by(user.pw_name, settings.run_dir):
        # e.g. a clone under /root: keep the cluster where its owner can reach
        # it, and link it from the run directory. `make clean` removes both.
        target = fallback_dir(settings)
        if target.exists() and any(target.iterdir()):
            raise PlatformError(f"leftover cluster at {target} without a link from {pgdata}; remove it or run `make clean`")
        FALLBACK_PARENT.mkdir(mode=0o755, exist_ok=True)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        if pgdata.is_symlink() or pgdata.exists():
            pgdata.unlink() if pgdata.is_symlink() else pgdata.rmdir()
        pgdata.symlink_to(target)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    pwfile = target.parent / f".pwfile-{os.getpid()}"
    pwfile.write_text(password.get_secret_value() + "\n")
    pwfile.chmod(0o600)
    if user:
        os.chown(target, user.pw_uid, user.pw_gid)
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        res = _run_as(
            settings,
            [
                str(bin_dir(settings) / "initdb"),
                "-D", str(target),
                "-U", settings.pg_superuser,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if res.returncode != 0:
        raise PlatformError(f"initdb failed: {res.stderr.strip().splitlines()[-1:]}")
    conf = target / "postgresql.auto.conf"
    with conf.open("a") as f:
        f.write(
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            "shared_buffers = '128MB'\n"
            "logging_collector = off\n"
        )
    return pgdata


def server_command(settings: Settings) -> list[str]:
    """Foreground server command for the process manager. Sessions start in
    UTC whatever the host's zone (initdb would take the host's): event dates
    are UTC days, so `current_date`, `window_start::date` and the times psql
    shows agree with them (a session may SET TIME ZONE)."""
    return [
        str(bin_dir(settings) / "postgres"),
        "-D", str(data_dir(settings).resolve()),
        "-p", str(settings.pg_port),
        "-c", f"listen_addresses={settings.pg_host}",
        "-c", "timezone=UTC",
        "-c", "log_timezone=UTC",
    ]


def wait_ready(settings: Settings, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            psycopg2.connect(settings.pg_dsn("superuser", "postgres"), connect_timeout=2).close()
            return
        except psycopg2.OperationalError as exc:
            last = exc
            time.sleep(0.3)
    raise PlatformError(f"PostgreSQL did not accept connections on port {settings.pg_port}: {last}")


def _ensure_role(cur, name: str, password: str, login: bool = True) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    cur.execute(
        pgsql.SQL("{} ROLE {} WITH {} PASSWORD %s").format(
            pgsql.SQL(verb), pgsql.Identifier(name), pgsql.SQL("LOGIN" if login else "NOLOGIN")
        ),
        (password,),
    )


def _ensure_database(cur, name: str, owner: str) -> None:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if not cur.fetchone():
        cur.execute(
            pgsql.SQL("CREATE DATABASE {} OWNER {}").format(pgsql.Identifier(name), pgsql.Identifier(owner))
        )


def sql_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def apply_schema(settings: Settings) -> None:
    """Roles, databases, then every `sql/*.sql` in order. Safe to run again."""
    for field in ("pg_writer_password", "pg_reader_password", "airflow_db_password"):
        if getattr(settings, field) is None:
            raise PlatformError(f"{field.upper()} is not set; run `make up` once to generate .env")
    with closing(psycopg2.connect(settings.pg_dsn("superuser", "postgres"))) as conn:
        conn.autocommit = True  # CREATE DATABASE refuses a transaction block
        with conn.cursor() as cur:
            for role in ("writer", "reader", "airflow"):
                user, password = settings._role(role)
                _ensure_role(cur, user, password)
            _ensure_database(cur, settings.pg_database, settings.pg_superuser)
            _ensure_database(cur, settings.airflow_db_name, settings.airflow_db_user)

    with closing(psycopg2.connect(settings.pg_dsn("superuser"))) as conn:
        with conn.cursor() as cur:
            # The sql/ files name the roles through psql-style variables so the
            # compose image's entrypoint can run the same files.
            for path in sql_files():
                text = (
                    path.read_text()
                    .replace(":\"writer_role\"", pgsql.Identifier(settings.pg_writer_user).as_string(conn))
                    .replace(":\"reader_role\"", pgsql.Identifier(settings.pg_reader_user).as_string(conn))
                    .replace(":\"database\"", pgsql.Identifier(settings.pg_database).as_string(conn))
                )
                cur.execute(text)
        conn.commit()
