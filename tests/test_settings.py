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


def test_stream_starting_offsets_must_be_what_spark_reads_and_name_the_topic():
    import pytest
    from pydantic import ValidationError

    from lakehouse.settings import describe, get_settings

    for ok in ("earliest", "LATEST", '{"user-events": {"0": 1200, "1": -2, "2": -1}}'):
        assert get_settings(kafka_topic="user-events", stream_starting_offsets=ok).stream_starting_offsets == ok
    refused = {
        "beginning": "STREAM_STARTING_OFFSETS must be earliest, latest, or JSON like",
        '{"user-events": {"0": "1200"}}': "got '{\"user-events\": {\"0\": \"1200\"}}'",
        '{"user-events": {"0": -3}}': "(-2 earliest, -1 latest)",
        '{"user-events": {}}': "must be earliest, latest, or JSON",
        '{"clicks": {"0": 5}}': "STREAM_STARTING_OFFSETS names topic clicks, and the streams read "
                                "KAFKA_TOPIC=user-events",
    }
    for value, says in refused.items():
        with pytest.raises(ValidationError) as exc:
            get_settings(kafka_topic="user-events", stream_starting_offsets=value)
        assert says in describe(exc.value), describe(exc.value)


def test_the_cli_names_a_wrong_setting_before_doing_anything(monkeypatch):
    """Every `lakehouse` command (`make up` runs `lakehouse up`) stops with the
    setting's environment name and what is wrong, not a traceback; `status`
    here, which starts nothing even where the check were missing."""
    from typer.testing import CliRunner

    from lakehouse.platform import cli

    monkeypatch.setenv("STREAM_TRIGGER_SECONDS", "abc")
    result = CliRunner().invoke(cli.app, ["status"])
    assert result.exit_code == 2, result.output
    assert "STREAM_TRIGGER_SECONDS='abc': Input should be a valid number" in result.output
    assert "Traceback" not in result.output


def test_out_of_range_numbers_are_refused_when_the_settings_are_read():
    """Values that cannot work (a port out of range, no records per batch, a
    negative watermark delay, a share above 1) are refused with the setting's
    name when the settings are read, before any program starts with them."""
    import pytest
    from pydantic import ValidationError

    from lakehouse.settings import describe, get_settings

    for name, value, says in [
        ("pg_port", 0, "PG_PORT=0: Input should be greater than or equal to 1"),
        ("dashboard_port", 70000, "DASHBOARD_PORT=70000: Input should be less than or equal to 65535"),
        ("stream_max_records_per_batch", 0, "STREAM_MAX_RECORDS_PER_BATCH=0: Input should be greater"),
        ("realtime_watermark_minutes", -1, "REALTIME_WATERMARK_MINUTES=-1: Input should be greater"),
        ("producer_late_fraction", 1.5, "PRODUCER_LATE_FRACTION=1.5: Input should be less than or equal to 1"),
        ("kafka_partitions", 0, "KAFKA_PARTITIONS=0: Input should be greater"),
        ("airflow_parallelism", 0, "AIRFLOW_PARALLELISM=0: Input should be greater"),
    ]:
        with pytest.raises(ValidationError) as exc:
            get_settings(**{name: value})
        assert says in describe(exc.value), describe(exc.value)


def test_a_name_in_env_that_is_no_setting_is_refused_with_the_nearest_one(tmp_path, monkeypatch):
    """A typo in .env (PRODUCER_RAET=1000) used to be ignored without a word,
    the stack running at the default rate. Now reading the settings names it
    and the setting it is nearest to, never its value (it may be a password);
    Docker Compose's own variables there, and environment variables that are
    no settings, are left alone."""
    import pytest
    from pydantic import ValidationError

    from lakehouse.settings import describe

    env = tmp_path / ".env"
    env.write_text("PRODUCER_RATE=5\nCOMPOSE_PROJECT_NAME=lake\nDOCKER_HOST=unix:///x.sock\n")
    monkeypatch.setenv("SOME_TOOLS_VARIABLE", "1")
    assert Settings(_env_file=str(env)).producer_rate == 5
    env.write_text("PRODUCER_RAET=1000\npg_writer_passwrod=hunter2\nNOT_OURS_AT_ALL=1\n")
    with pytest.raises(ValidationError) as exc:
        Settings(_env_file=str(env))
    said = describe(exc.value)
    assert ("PRODUCER_RAET: not a setting (did you mean PRODUCER_RATE?); correct or remove it; "
            "PG_WRITER_PASSWROD: not a setting (did you mean PG_WRITER_PASSWORD?); correct or remove it; "
            "NOT_OURS_AT_ALL: not a setting; correct or remove it") in said, said
    assert "hunter2" not in said


def test_a_line_of_env_that_is_not_name_equals_value_is_refused_by_line_number(tmp_path, monkeypatch):
    """python-dotenv skips a statement it cannot parse with a warning, and the
    setting took its default: `PRODUCER_RATE 500` left the producer at 200/s.
    Every `lakehouse` command now stops first, naming the lines, never what
    they hold (a password, perhaps)."""
    from typer.testing import CliRunner

    from lakehouse.platform import cli
    from lakehouse.settings import env_file_errors

    env = tmp_path / ".env"
    env.write_text("# the producer\nPRODUCER_RATE=5\n\nDASHBOARD_ENABLED='false'  # inline\n")
    assert env_file_errors(env) is None
    env.write_text("PRODUCER_RATE=5\nPRODUCER_RATE 500\n# fine\nPG_READER_PASSWORD hunter2\n")
    assert env_file_errors(env) == (".env, lines 2, 4: not NAME=value (one setting per line; # starts a comment; "
                                    "quote a value with spaces); correct or remove what is there")
    assert env_file_errors(tmp_path / "absent") is None
    monkeypatch.setattr(cli, "ENV_FILE", env)
    result = CliRunner().invoke(cli.app, ["status"])
    assert result.exit_code == 2, result.output
    assert "error: .env, lines 2, 4: not NAME=value" in result.output
    assert "hunter2" not in result.output and "not running" not in result.output


def test_make_down_and_clean_stop_on_a_refused_setting_and_delete_nothing(tmp_path):
    """`make clean` ran `lakehouse clean || rm -rf .run`: a setting the CLI
    refused deleted the run directory without stopping the stack in it, and
    `make down` said nothing and stopped nothing. Both now fail with the
    CLI's error."""
    import os
    import subprocess

    from lakehouse.settings import REPO_ROOT

    run = tmp_path / "run"
    run.mkdir()
    (run / "kept").write_text("data\n")
    env = {**os.environ, "LAKEHOUSE_RUN_DIR": str(run), "STREAM_TRIGGER_SECONDS": "abc"}
    for target in ("down", "clean"):
        done = subprocess.run(["make", "-s", target], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0, (target, done.stdout, done.stderr)
        assert "STREAM_TRIGGER_SECONDS='abc': Input should be a valid number" in done.stderr, done.stderr
        assert (run / "kept").read_text() == "data\n"
