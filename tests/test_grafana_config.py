"""The embedded Grafana's generated config and command (Grafana itself cannot
be installed on these machines, so the server is not started here)."""

from __future__ import annotations

import configparser
import re
import os
import stat

import pytest

from lakehouse.platform import grafana, launch, services
from lakehouse.platform.errors import PlatformError
from tests.conftest import free_port, make_settings


def fake_grafana(root, name="grafana"):
    """A tarball-shaped Grafana install: <root>/bin/<name> and <root>/conf/defaults.ini."""
    (root / "bin").mkdir(parents=True)
    (root / "conf").mkdir()
    (root / "conf" / "defaults.ini").write_text("[server]\n")
    exe = root / "bin" / name
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_command_and_config_for_a_tarball_install(tmp_path):
    exe = fake_grafana(tmp_path / "grafana-12")
    s = make_settings(tmp_path / "run", grafana_bin=str(exe), grafana_port=3123)
    cmd = grafana.server_command(s)
    conf_path = s.run_dir / "grafana" / "grafana.ini"
    assert cmd == [str(exe), "server", "--homepath", str(tmp_path / "grafana-12"), "--config", str(conf_path)]
    ini = configparser.ConfigParser()
    ini.read(conf_path)
    assert ini["server"]["http_addr"] == "127.0.0.1"
    assert ini["server"]["http_port"] == "3123"
    assert ini["paths"]["provisioning"] == str(grafana.PROVISIONING_DIR)
    assert (grafana.PROVISIONING_DIR / "datasources" / "lakehouse.yaml").is_file()
    for key in ("data", "logs", "plugins"):
        assert ini["paths"][key].startswith(str(s.run_dir / "grafana"))
    assert os.path.isfile(ini["dashboards"]["default_home_dashboard_path"])
    text = conf_path.read_text()
    for secret in (s.grafana_admin_password, s.pg_reader_password):
        assert secret.get_secret_value() not in text  # secrets travel as environment only


def test_old_binary_name_takes_no_subcommand(tmp_path):
    exe = fake_grafana(tmp_path / "g", name="grafana-server")
    s = make_settings(tmp_path / "run", grafana_bin=str(exe))
    assert grafana.server_command(s)[:2] == [str(exe), "--homepath"]


def test_environment_feeds_the_provisioning_files(tmp_path):
    s = make_settings(tmp_path / "run")
    env = grafana.environment(s)
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == s.grafana_admin_password.get_secret_value()
    assert env["PG_READER_USER"] == s.pg_reader_user
    assert env["PG_READER_PASSWORD"] == s.pg_reader_password.get_secret_value()
    assert env["PG_PORT"] == str(s.pg_port)
    assert env["LAKEHOUSE_GRAFANA_DASHBOARDS"] == str(grafana.DASHBOARDS_DIR)
    # every ${VAR} the provisioning files use is set
    used = set()
    for f in grafana.PROVISIONING_DIR.rglob("*.yaml"):
        used |= set(re.findall(r"\$\{(\w+)\}", f.read_text()))
    assert used and used <= set(env)


def test_grafana_is_a_program_only_when_the_binary_exists(tmp_path):
    s = make_settings(tmp_path / "run")
    assert "grafana" not in [x.name for x in services.services(s)]
    with pytest.raises(PlatformError, match="GRAFANA_BIN"):
        grafana.server_command(s)
    exe = fake_grafana(tmp_path / "g")
    s = make_settings(tmp_path / "run", grafana_bin=str(exe))
    (svc,) = [x for x in services.services(s) if x.name == "grafana"]
    assert svc.group == "grafana" and svc.port == s.grafana_port
    cmd, env = launch.command_for("grafana", s)
    assert cmd[0] == str(exe) and env["PG_DATABASE"] == s.pg_database


