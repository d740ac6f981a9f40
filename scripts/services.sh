# What the tests and the benchmarks need on the machine, installed or started when missing.
# Sourced by scripts/test, scripts/bench and .ci/run (bash, set -euo pipefail).

say() { printf '\n== %s\n' "$*"; }
die() { printf '%s: %s\n' "$0" "$*" >&2; exit 1; }

apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*; install it yourself and re-run"
  if [ -z "${MARIE_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    export MARIE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  # The restart test (crates/marie-adapters/tests/restart.rs) runs a private redis-server.
  command -v redis-server >/dev/null || apt_install redis-server
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    return
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && return
    sleep 0.1
  done
  die "redis-server did not answer on 127.0.0.1:6379"
}

ensure_chromium() {
  export CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
  [ -x "$CHROMIUM_BIN" ] || apt_install chromium
  [ -x "$CHROMIUM_BIN" ] || die "no Chromium at $CHROMIUM_BIN"
}

ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "the e2e tests need Node.js >= 20 (found $(node --version))"
}

# The servers the benchmark's idle scenario compares MARIE with: Node socket.io
# (crates/marie-bench/node) and the seed's Flask-SocketIO on eventlet (crates/marie-bench/seed,
# in a virtualenv under the target dir; MARIE_BENCH_SEED_PYTHON names its python).
ensure_bench_comparisons() {
  ensure_node
  (cd crates/marie-bench/node && npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci failed in crates/marie-bench/node"
  command -v python3 >/dev/null || apt_install python3
  local venv="${CARGO_TARGET_DIR:-$PWD/target}/bench-seed-venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$venv" || die "cannot create a Python virtualenv at $venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r crates/marie-bench/seed/requirements.txt ||
    die "pip could not install crates/marie-bench/seed/requirements.txt"
  export MARIE_BENCH_SEED_PYTHON="$venv/bin/python"
}
