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

# The PostgreSQL of the SQL store's tests (marie-adapters/tests/contract.rs, in_postgres):
# MARIE_TEST_POSTGRES_URL, by default postgres://postgres@127.0.0.1:5432/postgres, trust auth.
# Reuses one that answers there; else starts the Debian cluster on 5432 if it is only down,
# else a private cluster (trust auth, 127.0.0.1, port 5432 if free or the next free one) and
# exports its URL. PostgreSQL refuses to run as root: clusters run as the postgres user.
postgres_answers() {
  PGCONNECT_TIMEOUT=3 psql "$1" -XAtqc 'select 1' >/dev/null 2>&1
}

postgres_version() {
  PGCONNECT_TIMEOUT=3 psql "$1" -XAtqc 'show server_version' 2>/dev/null
}

# Where the server binaries are: Debian keeps them out of PATH.
postgres_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
  elif command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
  fi
}

# Runs a command as the postgres user when root, as is otherwise.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_postgres() {
  for _ in $(seq 1 100); do
    postgres_answers "$1" && return 0
    sleep 0.1
  done
  return 1
}

# Starts a cluster of its own: initdb in a fresh directory, trust auth, 127.0.0.1 only.
start_private_postgres() {
  local bindir port dir url
  bindir=$(postgres_bindir)
  [ -n "$bindir" ] || die "no initdb found (apt-get install postgresql)"
  port=5432
  while port_in_use "$port"; do
    port=$((port + 1))
    [ "$port" -lt 5532 ] || die "no free port for PostgreSQL in 5432-5531"
  done
  dir=$(mktemp -d /tmp/marie-postgres.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  as_postgres "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
  as_postgres "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null ||
    die "PostgreSQL did not start: $(tail -n 5 "$dir/server.log")"
  url="postgres://postgres@127.0.0.1:$port/postgres"
  wait_for_postgres "$url" || die "PostgreSQL started in $dir but does not answer on 127.0.0.1:$port"
  export MARIE_TEST_POSTGRES_URL="$url"
  echo "postgres: started PostgreSQL $(postgres_version "$url") on 127.0.0.1:$port (data in $dir/data; stop with: $bindir/pg_ctl -D $dir/data stop)"
}

ensure_postgres() {
  local url="${MARIE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  local shown="${url%%\?*}"
  shown="${shown##*@}"
  if ! command -v psql >/dev/null || [ -z "$(postgres_bindir)" ]; then
    apt_install postgresql
  fi
  if postgres_answers "$url"; then
    echo "postgres: using the PostgreSQL $(postgres_version "$url") already running at $shown"
    export MARIE_TEST_POSTGRES_URL="$url"
    return
  fi
  [ -z "${MARIE_TEST_POSTGRES_URL:-}" ] ||
    die "MARIE_TEST_POSTGRES_URL (at $shown) does not answer (psql: $(PGCONNECT_TIMEOUT=3 psql "$url" -XAtqc 'select 1' 2>&1 | head -n 1))"
  # A Debian cluster on 5432 that is down (the machine's own, say): start it as it is.
  local cluster
  cluster=$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 && $4 != "online" { print $1, $2; exit }')
  if [ -n "$cluster" ]; then
    # shellcheck disable=SC2086 # "<version> <name>"
    pg_ctlcluster --skip-systemctl-redirect $cluster start >/dev/null 2>&1 || true
    if wait_for_postgres "$url"; then
      export MARIE_TEST_POSTGRES_URL="$url"
      echo "postgres: started the cluster $cluster, PostgreSQL $(postgres_version "$url") on 127.0.0.1:5432"
      return
    fi
    echo "postgres: the cluster $cluster does not take $url; starting a private one"
  fi
  start_private_postgres
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
