"""The overview dashboard program of the embedded stack (lakehouse.dashboard_app):
where it listens, for `make up`'s printout and the readiness wait."""

from __future__ import annotations

from lakehouse.settings import Settings


def base_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.dashboard_port}"
