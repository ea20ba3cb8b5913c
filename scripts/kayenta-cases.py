#!/usr/bin/env python3
"""Extracts Kayenta's own judge test cases into JSON fixtures for canary's
`algorithm = "kayenta"` parity tests.

Usage: scripts/kayenta-cases.py KAYENTA_CHECKOUT > fixtures/kayenta/classifier_cases.json

Reads kayenta-judge's ClassifierSuite.scala (every Mann-Whitney classifier test: its
data, classifier parameters, classify arguments and asserted label / critical flag)
kayenta-judge's ScorerSuite.scala (group weights, metric labels, expected
summary score) and kayenta-mannwhitney's MannWhitneySuite.scala (interval and estimate cases). Only
test data and expected values are taken; they are Apache-2.0 licensed (Netflix).
"""
import json
import re
import subprocess
import sys

ROOT = sys.argv[1]
CLASSIFIER = "kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ClassifierSuite.scala"
SCORER = "kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ScorerSuite.scala"
MANN_WHITNEY = "kayenta-mannwhitney/src/test/scala/com/netflix/kayenta/mannwhitney/MannWhitneySuite.scala"


def read(path):
    return subprocess.run(["git", "-C", ROOT, "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


def tests(text):
    starts = [m for m in re.finditer(r'test\("([^"]+)"\)\s*\{', text)]
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        yield match.group(1), text[match.end():end]


def number(token):
    token = token.strip()
    if token in ("Double.NaN", "NaN"):
        return None  # JSON has no NaN: null stands for it
    return float(token)


def array(body, name):
    match = re.search(rf"val {name}\s*=\s*Array(?:\[Double\])?\(([^)]*)\)", body)
    if not match:
        return None
    inner = match.group(1).strip()
    return [number(t) for t in inner.split(",") if t.strip()]


def classifier_cases():
    cases, skipped = [], []
    for name, body in tests(read(CLASSIFIER)):
        ctor = re.search(r"new MannWhitneyClassifier\(([^()]*(?:\([^()]*\)[^()]*)*)\)", body, re.S)
        if not ctor:
            skipped.append(name)
            continue
        args = ctor.group(1)
        def arg(key, default):
            m = re.search(rf"{key}\s*=\s*([0-9.]+)", args)
            return float(m.group(1)) if m else default
        def pair(key):
            m = re.search(rf"{key}\s*=\s*\(([0-9.]+),\s*([0-9.]+)\)", args)
            return [float(m.group(1)), float(m.group(2))] if m else [1.0, 1.0]
        measure = "cles" if '"cles"' in args else "mean_ratio"
        call = re.search(r"classify\(([^)]*)\)", body).group(1)
        direction = re.search(r"MetricDirection\.(\w+)", call)
        label = re.search(r"result\.classification\s*==\s*(\w+)", body)
        critical = None
        if re.search(r"assert\(result\.critical\)", body):
            critical = True
        if re.search(r"assert\(!result\.critical\)", body):
            critical = False
        case = {
            "name": name,
            "experiment": array(body, "experimentData"),
            "control": array(body, "controlData"),
            "tolerance": arg("tolerance", 0.25),
            "confidence_level": arg("confLevel", 0.95),
            "effect_thresholds": pair("effectSizeThresholds"),
            "critical_thresholds": pair("criticalThresholds"),
            "measure": measure,
            "direction": (direction.group(1).lower() if direction else "either"),
            "nan_strategy": "replace" if "NaNStrategy.Replace" in call else "remove",
            "critical": "isCriticalMetric = true" in call,
            "data_required": "isDataRequired = true" in call,
            "expected_label": label.group(1) if label else None,
            "expected_critical": critical,
            "expects_reason": "reason should not be empty" in body,
        }
        if case["experiment"] is None or case["control"] is None:
            skipped.append(name)
            continue
        cases.append(case)
    return cases, skipped


def mann_whitney_cases():
    cases = []
    for name, body in tests(read(MANN_WHITNEY)):
        if "mannWhitneyUTest" not in body:
            continue
        experiment = array(body, "experimentData") or array(body, "experiment")
        control = array(body, "controlData") or array(body, "control")
        level = re.search(r"confidenceLevel\s*=\s*([0-9.]+)", body)
        values = re.findall(r"assertEquals\(([^,]+),\s*result\.(confidenceInterval\.head|confidenceInterval\.last|estimate),\s*([^)]+)\)", body)
        named = dict(re.findall(r"val (r\w+)\s*=\s*(-?[0-9.E-]+)", body))
        expected = {}
        for value, field, tolerance in values:
            value = named.get(value.strip(), value.strip())
            key = {"confidenceInterval.head": "low", "confidenceInterval.last": "high", "estimate": "estimate"}[field]
            expected[key] = {"value": float(value), "tolerance": float(tolerance.strip()) if tolerance.strip() != "E" else 1e-6}
        cases.append({"name": name, "experiment": experiment, "control": control,
                      "confidence_level": float(level.group(1)) if level else 0.95,
                      "expected": expected})
    return cases


def scorer_cases():
    cases = []
    for name, body in tests(read(SCORER)):
        weights = dict((g, float(w)) for g, w in re.findall(r'"([^"]+)"\s*->\s*([0-9.]+)', body))
        metrics = {}
        for var, block in re.findall(r"val (\w+)\s*=\s*CanaryAnalysisResult\.builder\(\)(.*?)\.build\(\)", body, re.S):
            metrics[var] = {
                "label": re.search(r"\.classification\((\w+)\.toString\)", block).group(1),
                "groups": re.findall(r'"([^"]+)"', re.search(r"\.groups\(([^)]*\))", block).group(1)),
                "critical": ".critical(true)" in block,
                "muted": ".muted(true)" in block,
            }
        scored = re.search(r"score\(List\(([^)]*)\)\)", body)
        expected = re.search(r"summaryScore\s*===?\s*([0-9.]+)", body)
        if not (scored and expected):
            continue
        cases.append({"name": name, "weights": weights,
                      "metrics": [metrics[v.strip()] for v in scored.group(1).split(",")],
                      "expected_score": float(expected.group(1))})
    return cases


if __name__ == "__main__":
    classifier, skipped = classifier_cases()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    json.dump({
        "source": f"spinnaker/kayenta@{commit}",
        "license": "Apache-2.0 (test data and expected values of Kayenta's own test suites)",
        "classifier_skipped": skipped,
        "classifier": classifier,
        "mann_whitney": mann_whitney_cases(),
        "scorer": scorer_cases(),
    }, sys.stdout, indent=1)
    print()
