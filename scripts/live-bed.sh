#!/usr/bin/env bash
# The live test bed: the demo service (canary-demo-service), whose traffic follows a
# flag in an OpenFeature flagd flag file, scraped every second by a real Prometheus.
#
#   scripts/live-bed.sh start DIR [--flag NAME] [--rps N] [--seed N] [-- SERVICE-ARGS...]
#   scripts/live-bed.sh stop DIR
#
# Arguments after `--` go to the service as they are, e.g. `-- --metric-sets migration`
# for a seed profile's bed (README, "Seed profiles on the live bed").
# `start` copies fixtures/flags.json to DIR/flags.json, starts the service on a free
# loopback port (binary: target/release/canary-demo-service, or $CANARY_DEMO_SERVICE)
# and Prometheus on another (1 s scrape and evaluation interval, data in DIR/data,
# config DIR/prometheus.yml, logs DIR/*.log), installing the Debian package
# `prometheus` when it is missing (as scripts/test.sh does), waits for the first scrape
# (about 6 s: Prometheus 2.42 hands new targets to its scraper every 5 s), and writes
# DIR/bed.env:
#   PROMETHEUS_URL, SERVICE_URL, FLAGS (the flag file), FLAG, SERVICE_PID, PROMETHEUS_PID
# Then, for example:
#   . DIR/bed.env
#   canary run --profile fixtures/live/web-service-60s.toml --source prometheus=$PROMETHEUS_URL \
#     --flag "$FLAG" --actuator flagd-file="$FLAGS"
#   curl -X POST "$SERVICE_URL/fault" -d '{"latency_factor": 1.5}'; curl "$SERVICE_URL/state"
# `stop` stops both processes by their pids (SIGTERM, then SIGKILL after 10 s).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
job=demo-service

usage() {
  sed -n '5,6p' "$0" | sed 's/^# */usage: /' >&2
  exit 1
}

fail() {
  echo "live-bed: $*" >&2
  exit 1
}

# Stops the process with this pid if it is still the program named (pids are reused).
stop_pid() {
  local pid=$1 name=$2
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$name" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "live-bed: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

install_prometheus() {
  # As scripts/test.sh: only when missing, without recommended packages, service stopped.
  if ! { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }; then
    echo "== installing prometheus and promtool (Debian package prometheus)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if command -v service >/dev/null 2>&1; then
      service prometheus stop >/dev/null 2>&1 || true
    fi
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local dir=$1
  shift
  local flag=checkout-v2 rps=4000 seed=1
  local service_args=()
  while [ $# -gt 0 ]; do
    case $1 in
      --) shift; service_args=("$@"); break ;;
      --flag) flag=${2:?--flag needs a name}; shift 2 ;;
      --rps) rps=${2:?--rps needs a number}; shift 2 ;;
      --seed) seed=${2:?--seed needs a number}; shift 2 ;;
      *) fail "unknown option $1 (start takes --flag NAME, --rps N, --seed N, -- SERVICE-ARGS...)" ;;
    esac
  done
  local service_binary=${CANARY_DEMO_SERVICE:-$repo/target/release/canary-demo-service}
  [ -x "$service_binary" ] \
    || fail "no demo service at $service_binary: run 'cargo build --release' (or set CANARY_DEMO_SERVICE)"
  grep -q "\"$flag\"" "$repo/fixtures/flags.json" \
    || fail "fixtures/flags.json has no flag $flag"
  install_prometheus

  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/bed.env" ]; then
    # shellcheck disable=SC1091
    (. "$dir/bed.env"; kill -0 "$SERVICE_PID" 2>/dev/null || kill -0 "$PROMETHEUS_PID" 2>/dev/null) \
      && fail "a bed is already running in $dir (scripts/live-bed.sh stop $dir)"
    rm -f "$dir/bed.env"
  fi
  rm -rf "$dir/data"
  cp "$repo/fixtures/flags.json" "$dir/flags.json"

  # Globals, for the EXIT trap: whatever fails from here on, nothing is left running.
  service_pid="" prometheus_pid="" started=no
  trap 'if [ "$started" != yes ]; then stop_pid "$prometheus_pid" prometheus; stop_pid "$service_pid" canary-demo-service; fi' EXIT

  "$service_binary" --listen 127.0.0.1:0 --flags "$dir/flags.json" --flag "$flag" \
    --rps "$rps" --seed "$seed" "${service_args[@]}" >"$dir/service.out" 2>"$dir/service.log" &
  service_pid=$!
  local service_url=""
  for _ in $(seq 100); do
    service_url=$(sed -n 's/^listening on //p' "$dir/service.out")
    [ -n "$service_url" ] && break
    kill -0 "$service_pid" 2>/dev/null || fail "the demo service exited; $dir/service.log says: $(cat "$dir/service.log")"
    sleep 0.1
  done
  [ -n "$service_url" ] || fail "the demo service did not say where it listens within 10 s (see $dir/service.log)"

  cat >"$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: $job
    static_configs:
      - targets: ['${service_url#http://}']
YAML

  local port="" attempt
  for attempt in $(seq 10); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$port" \
      >/dev/null 2>>"$dir/prometheus.log" &
    prometheus_pid=$!
    for _ in $(seq 100); do
      curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break 2
      kill -0 "$prometheus_pid" 2>/dev/null || break
      sleep 0.1
    done
    stop_pid "$prometheus_pid" prometheus
    prometheus_pid=""
    echo "live-bed: prometheus did not come up on port $port (attempt $attempt); trying another" >&2
  done
  [ -n "$prometheus_pid" ] || fail "prometheus would not start; see $dir/prometheus.log"
  local prometheus_url="http://127.0.0.1:$port"

  echo "== waiting for Prometheus's first scrape of the demo service (about 6 s)"
  local scraped=no
  for _ in $(seq 200); do
    if curl -fsS -G "$prometheus_url/api/v1/query" --data-urlencode "query=up{job=\"$job\"} == 1" 2>/dev/null \
      | grep -q '"value":\[[0-9.]*,"1"\]'; then
      scraped=yes
      break
    fi
    sleep 0.1
  done
  [ "$scraped" = yes ] || fail "Prometheus did not scrape the demo service within 20 s; see $dir/prometheus.log"

  cat >"$dir/bed.env" <<ENV
PROMETHEUS_URL=$prometheus_url
SERVICE_URL=$service_url
FLAGS=$dir/flags.json
FLAG=$flag
SERVICE_PID=$service_pid
PROMETHEUS_PID=$prometheus_pid
ENV
  started=yes
  echo "live bed running in $dir:"
  sed 's/^/  /' "$dir/bed.env"
}

stop() {
  local dir=$1
  [ -f "$dir/bed.env" ] || fail "no bed in $dir (no $dir/bed.env)"
  local SERVICE_PID="" PROMETHEUS_PID=""
  # shellcheck disable=SC1091
  . "$dir/bed.env"
  stop_pid "$PROMETHEUS_PID" prometheus
  stop_pid "$SERVICE_PID" canary-demo-service
  rm -f "$dir/bed.env"
  echo "live bed in $dir stopped"
}

[ $# -ge 2 ] || usage
command=$1
shift
case $command in
  start) start "$@" ;;
  stop) [ $# -eq 1 ] || usage; stop "$1" ;;
  *) usage ;;
esac
