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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test --all-targets (benches run once each in test mode)"
cargo test --all-targets --locked
