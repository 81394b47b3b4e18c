#!/usr/bin/env bash
# Installs everything Weekly Wrapped needs on a fresh Debian machine, and nothing twice:
# PostgreSQL server, a Java 17 JDK and Maven, Chromium and DejaVu fonts (if missing), uv, the main virtualenv
# (.local/venv) and dbt's own virtualenv (.local/dbt-venv). Safe to re-run.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${WRAPPED_STATE_DIR:-$repo/.local}
mkdir -p "$state"
say() { printf '==> %s\n' "$*"; }

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# A JDK, not only a JRE: the consumer's parse fast path (spark/udf) is compiled on first use.
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
{ command -v runuser || [ -x /usr/sbin/runuser ]; } >/dev/null 2>&1 || missing+=(util-linux)
# The recap: its charts' font, and the browser its look tests render the e-mail in.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Use the system trust store (a TLS-intercepting proxy may sign the registry's certificates).
export UV_NATIVE_TLS=1
python=${PYTHON:-python3}
# uv goes where the machine keeps our other caches (the Spark jars), so every clone shares it.
tools=${XDG_CACHE_HOME:-$HOME/.cache}/weekly-wrapped/tools
if ! command -v uv >/dev/null 2>&1 && [ ! -x "$tools/bin/uv" ]; then
  say "installing uv (fast Python installer) into $tools"
  "$python" -m venv "$tools"
  "$tools/bin/pip" install -q uv
fi
uv=$(command -v uv || echo "$tools/bin/uv")

# A venv is rebuilt only when its requirements file (or how we install) changed.
# Bytecode is compiled at install: every Airflow task and every dbt call is a new Python
# process, and without .pyc files each one compiles its imports again (seconds of CPU each,
# and nothing is cached where PYTHONDONTWRITEBYTECODE is set).
install_venv() {  # venv_dir requirements_file [extra uv args...]
  local venv=$1 reqs=$2; shift 2
  local stamp="$venv/.requirements.sha256"
  local want; want=$({ cat "$reqs" "$repo/pyproject.toml"; echo "compileall"; } | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  say "installing $(basename "$venv") from $(basename "$reqs")"
  [ -x "$venv/bin/python" ] || "$uv" venv -q -p "$python" "$venv"
  # From uv's cache alone when it holds everything (a second clone: under a second), else from the
  # registry. Online, uv asks the registry about every package again, and pyspark, published only
  # as a source archive, is downloaded and built again whenever the registry's answer looks new.
  "$uv" pip install -q --offline -p "$venv/bin/python" -r "$reqs" "$@" 2>/dev/null ||
    "$uv" pip install -q -p "$venv/bin/python" -r "$reqs" "$@"
  "$venv/bin/python" -m compileall -q -j 0 "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
  echo "$want" > "$stamp"
}

# Both at once: most of the time goes to linking files from uv's cache, not to the CPU.
install_venv "$state/dbt-venv" "$repo/requirements-dbt.txt" &
dbt_install=$!
install_venv "$state/venv" "$repo/requirements.txt" -e "$repo"
wait "$dbt_install" || { echo "installing $state/dbt-venv failed" >&2; exit 1; }
say "ready: $state/venv (Airflow, Spark, tools) and $state/dbt-venv (dbt)"
