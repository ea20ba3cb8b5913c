#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need when it is
# missing, then runs format and lint checks, every test (unit, property, reference-value
# and the integration binary), and each benchmark once in test mode so none rots.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Rust toolchain's own checkers (present on a standard rustup install).
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" \
      || rustup component add "$component"
  done
fi

# The flagd evaluator that tests/it/flagd.rs checks written flag files with. Installed
# from the lock file, once; without node those tests skip with a notice.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/flagd/node_modules ]; then
  echo "== npm ci (tests/flagd: @openfeature/flagd-core)"
  (cd tests/flagd && npm ci --no-audit --no-fund)
fi

# unleash-server 7.4.1, which tests/it/unleash.rs starts against the PostgreSQL below
# (tests/unleash/server.mjs). Installed from the lock file, once (about 45 s); without
# node those tests skip with a notice.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/console/node_modules ]; then
  echo "== npm ci (tests/console: axe-core, the accessibility checks of the web console)"
  (cd tests/console && npm ci --no-audit --no-fund)
fi
if command -v npm >/dev/null 2>&1 && [ ! -d tests/unleash/node_modules ]; then
  echo "== npm ci (tests/unleash: unleash-server)"
  (cd tests/unleash && npm ci --no-audit --no-fund)
fi

# A real Prometheus and promtool for the integration tests (the Debian package
# `prometheus` ships both). Installed only when missing, so a warm machine stays fast;
# without recommended packages, which only add exporters. The package's service is
# not started here (policy-rc.d / no systemd), and is stopped if it was.
if ! { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }; then
  echo "== installing prometheus and promtool (Debian package prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if command -v service >/dev/null 2>&1; then
    service prometheus stop >/dev/null 2>&1 || true
  fi
fi

# The other metric stores the source tests start on loopback ports (tests/it/
# store_harness.rs): VictoriaMetrics and vmauth (Debian package victoria-metrics),
# InfluxDB 1.x (influxdb) and graphite-web with its whisper library (graphite-web,
# run by Debian's own Python 3 and Django). Installed only when missing; their
# services are not left running (they would hold the standard ports).
if ! { command -v victoria-metrics >/dev/null 2>&1 && command -v vmauth >/dev/null 2>&1 \
       && command -v influxd >/dev/null 2>&1 && [ -x /usr/bin/graphite-manage ]; }; then
  echo "== installing victoria-metrics, influxdb and graphite-web (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    victoria-metrics influxdb graphite-web >/dev/null
  if command -v service >/dev/null 2>&1; then
    service victoria-metrics stop >/dev/null 2>&1 || true
    service influxdb stop >/dev/null 2>&1 || true
  fi
fi

# moto's CloudWatch server (PyPI moto, pinned), which tests/it/cloudwatch.rs starts as
# `moto_server` on a loopback port. Installed only when missing.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto's server (pip: moto[server,cloudwatch]==5.1.22)"
  python3 -m pip install -q "moto[server,cloudwatch]==5.1.22"
  # Under pyenv the new console script needs its shim.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  hash -r
fi

# Headless Chromium, which tests/it/report.rs opens the HTML reports in (rendered text
# and a screenshot), and its ChromeDriver, through which tests/it/console.rs drives the
# web console (clicks, forms, cookies, live updates, screenshots). Installed only when
# missing; without them those checks skip with a notice.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "== installing chromium and chromium-driver (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

# PostgreSQL for the store, worker and multi-instance tests: the one on 127.0.0.1:5432
# (database `test`, trust auth) unless DATABASE_URL names another. Started when it is
# installed but not running.
if [ -z "${DATABASE_URL:-}" ] && command -v pg_isready >/dev/null 2>&1 \
   && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "== starting PostgreSQL"
  for version in /etc/postgresql/*; do
    pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
  done
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo doc (warnings are errors: broken links in the docs fail the build)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "== cargo test --lib --bins --benches (unit tests; benches run once each in test mode)"
cargo test --lib --bins --benches --locked
echo "== cargo test --test it (the integration tests but the live rollouts, below)"
cargo test --test it --locked -- --skip live_rollouts::
# Whole rollouts on the live test bed (tests/it/live_rollouts.rs): each runs a real
# `canary run` for one to six minutes against its own demo service and Prometheus, and
# mostly waits, so they run eight at a time rather than two. Not all 23 at once: on two
# cores their services, Prometheus servers and runners then starve each other of CPU,
# scrapes and looks come late, and a test of detection power (errors ×2 within one
# 60-second stage) measured the harness, not canary (it failed 1 run in 2 at 16 at
# once; 3 of 3 passed three at a time).
#
# Several of them measure statistical power in compressed time (a fault detected, or a
# trigger proven, within one 20- to 60-second stage), so on a loaded machine one may miss
# now and then: in four full runs on 2026-12-06, one missed errors ×2 within its stage
# and one missed a 20-second stage's hold trigger (it rolled back at the next stage
# instead). A live rollout that fails is run once more on its own; the suite fails if it
# fails again, and a pass on the retry is printed as FLAKY, never hidden.
echo "== cargo test --test it live_rollouts:: (whole rollouts on the live test bed, 8 at a time)"
live_log=$(mktemp)
if ! cargo test --test it --locked live_rollouts:: -- --test-threads 8 2>&1 | tee "$live_log"; then
  failed=$(grep -E '^test live_rollouts::.* \.\.\. FAILED$' "$live_log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
  if [ -z "$failed" ]; then
    echo "the live rollouts failed before any test did (see above)"
    exit 1
  fi
  for name in $failed; do
    echo "== once more, on its own: $name"
    cargo test --test it --locked "$name" -- --exact "$name"
  done
  echo "FLAKY live rollouts (failed in the parallel run, passed on their own):" $failed
fi
rm -f "$live_log"
