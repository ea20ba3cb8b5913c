//! The HTML report: one self-contained file (inline CSS and inline SVG; no scripts,
//! no fonts or anything else fetched) from an [`AnalysisReport`] and, when the raw
//! series are at hand (`canary analyze`), their [`ChartData`].
//!
//! Every string that a user or a data file controls (flag, profile, metric names,
//! reasons, actors) goes through [`escape`]; the page is written by hand rather than
//! through a template engine because it is one page with a few loops.

use crate::domain::Verdict;
use std::fmt::Write as _;

use super::analysis::{
    AnalysisReport, ChartData, MetricHistory, MetricRow, SideRow, TimelineEvent, TriggerRow,
};
use super::chart::{self, BASELINE, CANARY, Line, MAX_POINTS, Mark};
use crate::format::{confidence_percent, count, duration, number, p_value, percent, signed};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:16px 24px}
h1{font-size:1.4em;margin:0 0 4px}
h2{font-size:1.15em;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1em;margin:18px 0 4px}
.banner{padding:16px 20px;border-radius:6px;color:#fff;margin:12px 0}
.banner.promote{background:#1b7f3b}.banner.rollback{background:#b3261e}.banner.hold{background:#a15c00}.banner.none{background:#555}
.banner ul{margin:8px 0 0 18px;padding:0}
.meta{color:#555;font-size:.9em}
table{border-collapse:collapse;width:100%;font-size:.8em;background:#fff}
.wide{overflow-x:auto}
td.ci{white-space:normal;min-width:7em}
th,td{border:1px solid #ddd;padding:3px 5px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
tr.why td{border-top:none;color:#333;padding-bottom:8px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pass{color:#1b7f3b;font-weight:600}.fail{color:#b3261e;font-weight:700}.inconclusive,.error{color:#a15c00;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.charts figure{margin:0;background:#fff;border:1px solid #eee;padding:4px;max-width:530px}
figcaption{font-size:.8em;color:#555}
svg{max-width:100%;height:auto}
.key-b{color:#1f6fb4;font-weight:600}.key-c{color:#e06c00;font-weight:600}.key-l{color:#c01010;font-weight:600}.key-r{color:#7b1fa2;font-weight:600}
tr.trigger td{font-size:.95em;color:#333;border-top:none}tr.trigger.fired td{background:#fdecea}
.fired-word{color:#b3261e;font-weight:700}.clear-word{color:#1b7f3b}
.no-chart{color:#777;font-style:italic}
"#;

/// The report as one HTML document.
pub fn render(report: &AnalysisReport, charts: &ChartData) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let subject = &report.subject;
    let title = match &subject.flag {
        Some(flag) => format!("Canary report: {flag}"),
        None => format!("Canary report: profile {}", subject.profile),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>\n",
        escape(&title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(&title));
    let mut meta = vec![format!("profile {}", escape(&subject.profile))];
    if let Some(id) = &subject.analysis_id {
        meta.push(format!("analysis {}", escape(id)));
    }
    meta.push(format!(
        "state {}",
        escape(&subject.state.replace('_', " "))
    ));
    if subject.dry_run && subject.analysis_id.is_some() {
        meta.push("dry run (the flag was never changed)".to_owned());
    }
    if let Some(level) = subject.confidence_level {
        meta.push(format!(
            "{}% confidence per metric",
            confidence_percent(level)
        ));
    }
    if let Some(correction) = &subject.multiple_comparisons {
        meta.push(format!("{} correction", escape(correction)));
    }
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", meta.join(" · "));

    banner(&mut out, report);
    metric_table(&mut out, report);
    timeline(&mut out, report);
    metric_charts(&mut out, report, charts);
    out.push_str("</main></body></html>\n");
    out
}

fn banner(out: &mut String, report: &AnalysisReport) {
    let banner = &report.banner;
    let class = banner.verdict.map_or("none", Verdict::as_str);
    let verdict = banner.verdict.map_or_else(
        || "NO VERDICT YET".to_owned(),
        |verdict| verdict.as_str().to_uppercase(),
    );
    let _ = write!(
        out,
        "<section class=\"banner {class}\" id=\"verdict\"><h1>Verdict: {}</h1><div>{}",
        escape(&verdict),
        escape(&banner.headline)
    );
    if let Some(score) = banner.score {
        let _ = write!(out, " · score {}", number(score));
    }
    out.push_str("</div>");
    if !banner.deciding_metrics.is_empty() {
        out.push_str("<ul class=\"deciding\">");
        for sentence in &banner.deciding_metrics {
            let _ = write!(out, "<li>{}</li>", escape(sentence));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>\n");
    if !banner.reasons.is_empty() {
        out.push_str("<h2>Why</h2><ol class=\"reasons\">");
        for reason in &banner.reasons {
            let _ = write!(out, "<li>{}</li>", escape(reason));
        }
        out.push_str("</ol>\n");
    }
}

fn side_value(
    side: &Option<SideRow>,
    pick: impl Fn(&SideRow) -> Option<f64>,
    rate: bool,
) -> String {
    side.as_ref().and_then(pick).map_or_else(
        || "–".to_owned(),
        |v| if rate { percent(v) } else { number(v) },
    )
}

fn metric_table(out: &mut String, report: &AnalysisReport) {
    out.push_str("<h2>Metrics (latest look)</h2>\n");
    if report.metrics.is_empty() {
        out.push_str("<p>No look has been taken yet.</p>\n");
        return;
    }
    let level = report.subject.confidence_level.map_or_else(
        || "CI".to_owned(),
        |l| format!("{}% CI", confidence_percent(l)),
    );
    let _ = writeln!(
        out,
        "<div class=\"wide\"><table class=\"metrics\"><thead><tr><th>metric</th><th>result</th><th>severity</th>\
         <th>baseline n</th><th>canary n</th><th>baseline mean</th><th>canary mean</th>\
         <th>baseline median</th><th>canary median</th><th>baseline p95</th><th>canary p95</th>\
         <th>effect size</th><th>p-value</th><th>adjusted p</th><th>shift [{level}]</th>\
         </tr></thead><tbody>"
    );
    for metric in &report.metrics {
        metric_row(out, metric);
    }
    out.push_str("</tbody></table></div>\n");
}

fn metric_row(out: &mut String, metric: &MetricRow) {
    let rate = metric
        .baseline
        .as_ref()
        .or(metric.canary.as_ref())
        .is_some_and(|s| s.total.is_some());
    let n = |side: &Option<SideRow>| side.as_ref().map_or_else(|| "–".to_owned(), |s| count(s.n));
    let dash = || "–".to_owned();
    let class = escape(&metric.classification);
    let _ = writeln!(
        out,
        "<tr class=\"metric\"><td>{name}</td><td class=\"{class}\">{class}</td><td>{severity}</td>\
         <td class=\"num\">{bn}</td><td class=\"num\">{cn}</td><td class=\"num\">{bmean}</td>\
         <td class=\"num\">{cmean}</td><td class=\"num\">{bmed}</td><td class=\"num\">{cmed}</td>\
         <td class=\"num\">{bp95}</td><td class=\"num\">{cp95}</td><td>{effect}</td>\
         <td class=\"num\">{p}</td><td class=\"num\">{adjusted}</td>\
         <td class=\"num ci\">{shift}</td></tr>\
         <tr class=\"why\"><td></td><td colspan=\"14\">{why}</td></tr>",
        name = escape(&metric.name),
        severity = escape(&metric.severity),
        bn = n(&metric.baseline),
        cn = n(&metric.canary),
        bmean = side_value(&metric.baseline, |s| s.mean, rate),
        cmean = side_value(&metric.canary, |s| s.mean, rate),
        bmed = side_value(&metric.baseline, |s| s.median, false),
        cmed = side_value(&metric.canary, |s| s.median, false),
        bp95 = side_value(&metric.baseline, |s| s.p95, false),
        cp95 = side_value(&metric.canary, |s| s.p95, false),
        effect = metric.effect.as_deref().map_or_else(dash, escape),
        p = metric.p_value.map_or_else(dash, |p| p_value(p, None)),
        adjusted = metric
            .adjusted_p_value
            .map_or_else(dash, |p| p_value(p, None)),
        shift = match (metric.shift_estimate, metric.shift_ci) {
            (Some(shift), Some([low, high])) => {
                format!("{}<br>[{}, {}]", signed(shift), signed(low), signed(high))
            }
            (Some(shift), None) => signed(shift),
            _ => dash(),
        },
        why = escape(&metric.reason),
    );
}

fn clock(at: f64, start: f64) -> String {
    format!("+{}", duration((at - start).max(0.0)))
}

fn timeline(out: &mut String, report: &AnalysisReport) {
    if report.timeline.is_empty() {
        return;
    }
    // Times count from the first event, not from the submission: a replayed analysis
    // runs on the recording's clock, which can be long before it was submitted.
    let start = report
        .timeline
        .iter()
        .map(TimelineEvent::at)
        .fold(f64::INFINITY, f64::min);
    out.push_str(
        "<h2>Timeline</h2><table class=\"timeline\"><thead><tr><th>time</th><th>event</th>\
         <th>stage</th><th>traffic</th><th>verdict</th><th>what happened</th></tr></thead><tbody>\n",
    );
    for event in &report.timeline {
        match event {
            TimelineEvent::Look {
                at,
                look,
                stage,
                traffic,
                verdict,
                decision,
                reasons,
                triggers,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "<tr><td class=\"num\">{}</td><td>look {look}</td><td>{}</td><td class=\"num\">{}</td>\
                     <td class=\"{v}\">{v}</td><td><b>{}</b>{}</td></tr>",
                    clock(*at, start),
                    escape(stage),
                    traffic.map_or_else(|| "–".to_owned(), |t| format!("{}%", number(t))),
                    escape(decision),
                    reasons
                        .first()
                        .map_or_else(String::new, |r| format!(": {}", escape(r))),
                    v = verdict.as_str(),
                );
                for trigger in triggers {
                    trigger_row(out, trigger);
                }
            }
            TimelineEvent::Actuation {
                at,
                action,
                target,
                state,
                detail,
            } => {
                let _ = writeln!(
                    out,
                    "<tr><td class=\"num\">{}</td><td>flag change</td><td></td><td class=\"num\">{}%</td>\
                     <td></td><td>{} → {}% ({}){}</td></tr>",
                    clock(*at, start),
                    number(*target),
                    escape(action),
                    number(*target),
                    escape(state),
                    detail
                        .as_deref()
                        .map_or_else(String::new, |d| format!(": {}", escape(d))),
                );
            }
            TimelineEvent::Manual {
                at,
                actor,
                action,
                reason,
                from_state,
                to_state,
            } => {
                let _ = writeln!(
                    out,
                    "<tr class=\"manual\"><td class=\"num\">{}</td><td>manual {}</td><td></td><td></td><td></td>\
                     <td>by <b>{}</b>: “{}” ({} → {})</td></tr>",
                    clock(*at, start),
                    escape(action),
                    escape(actor),
                    escape(reason),
                    escape(from_state),
                    escape(to_state),
                );
            }
        }
    }
    out.push_str("</tbody></table>\n");
}

/// One trigger's check under its look: fired or not, the value against the limit, why.
fn trigger_row(out: &mut String, trigger: &TriggerRow) {
    let (class, word) = if trigger.met {
        (
            "trigger fired",
            format!(
                "<span class=\"fired-word\">FIRED → {}</span>",
                escape(&trigger.action)
            ),
        )
    } else {
        (
            "trigger clear",
            "<span class=\"clear-word\">not met</span>".to_owned(),
        )
    };
    let value = match (trigger.value, trigger.limit) {
        (Some(value), Some(limit)) => format!("{} vs limit {}: ", number(value), number(limit)),
        (Some(value), None) => format!("{}: ", number(value)),
        (None, Some(limit)) => format!("no value vs limit {}: ", number(limit)),
        (None, None) => String::new(),
    };
    let _ = writeln!(
        out,
        "<tr class=\"{class}\"><td></td><td>trigger</td><td colspan=\"3\">{} <span class=\"meta\">({})</span></td>\
         <td>{word} · {value}{}</td></tr>",
        escape(&trigger.name),
        escape(&trigger.metric),
        escape(&trigger.reason),
    );
}

/// The labelled limits of a metric: absolute thresholds (red) and the limits it sets
/// relative to the baseline (purple, dashed).
fn marks(metric: &MetricRow) -> Vec<Mark> {
    let mut marks = Vec::new();
    if let Some(threshold) = &metric.threshold {
        for (word, value) in [("min", threshold.min), ("max", threshold.max)] {
            if let Some(value) = value {
                marks.push(Mark {
                    value,
                    label: format!("{} {word} {}", threshold.statistic, number(value)),
                    relative: false,
                });
            }
        }
    }
    for limit in &metric.relative_limits {
        marks.push(Mark {
            value: limit.limit,
            label: limit.label(),
            relative: true,
        });
    }
    marks
}

/// The baseline and canary lines of one chart, in their colours.
fn sides<'a>(baseline: &'a [(f64, f64)], canary: &'a [(f64, f64)], steps: bool) -> [Line<'a>; 2] {
    [
        Line {
            points: baseline,
            colour: BASELINE,
            steps,
        },
        Line {
            points: canary,
            colour: CANARY,
            steps,
        },
    ]
}

fn metric_charts(out: &mut String, report: &AnalysisReport, charts: &ChartData) {
    if report.metrics.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Charts</h2><p class=\"meta\"><span class=\"key-b\">■ baseline</span> \
         <span class=\"key-c\">■ canary</span> <span class=\"key-l\">■ threshold</span> \
         <span class=\"key-r\">╌ limit relative to the baseline (latest look)</span> · \
         lines are downsampled for drawing; the table's numbers are exact.</p>\n",
    );
    for metric in &report.metrics {
        let limits = marks(metric);
        let _ = write!(
            out,
            "<section class=\"metric-charts\"><h3>{} <span class=\"{c}\">{c}</span></h3><div class=\"charts\">",
            escape(&metric.name),
            c = escape(&metric.classification)
        );
        let history = report.history.iter().find(|h| h.name == metric.name);
        match charts.get(&metric.name) {
            Some(raw) => {
                let start = raw
                    .baseline
                    .iter()
                    .chain(&raw.canary)
                    .map(|p| p.0)
                    .fold(f64::INFINITY, f64::min);
                let shift = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
                    chart::downsample(points, MAX_POINTS)
                        .into_iter()
                        .map(|(t, v)| (t - start, v))
                        .collect()
                };
                let baseline = shift(&raw.baseline);
                let canary = shift(&raw.canary);
                figure(
                    out,
                    &chart::draw(
                        &sides(&baseline, &canary, false),
                        &[],
                        &limits,
                        "seconds since the first point",
                    ),
                    &match raw.counted {
                        Some([baseline, canary])
                            if baseline > raw.baseline.len() as u64
                                || canary > raw.canary.len() as u64 =>
                        {
                            format!(
                                "over time: {} baseline and {} canary points, drawn from \
                                 {} and {} kept by the looks (each look's minima and maxima)",
                                count(baseline),
                                count(canary),
                                count(raw.baseline.len() as u64),
                                count(raw.canary.len() as u64)
                            )
                        }
                        _ => format!(
                            "over time: {} baseline and {} canary points",
                            count(raw.baseline.len() as u64),
                            count(raw.canary.len() as u64)
                        ),
                    },
                );
                let values =
                    |points: &[(f64, f64)]| points.iter().map(|p| p.1).collect::<Vec<f64>>();
                let (baseline_cdf, canary_cdf, caption) = match &raw.distribution {
                    Some([baseline, canary]) => (
                        chart::downsample(baseline, MAX_POINTS),
                        chart::downsample(canary, MAX_POINTS),
                        "distribution: empirical CDF of every look's points (to within 2.5%)",
                    ),
                    None => (
                        chart::ecdf(&values(&raw.baseline), MAX_POINTS),
                        chart::ecdf(&values(&raw.canary), MAX_POINTS),
                        "distribution: empirical CDF",
                    ),
                };
                figure(
                    out,
                    &chart::draw(
                        &sides(&baseline_cdf, &canary_cdf, true),
                        &limits,
                        &[],
                        "value (y: share of points at or below)",
                    ),
                    caption,
                );
            }
            None => {
                if let Some(history) = history {
                    history_chart(out, history, &limits);
                }
                quantile_chart(out, metric, &limits);
            }
        }
        out.push_str("</div></section>\n");
    }
}

fn figure(out: &mut String, svg: &str, caption: &str) {
    let _ = write!(
        out,
        "<figure>{svg}<figcaption>{}</figcaption></figure>",
        escape(caption)
    );
}

fn history_chart(out: &mut String, history: &MetricHistory, limits: &[Mark]) {
    let side = |pick: fn(&super::analysis::HistoryPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        let points: Vec<(f64, f64)> = history
            .points
            .iter()
            .filter_map(|p| pick(p).map(|v| (p.look as f64, v)))
            .collect();
        chart::downsample(&points, MAX_POINTS)
    };
    let baseline = side(|p| p.baseline);
    let canary = side(|p| p.canary);
    figure(
        out,
        &chart::draw(&sides(&baseline, &canary, false), &[], limits, "look"),
        &format!("{} at each look", history.statistic),
    );
}

/// The distribution as far as the stored summaries tell it: min, median, p95, p99, max
/// as points of the CDF.
fn quantile_chart(out: &mut String, metric: &MetricRow, limits: &[Mark]) {
    let points = |side: &Option<SideRow>| -> Vec<(f64, f64)> {
        let Some(s) = side else { return Vec::new() };
        [
            (s.min, 0.0),
            (s.median, 0.5),
            (s.p95, 0.95),
            (s.p99, 0.99),
            (s.max, 1.0),
        ]
        .into_iter()
        .filter_map(|(value, share)| value.map(|v| (v, share)))
        .collect()
    };
    let baseline = points(&metric.baseline);
    let canary = points(&metric.canary);
    if baseline.is_empty() && canary.is_empty() {
        return;
    }
    figure(
        out,
        &chart::draw(
            &sides(&baseline, &canary, false),
            limits,
            &[],
            "value (y: share at or below)",
        ),
        "distribution from the stored quantiles (min, median, p95, p99, max)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_offsets_read_in_natural_units() {
        assert_eq!(clock(1_000.0, 1_000.0), "+0 s");
        assert_eq!(clock(1_090.0, 1_000.0), "+1 min 30 s");
        assert_eq!(clock(1_000.0 + 7_500.0, 1_000.0), "+2 h 5 min");
    }
}
