"""Settings and `.env.example` stay in step; secrets have no working default."""

from __future__ import annotations

import re

from lakehouse.platform.secrets import ensure_env_file
from lakehouse.settings import REPO_ROOT, SECRET_FIELDS, Settings


def documented_names() -> set[str]:
    text = (REPO_ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_every_setting_is_documented_and_nothing_else():
    fields = {name.upper() for name in Settings.model_fields}
    assert fields == documented_names()


def test_secrets_have_no_default():
    s = Settings(_env_file=None)
    for field in SECRET_FIELDS:
        assert getattr(s, field) is None, field


def test_secrets_are_generated_once_with_mode_600(tmp_path, monkeypatch):
    for field in SECRET_FIELDS:
        monkeypatch.delenv(field.upper(), raising=False)
    env = tmp_path / ".env"
    env.write_text("PG_PORT=6000\nAIRFLOW_ADMIN_PASSWORD=mine\n")
    added = ensure_env_file(env)
    assert "AIRFLOW_ADMIN_PASSWORD" not in added
    assert set(added) == {f.upper() for f in SECRET_FIELDS} - {"AIRFLOW_ADMIN_PASSWORD"}
    assert env.stat().st_mode & 0o777 == 0o600
    s = Settings(_env_file=str(env))
    assert s.pg_port == 6000 and s.airflow_admin_password.get_secret_value() == "mine"
    assert ensure_env_file(env) == []


def test_a_password_with_spaces_and_quotes_survives_the_dsn():
    """PG_*_PASSWORD as a user may write it in .env: libpq reads back the same values."""
    from psycopg2.extensions import parse_dsn

    password = "two words 'quoted' back\\slash =x"
    settings = Settings(_env_file=None, pg_writer_password=password)
    assert parse_dsn(settings.pg_dsn("writer")) == {
        "host": "127.0.0.1", "port": "55432", "dbname": "lakehouse", "user": "lakehouse_writer", "password": password}
    assert "password" not in parse_dsn(Settings(_env_file=None).pg_dsn("reader"))
