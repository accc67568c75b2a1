#!/usr/bin/env bash
# Sets up what `make up`, `make test` and `make bench` need, only when it is
# missing or stale: Debian packages (Java 17, PostgreSQL server binaries, and
# Chromium for the browser test), then .venv from requirements.lock.
# Usage: scripts/bootstrap.sh [--with-browser]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------
need=()
java_ok() { command -v java >/dev/null 2>&1 && java -version 2>&1 | grep -Eq 'version "(17|21)\.'; }
java_ok || [ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ] || need+=(openjdk-17-jre-headless)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql-15)
if [ "${1:-}" = "--with-browser" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    die "missing ${need[*]} and no root or sudo to install them; install them with apt-get and rerun"; fi
  command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get; install them by hand and rerun"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || die "apt-get update failed; check the package mirror and rerun"
  # policy-rc.d stops Debian's postinst from starting its own cluster on 5432.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" || die "apt-get install ${need[*]} failed"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# --- Python virtualenv -----------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null \
  || die "Python 3.11 is required (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
# The stamp covers what the venv is built from, and how (bump VENV_RECIPE when the steps change).
VENV_RECIPE=2
stamp_want=$( (cat requirements.lock pyproject.toml; echo "$VENV_RECIPE") | sha256sum | cut -c1-16)
stamp_have=$(cat .venv/.lakehouse-stamp 2>/dev/null || true)
if [ "$stamp_want" != "$stamp_have" ]; then
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PYTHON" -m venv .venv || die "python -m venv failed; install python3-venv"
  fi
  [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q "uv==$UV_VERSION" || die "could not install uv from PyPI"
  say "installing pinned dependencies from requirements.lock (first run: about a minute, 1.6 GB)"
  # Byte-compiled at install: without .pyc files (uv writes none by default, and
  # PYTHONDONTWRITEBYTECODE is often set) every process compiles its imports
  # again; importing Airflow, PySpark and GE took 12.8 s instead of 5.7 s.
  .venv/bin/uv pip sync --python .venv/bin/python --compile-bytecode requirements.lock || die "dependency install failed"
  .venv/bin/uv pip install --python .venv/bin/python -q --no-deps -e . || die "installing the lakehouse package failed"
  .venv/bin/python scripts/compile_pyspark_zip.py || die "byte-compiling pyspark.zip failed"
  echo "$stamp_want" > .venv/.lakehouse-stamp
  say "environment ready"
fi
