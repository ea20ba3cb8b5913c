#!/usr/bin/env bash
# canary's rank statistics beside scipy's and R's in one run (see
# scripts/bench_references.py). Installs python3-scipy and r-base-core when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import scipy' 2>/dev/null; then
  python3 -m pip install --quiet scipy || { apt-get update -qq && apt-get install -y -qq python3-scipy; }
fi
if ! command -v Rscript >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-base-core
fi
exec python3 scripts/bench_references.py "$@"
