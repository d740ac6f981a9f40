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

# Says which Redis the tests use: its address, version, and whether this script started it.
redis_version() {
  redis-cli -h 127.0.0.1 -p 6379 info server | tr -d '\r' | sed -n 's/^redis_version://p'
}

ensure_redis() {
  # The restart test (marie-adapters/tests/restart.rs) runs a private redis-server.
  command -v redis-server >/dev/null || apt_install redis-server
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    echo "redis: using the Redis $(redis_version) already running on 127.0.0.1:6379"
    return
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do
    if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
      echo "redis: started Redis $(redis_version) on 127.0.0.1:6379 ($(command -v redis-server))"
      return
    fi
    sleep 0.1
  done
  die "redis-server did not answer on 127.0.0.1:6379"
}

# C libraries that crates of the workspace build against: openssl-sys (through the
# rust_socketio test client's TLS) finds OpenSSL with pkg-config.
ensure_build_packages() {
  local missing=()
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  pkg-config --exists openssl || die "pkg-config cannot find OpenSSL after installing libssl-dev"
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
# (marie-bench/node) and the seed's Flask-SocketIO on eventlet (marie-bench/seed,
# in a virtualenv under the target dir; MARIE_BENCH_SEED_PYTHON names its python).
ensure_bench_comparisons() {
  ensure_node
  (cd marie-bench/node && npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci failed in marie-bench/node"
  command -v python3 >/dev/null || apt_install python3
  local venv="${CARGO_TARGET_DIR:-$PWD/target}/bench-seed-venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$venv" || die "cannot create a Python virtualenv at $venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r marie-bench/seed/requirements.txt ||
    die "pip could not install marie-bench/seed/requirements.txt"
  export MARIE_BENCH_SEED_PYTHON="$venv/bin/python"
}
