"""Secrets are never defaulted in code: the first `make up` generates the
missing ones into `.env` (mode 600) and reports the Airflow login once."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from dotenv import dotenv_values, set_key

from lakehouse.settings import ENV_FILE, SECRET_FIELDS


def new_secret(field: str) -> str:
    if field == "airflow_fernet_key":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_urlsafe(24)


def generate_secrets() -> dict[str, str]:
    """A value for every secret setting, keyed by environment variable name."""
    return {f.upper(): new_secret(f) for f in SECRET_FIELDS}


def ensure_env_file(path: Path = ENV_FILE) -> list[str]:
    """Add the missing secrets to `path`; return the names that were added."""
    existing = dotenv_values(path) if path.exists() else {}
    added = []
    if not path.exists():
        path.touch(mode=0o600)
    for name, value in generate_secrets().items():
        if existing.get(name) or os.environ.get(name):
            continue
        set_key(str(path), name, value, quote_mode="never")
        added.append(name)
    path.chmod(0o600)
    return added
