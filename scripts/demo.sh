#!/usr/bin/env bash
# The main job on the embedded default: two staged rollouts driven by `canary run` on
# recorded series (fixtures/replay/), moving real flags in an OpenFeature flagd flag file
# (a copy of fixtures/flags.json in target/demo/). One canary is healthy and is promoted
# 1 → 5 → 25 → 50 → 100 %; the other slows down at the 25 % stage and is rolled back.
# Then `canary analyze` judges one recorded scenario and prints its full report.
# Exits 0 when every outcome is the expected one.
#
# `scripts/demo.sh --live` runs two real, compressed rollouts instead (about ten
# minutes): the live test bed (scripts/live-bed.sh: the demo service scraped by a real
# Prometheus) in target/demo-live/, `canary run` with fixtures/live/web-service-60s.toml
# on a healthy canary (expected: promoted, flag at 100 %), then again with a fault
# (latency ×1.5, errors ×10) injected on the canary once the flag reaches 25 %
# (expected: rolled back, flag off), printing how long the flag took to go off.
# CANARY_LIVE_PROFILE=FILE runs both with another profile, e.g.
# fixtures/live/kayenta-web-service-60s.toml (the same plan judged as Kayenta judges).
set -uo pipefail
cd "$(dirname "$0")/.."

live_demo() {
  cargo build --release --locked --quiet || exit 1
  local bin=target/release/canary bed=target/demo-live
  local profile=${CANARY_LIVE_PROFILE:-fixtures/live/web-service-60s.toml}
  local status=0 code
  scripts/live-bed.sh start "$bed" --flag checkout-v2 || exit 1
  trap "scripts/live-bed.sh stop '$bed'" EXIT
  # shellcheck disable=SC1091
  . "$bed/bed.env"
  echo "== letting Prometheus collect 20 s of scrapes (canary's preflight needs a full 15 s rate window)"
  sleep 20

  echo
  echo "== canary run, live: a healthy canary (five 60-second stages; about 5 minutes)"
  "$bin" run --profile "$profile" --source "prometheus=$PROMETHEUS_URL" \
    --flag checkout-v2 --actuator "flagd-file=$FLAGS"
  code=$?
  echo "(exit code $code: 0 promote, 2 hold, 3 rollback, 1 error; expected 0)"
  echo "flag now: $(flag_summary)"
  [ "$code" = 0 ] || { echo "UNEXPECTED: wanted exit code 0"; status=1; }

  echo
  echo "== canary run, live: the canary gets slower (×1.5) and fails 10× more once the flag reaches 25 %"
  reset_flag_file "$FLAGS"
  echo "(flag file reset to fixtures/flags.json; waiting 15 s so no rate window reaches back into the first run)"
  sleep 15
  inject_fault_at_25_percent &
  local injector=$!
  "$bin" run --profile "$profile" --source "prometheus=$PROMETHEUS_URL" \
    --flag checkout-v2 --actuator "flagd-file=$FLAGS"
  code=$?
  kill "$injector" 2>/dev/null || true
  wait "$injector" 2>/dev/null || true
  echo "(exit code $code: 0 promote, 2 hold, 3 rollback, 1 error; expected 3)"
  echo "flag now: $(flag_summary)"
  local state
  state=$(curl -fsS "$SERVICE_URL/state")
  echo "fault onset to flag off, as the service saw it: $(json_number "$state" fault_onset_to_flag_off_seconds) s"
  [ "$code" = 3 ] || { echo "UNEXPECTED: wanted exit code 3"; status=1; }
  echo "$state" | grep -q '"flag_state":"DISABLED"' || { echo "UNEXPECTED: the flag is not off"; status=1; }
  exit $status
}

# The first value of a numeric (or null) JSON field, without jq.
json_number() {
  echo "$1" | grep -o "\"$2\":[-0-9.e]*\(null\)\?" | head -1 | cut -d: -f2
}

flag_summary() {
  local state
  # The service re-reads the flag file every 100 ms; a change canary made just now may
  # not be seen yet.
  sleep 0.5
  state=$(curl -fsS "$SERVICE_URL/state") || { echo "unknown (/state did not answer)"; return; }
  echo "$(echo "$state" | grep -o '"flag_state":"[A-Za-z]*"' | head -1 | cut -d'"' -f4)," \
    "canary $(json_number "$state" canary_percent) % of traffic"
}

# Puts the flag file back as fixtures/flags.json has it (atomically, as flagd wants).
reset_flag_file() {
  cp fixtures/flags.json "$1.tmp" && mv "$1.tmp" "$1"
}

# Polls /state; once the canary has 25 % of traffic, POSTs the fault and says so.
inject_fault_at_25_percent() {
  local percent answer
  while true; do
    percent=$(json_number "$(curl -fsS "$SERVICE_URL/state" 2>/dev/null)" canary_percent)
    if [ -n "$percent" ] && awk -v p="$percent" 'BEGIN { exit !(p >= 25) }'; then
      answer=$(curl -fsS -X POST "$SERVICE_URL/fault" \
        -d '{"track": "canary", "latency_factor": 1.5, "error_factor": 10}')
      echo ">> fault injected at $percent % (onset $(json_number "$answer" onset_at)): latency ×1.5, errors ×10 on the canary"
      return
    fi
    sleep 0.2
  done
}

if [ "${1:-}" = "--live" ]; then
  live_demo
fi

cargo build --release --locked --quiet || exit 1
bin=target/release/canary
mkdir -p target/demo
cp fixtures/flags.json target/demo/flags.json
status=0

rollout() {
  local flag=$1 replay=$2 expected_code=$3
  echo "== canary run: flag $flag on fixtures/replay/$replay (30 minutes of rollout replayed at 180x)"
  "$bin" run --profile analysis-profiles/web-service.toml \
    --source "replay=fixtures/replay/$replay" \
    --flag "$flag" --actuator flagd-file=target/demo/flags.json --speed 180
  local code=$?
  echo "(exit code $code: 0 promote, 2 hold, 3 rollback, 1 error)"
  [ "$code" = "$expected_code" ] || { echo "UNEXPECTED: wanted exit code $expected_code"; status=1; }
  echo
}

rollout checkout-v2 healthy 0
rollout search-v3 latency-regression 3

echo "== target/demo/flags.json afterwards (dark-mode untouched)"
cat target/demo/flags.json
echo

echo "== canary analyze on fixtures/scenarios/error-spike"
"$bin" analyze --profile analysis-profiles/web-service.toml \
  --baseline fixtures/scenarios/error-spike/baseline.csv \
  --canary fixtures/scenarios/error-spike/canary.csv
code=$?
echo "(exit code $code)"
[ "$code" = 3 ] || status=1
exit $status
