#!/usr/bin/env bash
# The live benchmark (issue 12's targets): whole compressed rollouts of
# fixtures/live/web-service-60s.toml on the live test bed (scripts/live-bed.sh: the demo
# service at 4,000 requests/s whose traffic follows the flag file, scraped every second
# by a real Prometheus), each on a bed of its own, several at once.
#
#   scripts/bench-live.sh [--runs N] [--parallel P] [--scenarios LIST]
#
# Scenarios (comma-separated; default: all):
#   healthy     no fault: must promote, the flag ENABLED at 100 %
#   errors10    error rate ×10 on the canary once the flag reaches 25 %
#   latency15   latency ×1.5 on the canary once the flag reaches 25 %
#   errors2     error rate ×2 on the canary once the flag reaches 25 %
#   tails       latency spread ×1.5 (same median) once the flag reaches 25 %
#   dryrun      healthy, with --dry-run: the flag file's bytes must never change
#
# Prints one line per run and a table: outcomes, the flag's final state, and for the
# faults the time from the fault's onset to the service seeing the flag off (the
# service's own clock, /state). Builds the release binaries first. Runs are kept in
# target/bench-live/. Needs curl and python3 (for the table).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=20
parallel=5
scenarios="healthy,errors10,latency15,errors2,tails,dryrun"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--parallel P] [--scenarios LIST]" >&2; exit 1 ;;
  esac
done

cargo build --release --locked --quiet --bins
out=target/bench-live
rm -rf "$out"
mkdir -p "$out"

fault_for() {
  case "$1" in
    errors10) echo '{"error_factor": 10}' ;;
    latency15) echo '{"latency_factor": 1.5}' ;;
    errors2) echo '{"error_factor": 2}' ;;
    tails) echo '{"tail_spread": 1.5}' ;;
    *) echo "" ;;
  esac
}

# One rollout on a bed of its own; appends a JSON line to $out/results.jsonl.
one() {
  local scenario=$1 run=$2
  local dir="$out/$scenario-$run"
  mkdir -p "$dir"
  if ! scripts/live-bed.sh start "$dir" --seed "$((run * 7 + ${#scenario}))" >"$dir/bed.log" 2>&1; then
    echo "{\"scenario\":\"$scenario\",\"run\":$run,\"error\":\"the bed did not start\"}" >>"$out/results.jsonl"
    return
  fi
  # shellcheck disable=SC1091
  . "$dir/bed.env"
  local extra=()
  [ "$scenario" = dryrun ] && extra=(--dry-run)
  local before
  before=$(sha256sum "$FLAGS" | cut -d' ' -f1)
  target/release/canary run --profile fixtures/live/web-service-60s.toml \
    --source "prometheus=$PROMETHEUS_URL" --flag "$FLAG" --actuator "flagd-file=$FLAGS" \
    --format json "${extra[@]}" >"$dir/run.json" 2>"$dir/run.err" &
  local canary_pid=$!
  local fault
  fault=$(fault_for "$scenario")
  if [ -n "$fault" ]; then
    while kill -0 "$canary_pid" 2>/dev/null; do
      if curl -fsS "$SERVICE_URL/state" | grep -q '"canary_percent":25.0'; then
        curl -fsS -X POST -H 'content-type: application/json' -d "$fault" "$SERVICE_URL/fault" >"$dir/fault.json"
        break
      fi
      sleep 0.2
    done
  fi
  local code=0
  wait "$canary_pid" || code=$?
  # The service re-reads the flag file every 100 ms: let it see canary's last change.
  sleep 1
  curl -fsS "$SERVICE_URL/state" >"$dir/state.json" || echo '{}' >"$dir/state.json"
  local after
  after=$(sha256sum "$FLAGS" | cut -d' ' -f1)
  python3 - "$scenario" "$run" "$code" "$dir" "$before" "$after" "$FLAG" >"$dir/result.json" <<'EOF'
import json, sys
scenario, run, code, directory, before, after, flag = sys.argv[1:]
state = json.load(open(f"{directory}/state.json"))
flags = json.load(open(f"{directory}/flags.json"))
print(json.dumps({
    "scenario": scenario, "run": int(run), "exit": int(code),
    "flag_state": flags["flags"][flag].get("state"),
    "canary_percent": state.get("canary_percent"),
    "onset_to_off": state.get("fault_onset_to_flag_off_seconds"),
    "file_changed": before != after,
    "path": [c["canary_percent"] for c in state.get("changes", [])],
}))
EOF
  scripts/live-bed.sh stop "$dir" >/dev/null 2>&1 || true
  cat "$dir/result.json" >>"$out/results.jsonl"
  cat "$dir/result.json"
}

jobs_list=()
IFS=, read -r -a chosen <<<"$scenarios"
for scenario in "${chosen[@]}"; do
  for run in $(seq 1 "$runs"); do
    jobs_list+=("$scenario $run")
  done
done

running=0
for job in "${jobs_list[@]}"; do
  # shellcheck disable=SC2086
  one $job &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

python3 - "$out/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
def quantile(values, q):
    values = sorted(values)
    if not values:
        return None
    k = max(0, min(len(values) - 1, int(round(q * (len(values) - 1)))))
    return values[k]
print()
print("| scenario | runs | promoted (exit 0) | rolled back (exit 3) | held (exit 2) | errors | flag at the end | onset → off p50 / p95 / max |")
print("|---|---|---|---|---|---|---|---|")
for scenario in dict.fromkeys(r["scenario"] for r in rows):
    mine = [r for r in rows if r["scenario"] == scenario]
    count = lambda code: sum(1 for r in mine if r.get("exit") == code)
    errors = sum(1 for r in mine if "error" in r or r.get("exit") not in (0, 2, 3))
    flags = {}
    for r in mine:
        key = f'{r.get("flag_state")} {r.get("canary_percent")} %'
        if scenario == "dryrun":
            key = "file changed" if r.get("file_changed") else "file unchanged"
        flags[key] = flags.get(key, 0) + 1
    times = [r["onset_to_off"] for r in mine if r.get("onset_to_off") is not None]
    timing = " / ".join(f"{t:.1f} s" for t in (quantile(times, 0.5), quantile(times, 0.95), max(times))) if times else "–"
    print(f"| {scenario} | {len(mine)} | {count(0)} | {count(3)} | {count(2)} | {errors} | "
          + ", ".join(f"{k}: {v}" for k, v in flags.items()) + f" | {timing} |")
EOF
