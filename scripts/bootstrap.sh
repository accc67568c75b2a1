#!/usr/bin/env bash
# Sets up what `make up`, `make test` and `make bench` need, only when it is
# missing or stale: Debian packages (Java 17, Maven, PostgreSQL server
# binaries, and Chromium for the browser test), .venv from requirements.lock,
# then the JVM artifacts of jvm/pom.xml into .jvm/ (Kafka broker, Spark's
# Kafka connector, delta-spark), and Spark's class-data archive (.jvm/spark-classes.jsa).
# After the first run nothing needs the network.
# Usage: scripts/bootstrap.sh [--tests | --with-browser]   (--tests: kcat for the quick tier;
# --with-browser: kcat and Chromium, for make test)
set -euo pipefail
cd "$(dirname "$0")/.."
# One setup of a checkout at a time (`make up` in one terminal, `make test` in
# another): two would replace each other's half-made .venv and .jvm, and a
# stamp would then vouch for what one of them removed. flock(1), util-linux.
exec 9>>.setup.lock
if ! flock -n 9; then
  printf '[setup] another setup of this checkout is running; waiting for it to finish\n'
  flock 9
fi

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
# What a running stack of this checkout (make up) has loaded is not replaced
# under it: its programs would go on with other files beneath them, and `make
# up` would then find it "already running". Its own CLI tells (status: 0 =
# running, 3 = not).
not_under_running_stack() {  # $1: what changed, $2: what setup would replace
  if [ -x .venv/bin/lakehouse ] && .venv/bin/lakehouse status >/dev/null 2>&1; then
    die "$1 changed, and the stack of this checkout is running on $2: stop it first (make down; its data is kept), then run this again"
  fi
}

# --- Debian packages -------------------------------------------------------
need=()
java_ok() { command -v java >/dev/null 2>&1 && java -version 2>&1 | grep -Eq 'version "(17|21)\.'; }
java_ok || [ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ] || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql-15)
if [ "${1:-}" = "--with-browser" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ "${1:-}" = "--with-browser" ] || [ "${1:-}" = "--tests" ]; then
  # Debian's librdkafka command-line client: the broker interoperability test (quick tier too)
  command -v kcat >/dev/null 2>&1 || need+=(kcat)
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
  not_under_running_stack "requirements.lock (or pyproject.toml)" ".venv"
  # A .venv left half-made (an interrupted first run) is made again, never used.
  if [ -e .venv ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
    say "removing an incomplete .venv"; rm -rf .venv
  fi
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PYTHON" -m venv .venv || die "python -m venv failed; install python3-venv"
  fi
  # uv installs into this environment only (named as a directory and as the active venv).
  export VIRTUAL_ENV="$PWD/.venv"
  # uv trusts the certificates the system trusts, as pip and Maven do: behind a
  # proxy with its own CA (installed system-wide), uv's built-in roots refuse
  # PyPI ("invalid peer certificate: UnknownIssuer") unless SSL_CERT_FILE is set.
  export UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}
  [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q "uv==$UV_VERSION" || die "could not install uv from PyPI"
  say "installing pinned dependencies from requirements.lock (first run: about a minute, 1.9 GB)"
  # Byte-compiled at install: without .pyc files (uv writes none by default, and
  # PYTHONDONTWRITEBYTECODE is often set) every process compiles its imports
  # again; importing Airflow, PySpark and GE took 12.8 s instead of 5.7 s.
  # From uv's cache when it holds every pinned package (no network after the first setup).
  .venv/bin/uv pip sync --python "$VIRTUAL_ENV" --compile-bytecode --offline -q requirements.lock 2>/dev/null \
    || .venv/bin/uv pip sync --python "$VIRTUAL_ENV" --compile-bytecode -q requirements.lock || die "dependency install failed"
  .venv/bin/uv pip install --python "$VIRTUAL_ENV" -q --no-deps --offline -e . 2>/dev/null \
    || .venv/bin/uv pip install --python "$VIRTUAL_ENV" -q --no-deps -e . || die "installing the lakehouse package failed"
  .venv/bin/python scripts/compile_pyspark_zip.py || die "byte-compiling pyspark.zip failed"
  echo "$stamp_want" > .venv/.lakehouse-stamp
  say "environment ready"
fi

# --- JVM artifacts (jvm/pom.xml) ---------------------------------------------
# Each profile of the pom is copied into .jvm/<profile>/ by Maven itself, with
# checksums enforced (-C); re-resolved only when the pom (or this recipe) changes.
JVM_RECIPE=1
jvm_want=$( (cat jvm/pom.xml; echo "$JVM_RECIPE") | sha256sum | cut -c1-16)
jvm_have=$(cat .jvm/.lakehouse-stamp 2>/dev/null || true)
if [ "$jvm_want" != "$jvm_have" ]; then
  not_under_running_stack "jvm/pom.xml" "the jars in .jvm"
  rm -rf .jvm.partial && mkdir -p .jvm.partial
  for profile in kafka spark; do
    say "resolving JVM artifacts: $profile (jvm/pom.xml; first run downloads from Maven Central)"
    log=.jvm.partial/mvn-$profile.log
    set +o pipefail
    mvn -B -C -f jvm/pom.xml -P "$profile" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$PWD/.jvm.partial/$profile" 2>&1 | tee "$log" \
      | { grep --line-buffered -Eo 'Downloaded from [^:]+: [^ ]+\.jar' | sed -u 's#.*/#[setup]   downloaded #'; true; }
    rc=${PIPESTATUS[0]}
    set -o pipefail
    if [ "$rc" -ne 0 ]; then
      what=$(grep -Eo '(artifacts? could not be resolved|Could not (find|transfer) artifact|Could not resolve dependencies)[^:]*: *[^ ]+' "$log" | head -1 || true)
      die "Maven could not resolve the $profile artifacts${what:+ ($what)}; check access to Maven Central (or a mirror in ~/.m2/settings.xml) and rerun; full log: $log"
    fi
    say "  $profile: $(ls .jvm.partial/$profile/*.jar | wc -l) jars"
  done
  rm -rf .jvm && mv .jvm.partial .jvm
  echo "$jvm_want" > .jvm/.lakehouse-stamp
  say "JVM artifacts ready in .jvm/ ($(du -sh .jvm | cut -f1))"
fi

# --- Spark's class-data archive (lakehouse/spark_classes.py) ----------------------
# The classes Spark's JVMs load at start, parsed and verified once: every Spark
# JVM then starts and runs its first jobs with a third less CPU. Made again after
# the venv (pyspark) or the JVM artifacts change; Spark runs without it if this fails.
if [ ! -s .jvm/spark-classes.jsa ] || [ .venv/.lakehouse-stamp -nt .jvm/spark-classes.jsa ] \
   || [ .jvm/.lakehouse-stamp -nt .jvm/spark-classes.jsa ]; then
  say "archiving the classes Spark loads (class-data sharing; about a minute)"
  .venv/bin/python -m lakehouse.spark_classes 2>&1 | grep '^\[setup\]' \
    || say "warning: no class-data archive made; Spark's JVMs start without it (run: .venv/bin/python -m lakehouse.spark_classes)"
fi
