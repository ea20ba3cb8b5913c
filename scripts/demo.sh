#!/usr/bin/env bash
# The main job on the embedded default: `canary analyze` on the recorded scenarios in
# fixtures/scenarios/ with the web-service profile. Prints each verdict and the full
# report of one rollback; exits 0 when every verdict matches the scenario's expectation.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet || exit 1
bin=target/release/canary
status=0
for dir in fixtures/scenarios/*/; do
  name=$(basename "$dir")
  baseline=$(ls "$dir"baseline.* | head -n 1)
  canary=$(ls "$dir"canary.* | head -n 1)
  "$bin" analyze --profile analysis-profiles/web-service.toml \
    --baseline "$baseline" --canary "$canary" --format json > /tmp/canary-demo.json
  code=$?
  verdict=$(grep -m1 '"verdict"' /tmp/canary-demo.json | sed 's/.*: "\(.*\)".*/\1/')
  expected=$(grep -m1 '"verdict"' "$dir/expected.json" | sed 's/.*: "\(.*\)".*/\1/')
  mark=ok; [ "$verdict" = "$expected" ] || { mark="UNEXPECTED (wanted $expected)"; status=1; }
  printf '%-28s exit %d  %-9s %s\n' "$name" "$code" "$verdict" "$mark"
done
echo
echo "== canary analyze on fixtures/scenarios/error-spike"
"$bin" analyze --profile analysis-profiles/web-service.toml \
  --baseline fixtures/scenarios/error-spike/baseline.csv \
  --canary fixtures/scenarios/error-spike/canary.csv
echo "(exit code $?: 0 promote, 2 hold, 3 rollback, 1 error)"
exit $status
