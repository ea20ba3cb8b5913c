#!/usr/bin/env bash
# Measures the rollback latency (kill() until the flag reads off) of the Unleash and
# flagd-file actuators: starts a real unleash-server 7.4.1 (tests/unleash/server.mjs,
# the one the integration tests use) on a free loopback port over a temporary
# PostgreSQL database, runs `cargo bench --bench actuation` against it, then stops the
# server and drops the database.
#
# Needs node, psql and the PostgreSQL the tests use (127.0.0.1:5432, trust auth,
# database `test`; or DATABASE_URL). Extra arguments go to `cargo bench`, e.g.
#   scripts/bench-unleash.sh --profile dev      # skip the optimised build
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d tests/unleash/node_modules ]; then
  echo "== npm ci (tests/unleash: unleash-server)"
  (cd tests/unleash && npm ci --no-audit --no-fund)
fi

admin_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
database="canary_unleash_bench_$$"
database_url="${admin_url%/*}/$database"
token='*:*.canary-bench-admin-token'
port="$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
log="$(mktemp -t canary-unleash-bench.XXXXXX.log)"
server_pid=""

cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

psql -q "$admin_url" -c "CREATE DATABASE $database" >/dev/null
UNLEASH_TEST_DATABASE_URL="$database_url" UNLEASH_TEST_PORT="$port" \
  UNLEASH_TEST_ADMIN_TOKEN="$token" NODE_NO_WARNINGS=1 \
  node tests/unleash/server.mjs >"$log" 2>&1 &
server_pid=$!

echo "== waiting for unleash-server on 127.0.0.1:$port"
for _ in $(seq 1 600); do
  if curl -fs -o /dev/null "http://127.0.0.1:$port/health"; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "unleash-server exited; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$port/health" || { echo "unleash-server did not start; its log:" >&2; cat "$log" >&2; exit 1; }

echo "== cargo bench --bench actuation $*"
CANARY_BENCH_UNLEASH_URL="http://127.0.0.1:$port" CANARY_UNLEASH_TOKEN="$token" \
  cargo bench --bench actuation "$@"