def test_missing_homepath_names_the_setting(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "grafana"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    s = make_settings(tmp_path / "run", grafana_bin=str(exe))
    # no packaged Grafana either, whether or not this machine has one (the test
    # skipped itself where /usr/share/grafana exists)
    monkeypatch.setattr(grafana, "PACKAGE_HOME", tmp_path / "no-package")
    with pytest.raises(PlatformError, match="GRAFANA_HOME"):
        grafana.server_command(s)
    # the package layout is the fallback once it exists
    fake_grafana(tmp_path / "no-package", name="unused")
    assert grafana.server_command(s)[:4] == [str(exe), "server", "--homepath", str(tmp_path / "no-package")]


FAKE_GRAFANA = '''#!{python}
"""Stands in for a Grafana server: records how it was started, then serves
/api/health on the ini's address until stopped."""
import configparser, http.server, json, os, sys
args = sys.argv[1:]
ini = configparser.ConfigParser()
ini.read(args[args.index("--config") + 1])
state = os.path.dirname(args[args.index("--config") + 1])
keep = ("GF_", "PG_", "LAKEHOUSE_GRAFANA_DASHBOARDS")
with open(os.path.join(state, "invocation.json"), "w") as f:
    json.dump({{"argv": sys.argv, "env": {{k: v for k, v in os.environ.items() if k.startswith(keep)}}}}, f)

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{{"database": "ok"}}')

http.server.HTTPServer((ini["server"]["http_addr"], int(ini["server"]["http_port"])), Health).serve_forever()
'''


@pytest.mark.integration
def test_make_up_runs_grafana_under_the_process_manager(tmp_path):
    """The embedded path end to end with a stand-in binary (Grafana itself
    cannot be installed here): supervisord -> launch -> generated ini and env."""
    import json
    import sys
    import time
    import urllib.request

    from lakehouse.platform import stack

    home = tmp_path / "grafana-home"
    exe = fake_grafana(home)
    script = home / "fake_grafana.py"
    script.write_text(FAKE_GRAFANA.format(python=sys.executable))
    # through sh: a shebang line cannot name an interpreter whose path holds a space
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    s = make_settings(tmp_path / "run", grafana_bin=str(exe), grafana_port=free_port())
    try:
        result = stack.up(s, groups=("grafana",))
        assert result.started == ["grafana"]
        deadline = time.monotonic() + 30
        invocation = s.run_dir / "grafana" / "invocation.json"
        while not invocation.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = json.loads(invocation.read_text())
        assert seen["argv"][1:] == ["server", "--homepath", str(home), "--config", str(s.run_dir / "grafana" / "grafana.ini")]
        assert seen["env"]["GF_SECURITY_ADMIN_PASSWORD"] == s.grafana_admin_password.get_secret_value()
        assert seen["env"]["PG_READER_PASSWORD"] == s.pg_reader_password.get_secret_value()
        assert seen["env"]["PG_PORT"] == str(s.pg_port)
        assert seen["env"]["LAKEHOUSE_GRAFANA_DASHBOARDS"] == str(grafana.DASHBOARDS_DIR)
        url = f"http://127.0.0.1:{s.grafana_port}/api/health"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"nothing answered on {url}")
        assert stack.process_states(s) == {"grafana": "RUNNING"}
        assert s.pg_reader_password.get_secret_value() not in (s.run_dir / "supervisord.conf").read_text()
    finally:
        stack.clean(s)


def test_the_embedded_dashboard_is_a_program_beside_grafana(tmp_path):
    """`make up` runs the overview dashboard (no Grafana needed) and, where a
    binary exists, Grafana too, from the same provisioning."""
    import sys

    s = make_settings(tmp_path / "run")
    (svc,) = [x for x in services.services(s) if x.name == "dashboard"]
    assert svc.group == "dashboard" and svc.port == s.dashboard_port and svc.port_setting == "DASHBOARD_PORT"
    assert launch.command_for("dashboard", s) == ([sys.executable, "-m", "lakehouse.dashboard_app"], {})
    assert s.dashboard_json == grafana.HOME_DASHBOARD  # one JSON for both renderers
    exe = fake_grafana(tmp_path / "g")
    both = make_settings(tmp_path / "run", grafana_bin=str(exe))
    assert {"dashboard", "grafana"} <= {x.name for x in services.services(both)}
    off = make_settings(tmp_path / "run", dashboard_enabled=False)
    assert "dashboard" not in {x.name for x in services.services(off)}
