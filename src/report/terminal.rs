//! A compact terminal summary of an [`AnalysisReport`]: the verdict, the deciding
//! metrics, one line per metric. Coloured (ANSI) only when asked, which the binary does
//! when stdout is a terminal (`std::io::IsTerminal`); plain text otherwise, so logs and
//! pipes get no escape codes.

use crate::domain::Verdict;
use std::fmt::Write as _;

use super::analysis::{AnalysisReport, SideRow, TimelineEvent};
use crate::format::{number, p_value, percent};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";

/// Renders the summary; `colour` adds ANSI colours.
pub fn render(report: &AnalysisReport, colour: bool) -> String {
    let paint = |text: &str, code: &str| {
        if colour {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    };
    let tone = |word: &str| match word {
        "promote" | "pass" => GREEN,
        "rollback" | "fail" => RED,
        _ => YELLOW,
    };
    let mut out = String::new();
    let verdict = report.banner.verdict.map_or("none", Verdict::as_str);
    let _ = writeln!(
        out,
        "{}  {}",
        paint(
            &format!("VERDICT: {}", verdict.to_uppercase()),
            &format!("{BOLD}{}", tone(verdict))
        ),
        report.banner.headline
    );
    for sentence in &report.banner.deciding_metrics {
        let _ = writeln!(out, "  - {sentence}");
    }
    // With no metric to blame (a trigger, a hold timeout, a person), the first reason
    // says why.
    if report.banner.deciding_metrics.is_empty()
        && let Some(reason) = report.banner.reasons.first()
    {
        let _ = writeln!(out, "  - {reason}");
    }
    rollout_lines(&mut out, report, &paint);
    if report.metrics.is_empty() {
        return out;
    }
    let centre = |side: &Option<SideRow>| {
        side.as_ref().map_or_else(
            || "-".to_owned(),
            |s| match (s.total, s.median, s.mean) {
                (Some(_), _, Some(rate)) => percent(rate),
                (None, Some(median), _) => number(median),
                (_, _, Some(mean)) => number(mean),
                _ => "-".to_owned(),
            },
        )
    };
    let rows: Vec<[String; 6]> = report
        .metrics
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.classification.clone(),
                centre(&m.baseline),
                // A threshold compares one statistic of the canary with its limits.
                match &m.threshold {
                    Some(threshold) => format!(
                        "{} {}",
                        threshold.statistic,
                        threshold.value.map_or_else(|| "-".to_owned(), number)
                    ),
                    None => centre(&m.canary),
                },
                match &m.threshold {
                    Some(threshold) => [("min", threshold.min), ("max", threshold.max)]
                        .into_iter()
                        .filter_map(|(word, limit)| limit.map(|l| format!("{word} {}", number(l))))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => m.effect.clone().unwrap_or_else(|| "-".to_owned()),
                },
                m.adjusted_p_value
                    .or(m.p_value)
                    .map_or_else(|| "-".to_owned(), |p| p_value(p, None)),
            ]
        })
        .collect();
    let header = [
        "metric", "result", "baseline", "canary", "effect", "p (adj.)",
    ]
    .map(str::to_owned);
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 6], paint_result: bool| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let padded = format!("{cell:<width$}");
            if index == 1 && paint_result {
                text.push_str(&paint(&padded, tone(cell)));
            } else {
                text.push_str(&padded);
            }
            text.push_str("  ");
        }
        text.trim_end().to_owned()
    };
    let _ = writeln!(out, "\n{}", line(&header, false));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row, true));
    }
    out
}

