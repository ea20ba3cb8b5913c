#!/usr/bin/env python3
"""canary's rank statistics beside scipy's and R's, measured in one run.

Runs `cargo bench --bench stats` (the `p-value + interval` and `sort pooled` rows), then
times, on lognormal samples of the same sizes:

- scipy: `scipy.stats.mannwhitneyu(canary, baseline)` on NumPy arrays (p-value only; scipy has no
  Hodges-Lehmann interval), with its default method and, below 50 per side, with
  `method="exact"`;
- R: `wilcox.test(canary, baseline, conf.int = TRUE)` (p-value, estimate and interval).

and prints a Markdown table of the medians and the ratios, with the load average before
and after. Each reference is timed as the median of several repetitions of a batch of
calls (Python's `timeit`, R's `system.time`), so interpreter start-up is not counted.

Usage: scripts/bench-references.sh (installs python3-scipy and r-base-core when missing).
"""

import json
import math
import os
import random
import statistics
import subprocess
import sys
import timeit
from pathlib import Path

SIZES = [10, 36, 49, 50, 100, 1_000, 10_000]
ROOT = Path(__file__).resolve().parent.parent


def lognormal(seed, n, log_mean):
    rng = random.Random(seed)
    return [math.exp(log_mean + 0.5 * rng.gauss(0.0, 1.0)) for _ in range(n)]


def canary_medians():
    """Runs the criterion benchmark; returns {(row, size): median seconds}."""
    subprocess.run(
        [
            "cargo", "bench", "--locked", "--bench", "stats", "--",
            "--warm-up-time", "1", "--measurement-time", "3",
            r"rank_statistics/(sort pooled|p-value \+ interval)/",
        ],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    medians = {}
    base = ROOT / "target" / "criterion" / "rank_statistics"
    for row in ["sort pooled", "p-value + interval"]:
        for size in SIZES:
            estimates = base / row / str(size) / "new" / "estimates.json"
            with open(estimates) as file:
                medians[(row, size)] = json.load(file)["median"]["point_estimate"] / 1e9
    return medians


def time_per_call(statement, budget=0.3):
    """Median seconds per call of `statement` (a callable) over 7 batches."""
    timer = timeit.Timer(statement)
    calls, elapsed = timer.autorange()
    calls = max(1, int(calls * budget / max(elapsed, 1e-9)))
    return statistics.median(t / calls for t in timer.repeat(repeat=7, number=calls))


def scipy_medians():
    import numpy
    from scipy.stats import mannwhitneyu

    medians = {}
    for size in SIZES:
        # NumPy arrays, as a scipy user passes them (lists cost a conversion per call).
        baseline = numpy.array(lognormal(1, size, 4.0))
        canary = numpy.array(lognormal(2, size, 4.05))
        medians[("auto", size)] = time_per_call(lambda: mannwhitneyu(canary, baseline))
        if size < 50:
            medians[("exact", size)] = time_per_call(
                lambda: mannwhitneyu(canary, baseline, method="exact")
            )
    return medians


R_PROGRAM = r"""
sizes <- as.integer(strsplit(Sys.getenv("SIZES"), ",")[[1]])
set.seed(3)
for (n in sizes) {
  baseline <- exp(4.0 + 0.5 * rnorm(n))
  canary <- exp(4.05 + 0.5 * rnorm(n))
  # A batch long enough to time, repeated 5 times; the median per call.
  once <- system.time(wilcox.test(canary, baseline, conf.int = TRUE))[["elapsed"]]
  calls <- max(1L, as.integer(0.3 / max(once, 1e-4)))
  per_call <- sapply(1:5, function(i) {
    system.time(for (k in seq_len(calls)) wilcox.test(canary, baseline, conf.int = TRUE))[["elapsed"]] / calls
  })
  cat(n, median(per_call), "\n")
}
"""


def r_medians():
    output = subprocess.run(
        ["Rscript", "-e", R_PROGRAM],
        env={**os.environ, "SIZES": ",".join(map(str, SIZES))},
        check=True, capture_output=True, text=True,
    ).stdout
    return {int(n): float(t) for n, t in (line.split() for line in output.splitlines())}


def duration(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def main():
    load_before = os.getloadavg()
    canary = canary_medians()
    scipy = scipy_medians()
    r = r_medians()
    load_after = os.getloadavg()
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
          f"{os.cpu_count()} CPUs; scipy and R as installed here")
    print()
    print("| per side | canary p + 95 % interval | × canary's sort of the pooled values "
          "| scipy p only (default) | canary faster by | scipy exact | canary faster by "
          "| R `wilcox.test(conf.int = TRUE)` | canary faster by |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        ours = canary[("p-value + interval", size)]
        sort = canary[("sort pooled", size)]
        auto = scipy[("auto", size)]
        exact = scipy.get(("exact", size))
        cells = [
            f"{size:,}",
            duration(ours),
            f"{ours / sort:.1f}×",
            duration(auto),
            f"{auto / ours:.1f}×",
            duration(exact) if exact else "—",
            f"{exact / ours:.1f}×" if exact else "—",
            duration(r[size]),
            f"{r[size] / ours:,.0f}×",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
