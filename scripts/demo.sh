#!/usr/bin/env bash
# The main job on the embedded default: two staged rollouts driven by `canary run` on
# recorded series (fixtures/replay/), moving real flags in an OpenFeature flagd flag file
# (a copy of fixtures/flags.json in target/demo/). One canary is healthy and is promoted
# 1 → 5 → 25 → 50 → 100 %; the other slows down at the 25 % stage and is rolled back.
# Then `canary analyze` judges one recorded scenario and prints its full report.
# Exits 0 when every outcome is the expected one.
set -uo pipefail
cd "$(dirname "$0")/.."
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
