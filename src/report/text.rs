//! A plain-text report: the verdict, the reasons in order, and one table row per
//! metric with the numbers behind it.

use std::fmt::Write as _;

use crate::format::{confidence_percent, number, p_value, signed};
use crate::judge::{Classification, Judgement, MetricResult};

/// Renders the report. Plain text, no colour: it goes to terminals and CI logs alike.
pub fn render(judgement: &Judgement) -> String {
    let mut out = String::new();
    let score = judgement.score.map_or_else(|| "n/a".to_owned(), number);
    let _ = writeln!(
        out,
        "verdict: {}    score: {}    profile: {}",
        judgement.verdict.to_string().to_uppercase(),
        score,
        judgement.profile
    );
    let _ = writeln!(out, "\nreasons:");
    for (index, reason) in judgement.reasons.iter().enumerate() {
        let _ = writeln!(out, "  {}. {reason}", index + 1);
    }

    let level = confidence_percent(judgement.confidence_level);
    let header = [
        "metric".to_owned(),
        "kind".to_owned(),
        "severity".to_owned(),
        "result".to_owned(),
        "baseline n".to_owned(),
        "canary n".to_owned(),
        "baseline".to_owned(),
        "canary".to_owned(),
        "shift".to_owned(),
        format!("{level}% CI"),
        "p".to_owned(),
    ];
    let rows: Vec<[String; 11]> = judgement.metrics.iter().map(row).collect();
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let _ = writeln!(out);
    let write_row = |out: &mut String, cells: &[String; 11]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    };
    write_row(&mut out, &header);
    for row in &rows {
        write_row(&mut out, row);
    }
    let _ = writeln!(out, "\nper metric:");
    for metric in &judgement.metrics {
        let _ = writeln!(
            out,
            "  {} [{}]: {}",
            metric.name,
            classification_label(metric.classification),
            metric.reason
        );
    }
    out
}

/// The `--compare` section: the other judge's verdict, then every metric the two
/// judges classified differently (or all of them, marked), then how the profile was read
/// for the other judge.
pub fn render_comparison(
    own: &Judgement,
    comparison: &crate::judge::compare::Comparison,
) -> String {
    use crate::domain::JudgeAlgorithm;
    let (own_name, other_name) = match comparison.other_algorithm {
        JudgeAlgorithm::Kayenta => ("canary", "Kayenta"),
        JudgeAlgorithm::Canary => ("Kayenta", "canary"),
    };
    let mut out = String::new();
    let score = |score: Option<f64>| score.map_or_else(|| "-".to_owned(), number);
    let _ = writeln!(
        out,
        "\ncompared with {other_name}'s judge: {} (score {}) against {own_name}'s {} (score {}): {}",
        comparison.other_verdict.to_string().to_uppercase(),
        score(comparison.other_score),
        own.verdict.to_string().to_uppercase(),
        score(own.score),
        if comparison.same_verdict {
            "the same verdict"
        } else {
            "the verdicts DIFFER"
        }
    );
    let mut rows = vec![[
        "metric".to_owned(),
        own_name.to_owned(),
        other_name.to_owned(),
        String::new(),
    ]];
    for metric in &comparison.metrics {
        rows.push([
            metric.metric.clone(),
            classification_label(metric.own).to_owned(),
            metric.other.map_or_else(
                || "not judged".to_owned(),
                |c| classification_label(c).to_owned(),
            ),
            if metric.agree {
                String::new()
            } else {
                "differs".to_owned()
            },
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
    if !comparison.other_reasons.is_empty() {
        let _ = writeln!(out, "{other_name}'s reasons:");
        for reason in &comparison.other_reasons {
            let _ = writeln!(out, "  - {reason}");
        }
    }
    let _ = writeln!(out, "how the profile was read for {other_name}'s judge:");
    for note in &comparison.notes {
        let _ = writeln!(out, "  - {note}");
    }
    out
}

fn classification_label(classification: Classification) -> &'static str {
    match classification {
        Classification::Pass => "pass",
        Classification::Fail => "FAIL",
        Classification::Inconclusive => "inconclusive",
        Classification::Error => "ERROR",
        Classification::NotCompared => "not compared",
    }
}

fn row(metric: &MetricResult) -> [String; 11] {
    let dash = || "-".to_owned();
    let n = |side: &Option<crate::judge::SideSummary>| {
        side.as_ref().map_or_else(dash, |s| s.n.to_string())
    };
    // The central value people compare: the median for samples, the rate for counts.
    let centre = |side: &Option<crate::judge::SideSummary>| {
        side.as_ref()
            .map_or_else(dash, |s| match (s.median, s.total) {
                (_, Some(_)) => format!("{}%", number(s.mean * 100.0)),
                (Some(median), None) => number(median),
                (None, None) => number(s.mean),
            })
    };
    let canary_centre = match &metric.threshold {
        Some(check) => format!("{} {}", check.statistic, number(check.value)),
        None => centre(&metric.canary),
    };
    [
        metric.name.clone(),
        metric.kind.to_string(),
        metric.severity.to_string(),
        classification_label(metric.classification).to_owned(),
        n(&metric.baseline),
        n(&metric.canary),
        centre(&metric.baseline),
        canary_centre,
        metric.shift_estimate.map_or_else(dash, signed),
        metric.shift_ci.map_or_else(dash, |[low, high]| {
            format!("[{}, {}]", signed(low), signed(high))
        }),
        metric
            .p_value
            .map_or_else(dash, |p| p_value(p, metric.ln_p_value)),
    ]
}
