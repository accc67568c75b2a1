"""Serve the overview dashboard: `python -m lakehouse.dashboard_app` (the stack's
`dashboard` program). waitress, a production WSGI server in pure Python, on
DASHBOARD_HOST (127.0.0.1) : DASHBOARD_PORT; a few threads are plenty for a handful of viewers."""

from __future__ import annotations

import logging
import sys

from waitress import serve

from lakehouse.dashboard_app.app import create_app
from lakehouse.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    try:
        app = create_app(settings)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(1)
    logging.getLogger("lakehouse.dashboard").info(
        "serving %s on http://%s:%d as %s", settings.dashboard_json, settings.dashboard_host, settings.dashboard_port,
        settings.pg_reader_user)
    serve(app.server, host=settings.dashboard_host, port=settings.dashboard_port, threads=4, ident="lakehouse-dashboard")


if __name__ == "__main__":
    main()
