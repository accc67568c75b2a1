"""Run the panels' SQL against PostgreSQL as the read-only role.

Each refresh takes one connection from a small pool, runs every panel's
queries (Grafana's macros expanded by `lakehouse.dashboard`) and gives each
panel its own Result: a query that fails gives that panel an error and the
others their rows. When PostgreSQL cannot be reached, every panel gets the
same "PostgreSQL is unreachable" error; the next refresh connects afresh, so
the page recovers by itself when the database is back.
"""

from __future__ import annotations

import threading
from datetime import datetime

import psycopg2

from lakehouse.dashboard import PanelQuery
from lakehouse.dashboard_app.render import Result

UNREACHABLE = "PostgreSQL is unreachable"


class Reader:
    """Read-only connections (at most `size` idle ones kept) with a per-query
    statement timeout below the role's own."""

    def __init__(self, dsn: str, size: int = 2, statement_timeout_ms: int = 15_000, connect_timeout_s: int = 3):
        self.dsn = dsn
        self.size = size
        self.options = f"-c statement_timeout={statement_timeout_ms} -c default_transaction_read_only=on"
        self.connect_timeout_s = connect_timeout_s
        self._idle: list = []
        self._lock = threading.Lock()

    def _take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = psycopg2.connect(self.dsn, connect_timeout=self.connect_timeout_s, options=self.options,
                                application_name="lakehouse-dashboard")
        conn.set_session(readonly=True, autocommit=True)
        return conn

    def _give_back(self, conn) -> None:
        with self._lock:
            if len(self._idle) < self.size and not conn.closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def run_all(self, work: list[tuple[str, list[str]]]) -> dict[str, list[Result]]:
        """(key, [sql, ...]) -> key -> one Result per statement, errors kept per statement."""
        try:
            conn = self._take()
        except psycopg2.Error as exc:
            why = f"{UNREACHABLE}: {_first_line(exc)} (retrying at every refresh)"
            return {key: [Result(error=why)] for key, _ in work}
        out: dict[str, list[Result]] = {}
        try:
            for key, statements in work:
                out[key] = []
                for sql in statements:
                    if conn.closed:
                        out[key].append(Result(error=f"{UNREACHABLE}: the connection was lost (retrying at every refresh)"))
                        continue
                    out[key].append(_run(conn, sql))
        finally:
            if conn.closed:
                pass
            else:
                try:
                    conn.rollback()
                    self._give_back(conn)
                except psycopg2.Error:
                    conn.close()
        return out


def _first_line(exc: Exception) -> str:
    text = (getattr(exc, "pgerror", None) or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run(conn, sql: str) -> Result:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            if cur.description is None:
                return Result(error="the query returned no result set")
            return Result([d.name for d in cur.description], cur.fetchall())
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        if not conn.closed:
            conn.close()
        return Result(error=f"{UNREACHABLE}: {_first_line(exc)} (retrying at every refresh)")
    except psycopg2.Error as exc:
        return Result(error=f"query failed: {_first_line(exc)}")


def panel_statements(panel: dict, dashboard: dict, picked: str, now: datetime) -> list[str]:
    """The SQL of each of a panel's targets for the picked range (`5m`, `1h`,
    ...), Grafana's macros expanded; a panel's own `timeFrom` wins."""
    ranged = {**dashboard, "time": {"from": f"now-{picked}", "to": "now"}}
    return [PanelQuery(panel, t).sql(now, ranged) for t in panel.get("targets", []) if t.get("rawSql")]
