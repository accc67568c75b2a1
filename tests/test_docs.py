"""The docs' commands are ones that work: make targets exist, CLI commands and
options exist, Python snippets compile and import real names, settings are
real, Airflow API paths exist, and links between the docs resolve."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from lakehouse.platform.cli import app as lakehouse_app
from lakehouse.settings import REPO_ROOT, Settings

DOCS = sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]
DOCS = [d for d in DOCS if d.exists()]
MY_DOCS = ["architecture.md", "quickstart.md", "operations.md", "troubleshooting.md", "glossary.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")


def ids(paths):
    return [p.relative_to(REPO_ROOT).as_posix() for p in paths]


def code_segments(text: str) -> list[str]:
    """Fenced blocks (shell-ish ones) and inline code spans."""
    segs = [body for lang, body in FENCE.findall(text) if lang in ("", "bash", "sh", "shell", "console")]
    prose = FENCE.sub("", text)
    return segs + INLINE.findall(prose)


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))


def test_my_docs_exist():
    for name in MY_DOCS:
        assert (REPO_ROOT / "docs" / name).is_file(), name


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_make_commands_are_makefile_targets(doc):
    used = set()
    for seg in code_segments(doc.read_text()):
        used |= set(re.findall(r"(?:^|[\s;|&(])make ([a-z][a-z0-9-]*)", seg, flags=re.M))
    assert used <= make_targets(), f"{doc.name}: unknown make targets {sorted(used - make_targets())}"


def _lakehouse_commands() -> dict[str, set[str] | None]:
    """Command -> its options; None for pass-through commands (psql, airflow),
    whose unknown options go to the wrapped program."""
    group = typer.main.get_command(lakehouse_app)
    return {
        name: None if cmd.context_settings.get("ignore_unknown_options") else {o for p in cmd.params for o in getattr(p, "opts", [])}
        for name, cmd in group.commands.items()
    }


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_lakehouse_cli_commands_exist(doc):
    commands = _lakehouse_commands()
    for seg in code_segments(doc.read_text()):
        for m in re.finditer(r"\.venv/bin/lakehouse ([a-z-]+)((?: --?[a-z-]+(?: [\w-]+)?)*)", seg):
            assert m.group(1) in commands, f"{doc.name}: no `lakehouse {m.group(1)}`"
            if commands[m.group(1)] is None:
                continue
            for opt in re.findall(r"(--?[a-z-]+)", m.group(2)):
                assert opt in commands[m.group(1)] | {"--help"}, f"{doc.name}: `lakehouse {m.group(1)}` has no {opt}"


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_python_modules_run(doc):
    for seg in code_segments(doc.read_text()):
        for line in seg.splitlines():
            m = re.search(r"\.venv/bin/python -m ([\w.]+)([^|#]*)", line)
            if not m:
                continue
            module, args = m.group(1), shlex.split(m.group(2))
            assert importlib.util.find_spec(module), f"{doc.name}: no module {module}"
            if module == "lakehouse.dashboard":  # prints SQL; needs no running stack
                res = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO_ROOT)
                assert res.returncode == 0 and "SELECT" in res.stdout, f"{doc.name}: {line}\n{res.stderr}"


def _heredocs(text: str) -> list[str]:
    return re.findall(r"\.venv/bin/python -[^\n]*<<'EOF'\n(.*?)^EOF$", text, flags=re.M | re.S)


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_python_snippets_compile_and_import_real_names(doc):
    for src in _heredocs(doc.read_text()):
        tree = ast.parse(src)  # a SyntaxError fails the test
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(mod, alias.name), f"{doc.name}: {node.module} has no {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
        for method in re.findall(r"\bdt\.(\w+)\(", src):  # DeltaTable methods used
            from deltalake import DeltaTable

            assert hasattr(DeltaTable, method), f"{doc.name}: DeltaTable has no {method}()"


SETTING_PREFIXES = ("PG_", "KAFKA_", "STREAM_", "STREAMS_", "PRODUCER_", "AIRFLOW_", "GRAFANA_",
                    "LAKEHOUSE_", "SPARK_", "BROKER_", "REALTIME_")
NOT_SETTINGS = {"LAKEHOUSE_GRAFANA_DASHBOARDS"}  # set by the launcher/compose for Grafana's provisioning


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_settings_named_in_docs_exist(doc):
    fields = {f.upper() for f in Settings.model_fields}
    named = set()
    for seg in code_segments(doc.read_text()):
        named |= {n for n in re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", seg) if n.startswith(SETTING_PREFIXES)}
    named = {n for n in named if "__" not in n and not n.endswith("_")} - NOT_SETTINGS  # PRODUCER_*: a family
    assert named <= fields, f"{doc.name}: not settings {sorted(named - fields)}"


def _openapi_paths() -> set[str]:
    import airflow

    root = Path(airflow.__file__).parent / "api_fastapi"
    paths = set()
    for spec in root.rglob("*.yaml"):
        paths |= set(re.findall(r"^  (/[^\s:]+):\s*$", spec.read_text(), flags=re.M))
    return paths


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_airflow_api_paths_exist(doc):
    used = set(re.findall(r"[\"`(](/(?:api/v2|auth)/[\w/{}.-]*)", doc.read_text()))
    if not used:
        return
    known = _openapi_paths()
    for path in used:
        pattern = re.sub(r"lakehouse_bronze_to_gold", "{dag_id}", path.rstrip("/"))
        assert pattern in known, f"{doc.name}: Airflow has no API path {path}"


def _slug(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_links_resolve(doc):
    text = FENCE.sub("", doc.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), f"{doc.name}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{doc.name}: no heading #{anchor} in {path.name}"


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_supervisorctl_programs_exist(doc, tmp_path):
    from lakehouse.platform.services import services
    from tests.conftest import make_settings

    names = {s.name for s in services(make_settings(tmp_path / "run"))}
    for seg in code_segments(doc.read_text()):
        for action, prog in re.findall(r"supervisorctl -c \.run/supervisord\.conf (start|stop|restart) ([\w-]+)", seg):
            assert prog in names, f"{doc.name}: no program {prog} (programs: {sorted(names)})"


TEST_REF = re.compile(r"(tests/test_\w+\.py)::(\w+)")


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_named_tests_exist(doc):
    """Every `tests/<file>.py::<test>` a doc names is a test function of that file."""
    missing = []
    for path, name in set(TEST_REF.findall(doc.read_text())):
        file = REPO_ROOT / path
        tree = ast.parse(file.read_text()) if file.is_file() else None
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)} if tree else set()
        if name not in names:
            missing.append(f"{path}::{name}")
    assert not missing, f"{doc.name} names tests that do not exist: {sorted(missing)}"


def _index_section() -> str:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    start = text.index("## Every table: where it is defined")
    return text[start:text.index("\n## ", start + 1)]


def test_every_table_is_in_the_architecture_index():
    """Every Delta table of the catalogue and every PostgreSQL table or view of
    sql/*.sql has a row (with its defining file and a test) in docs/architecture.md."""
    from lakehouse import catalog

    index = _index_section()
    rows = {line for line in index.splitlines() if line.startswith("| `")}
    delta = set(catalog.TABLES)
    sql = set()
    for f in (REPO_ROOT / "sql").glob("*.sql"):
        sql |= set(re.findall(r"CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW|VIEW|TABLE) (\w+\.\w+)",
                              f.read_text(), flags=re.I))
    assert len(delta) >= 8 and len(sql) >= 11
    for name in sorted(delta | sql):
        row = [r for r in rows if f"`{name}`" in r.split(" | ")[0]]
        assert row, f"{name} is not in the table index of docs/architecture.md"
        assert TEST_REF.search(row[0]), f"{name}: no test named"
        for path in re.findall(r"`((?:lakehouse|sql|dags|spark_jobs)/[\w/.*]+)`", row[0]):
            assert list(REPO_ROOT.glob(path)), f"{name}: {path} does not exist"