/// For a rollout: the looks and the flag's path in one line, and every trigger that
/// fired.
fn rollout_lines(out: &mut String, report: &AnalysisReport, paint: &dyn Fn(&str, &str) -> String) {
    let looks = report
        .timeline
        .iter()
        .filter(|event| matches!(event, TimelineEvent::Look { .. }))
        .count();
    if looks == 0 {
        return;
    }
    let flag: Vec<String> = report
        .timeline
        .iter()
        .filter_map(|event| match event {
            TimelineEvent::Actuation { action, target, .. } if action == "kill" => {
                Some(format!("{}% (kill)", number(*target)))
            }
            TimelineEvent::Actuation { target, .. } => Some(format!("{}%", number(*target))),
            _ => None,
        })
        .collect();
    let _ = writeln!(
        out,
        "  looks: {looks}    flag: {}",
        match (flag.is_empty(), report.subject.dry_run) {
            (true, _) => "unchanged".to_owned(),
            // A dry run records the changes it would have made and makes none.
            (false, true) => format!("unchanged (dry run; would have gone {})", flag.join(" → ")),
            (false, false) => flag.join(" → "),
        }
    );
    for event in &report.timeline {
        if let TimelineEvent::Look { look, triggers, .. } = event {
            for trigger in triggers.iter().filter(|t| t.met) {
                let _ = writeln!(
                    out,
                    "  {} at look {look}: \"{}\" → {}: {}",
                    paint("trigger fired", RED),
                    trigger.name,
                    trigger.action,
                    trigger.reason
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::analysis::{Banner, Subject};

    fn report() -> AnalysisReport {
        AnalysisReport {
            report_schema_version: 1,
            subject: Subject {
                analysis_id: None,
                profile: "p".to_owned(),
                flag: None,
                state: "analyzed".to_owned(),
                dry_run: true,
                created_at: None,
                updated_at: None,
                confidence_level: None,
                multiple_comparisons: None,
            },
            banner: Banner {
                verdict: Some(Verdict::Rollback),
                headline: "Verdict: ROLLBACK".to_owned(),
                score: None,
                reasons: Vec::new(),
                deciding_metrics: vec!["error_rate 2% vs 0.4% baseline".to_owned()],
            },
            timeline: Vec::new(),
            metrics: Vec::new(),
            history: Vec::new(),
        }
    }

    #[test]
    fn a_rollout_summary_shows_the_flag_path_and_the_triggers_that_fired() {
        use crate::report::analysis::TriggerRow;
        let trigger = |name: &str, met: bool| TriggerRow {
            name: name.to_owned(),
            metric: "error_rate".to_owned(),
            met,
            action: "rollback".to_owned(),
            value: Some(0.031),
            limit: Some(0.02),
            reason: "canary above 0.02 for 120 s of the required 2m".to_owned(),
        };
        let mut report = report();
        report.subject.dry_run = false;
        report.banner.deciding_metrics.clear();
        report.banner.reasons = vec!["trigger \"errors\" fired".to_owned()];
        let look = |look: u64, triggers: Vec<TriggerRow>| TimelineEvent::Look {
            at: 0.0,
            look,
            stage_index: 0,
            stage: "1%".to_owned(),
            traffic: Some(1.0),
            verdict: Verdict::Promote,
            decision: "continue".to_owned(),
            reasons: Vec::new(),
            triggers,
        };
        let actuation = |action: &str, target: f64| TimelineEvent::Actuation {
            at: 0.0,
            action: action.to_owned(),
            target,
            state: "applied".to_owned(),
            detail: None,
        };
        report.timeline = vec![
            actuation("set_rollout", 1.0),
            look(1, vec![trigger("quiet", false)]),
            actuation("set_rollout", 5.0),
            look(2, vec![trigger("errors", true), trigger("quiet", false)]),
            actuation("kill", 0.0),
        ];
        let plain = render(&report, false);
        assert!(plain.contains("  - trigger \"errors\" fired\n"), "{plain}");
        assert!(
            plain.contains("looks: 2    flag: 1% → 5% → 0% (kill)"),
            "{plain}"
        );
        assert!(
            plain.contains(
                "trigger fired at look 2: \"errors\" → rollback: canary above 0.02 for 120 s"
            ),
            "{plain}"
        );
        assert!(!plain.contains("\"quiet\""), "only fired triggers: {plain}");

        report.subject.dry_run = true;
        let plain = render(&report, false);
        assert!(
            plain.contains(
                "looks: 2    flag: unchanged (dry run; would have gone 1% → 5% → 0% (kill))"
            ),
            "issue 12: {plain}"
        );
    }

    #[test]
    fn plain_output_has_no_escape_codes_and_coloured_output_has_them() {
        let plain = render(&report(), false);
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("VERDICT: ROLLBACK"));
        assert!(render(&report(), true).contains("\x1b[31m"));
    }
}
