//! The HTML report: one self-contained file (inline CSS and inline SVG; no scripts,
//! no fonts or anything else fetched) from an [`AnalysisReport`] and, when the raw
//! series are at hand (`canary analyze`), their [`ChartData`].
//!
//! The page is a `maud` template: markup is checked when the crate compiles and every
//! value spliced into it is escaped unless it is marked as markup (`PreEscaped`: the
//! style sheet and the SVG charts, which [`chart`] builds from numbers and escaped
//! labels). Text that a user or a data file controls (flag, profile, metric names,
//! reasons, actors) is spliced as [`Text`], which escapes `'` too, as the report
//! always has.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::analysis::{
    AnalysisReport, ChartData, MetricHistory, MetricRow, SideRow, TimelineEvent, TriggerRow,
};
use super::chart::{self, BASELINE, CANARY, Line, MAX_POINTS, Mark};
use super::markup::Text;
use crate::domain::Verdict;
use crate::format::{confidence_percent, count, duration, number, p_value, percent, signed};

/// The report's style sheet (the console's analysis page uses it too).
pub const STYLE: &str = r#"
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
.key-b{color:#1f6fb4;font-weight:600}.key-c{color:#b35400;font-weight:600}.key-l{color:#c01010;font-weight:600}.key-r{color:#7b1fa2;font-weight:600}
tr.trigger td{font-size:.95em;color:#333;border-top:none}tr.trigger.fired td{background:#fdecea}
.fired-word{color:#b3261e;font-weight:700}.clear-word{color:#1b7f3b}
.no-chart{color:#777;font-style:italic}
"#;

/// The report as one HTML document.
pub fn render(report: &AnalysisReport, charts: &ChartData) -> String {
    let subject = &report.subject;
    let title = match &subject.flag {
        Some(flag) => format!("Canary report: {flag}"),
        None => format!("Canary report: profile {}", subject.profile),
    };
    let page = html! {
        (DOCTYPE) "\n"
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (Text(&title)) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    "\n"
                    h1 { (Text(&title)) } "\n"
                    p class="meta" { (meta(report)) } "\n"
                    (banner(report))
                    (sections(report, charts))
                }
            }
        }
        "\n"
    };
    page.into_string()
}

/// The report's sections under its verdict [`banner`]: the metric table, the timeline
/// and the charts (the console's analysis page shows them too).
pub fn sections(report: &AnalysisReport, charts: &ChartData) -> Markup {
    html! {
        (metric_table(report))
        (timeline(report))
        (metric_charts(report, charts))
    }
}

/// The line under the title: profile, analysis, state, dry run, level, correction.
fn meta(report: &AnalysisReport) -> Markup {
    let subject = &report.subject;
    let mut parts = vec![html! { "profile " (Text(&subject.profile)) }];
    if let Some(id) = &subject.analysis_id {
        parts.push(html! { "analysis " (Text(id)) });
    }
    parts.push(html! { "state " (Text(&subject.state.replace('_', " "))) });
    if subject.dry_run && subject.analysis_id.is_some() {
        parts.push(html! { "dry run (the flag was never changed)" });
    }
    if let Some(level) = subject.confidence_level {
        parts.push(html! { (confidence_percent(level)) "% confidence per metric" });
    }
    if let Some(correction) = &subject.multiple_comparisons {
        parts.push(html! { (Text(correction)) " correction" });
    }
    html! {
        @for (index, part) in parts.iter().enumerate() {
            @if index > 0 { " · " }
            (part)
        }
    }
}

/// The verdict banner with its headline, deciding metrics and reasons.
pub fn banner(report: &AnalysisReport) -> Markup {
    let banner = &report.banner;
    let class = banner.verdict.map_or("none", Verdict::as_str);
    let verdict = banner.verdict.map_or_else(
        || "NO VERDICT YET".to_owned(),
        |verdict| verdict.as_str().to_uppercase(),
    );
    html! {
        section class={ "banner " (class) } id="verdict" {
            h1 { "Verdict: " (Text(&verdict)) }
            div {
                (Text(&banner.headline))
                @if let Some(score) = banner.score { " · score " (number(score)) }
            }
            @if !banner.deciding_metrics.is_empty() {
                ul class="deciding" {
                    @for sentence in &banner.deciding_metrics { li { (Text(sentence)) } }
                }
            }
        }
        "\n"
        @if !banner.reasons.is_empty() {
            h2 { "Why" }
            ol class="reasons" {
                @for reason in &banner.reasons { li { (Text(reason)) } }
            }
            "\n"
        }
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

/// The metric table's columns after the metric's name and result.
const METRIC_COLUMNS: [&str; 12] = [
    "severity",
    "baseline n",
    "canary n",
    "baseline mean",
    "canary mean",
    "baseline median",
    "canary median",
    "baseline p95",
    "canary p95",
    "effect size",
    "p-value",
    "adjusted p",
];

fn metric_table(report: &AnalysisReport) -> Markup {
    if report.metrics.is_empty() {
        return html! {
            h2 { "Metrics (latest look)" } "\n"
            p { "No look has been taken yet." } "\n"
        };
    }
    let level = report.subject.confidence_level.map_or_else(
        || "CI".to_owned(),
        |l| format!("{}% CI", confidence_percent(l)),
    );
    html! {
        h2 { "Metrics (latest look)" } "\n"
        div class="wide" tabindex="0" {
            table class="metrics" {
                thead {
                    tr {
                        th { "metric" } th { "result" }
                        @for column in METRIC_COLUMNS { th { (column) } }
                        th { "shift [" (level) "]" }
                    }
                }
                tbody {
                    "\n"
                    @for metric in &report.metrics { (metric_row(metric)) }
                }
            }
        }
        "\n"
    }
}

fn metric_row(metric: &MetricRow) -> Markup {
    let rate = metric
        .baseline
        .as_ref()
        .or(metric.canary.as_ref())
        .is_some_and(|s| s.total.is_some());
    let n = |side: &Option<SideRow>| side.as_ref().map_or_else(|| "–".to_owned(), |s| count(s.n));
    let dash = || "–".to_owned();
    let numbers = [
        n(&metric.baseline),
        n(&metric.canary),
        side_value(&metric.baseline, |s| s.mean, rate),
        side_value(&metric.canary, |s| s.mean, rate),
        side_value(&metric.baseline, |s| s.median, false),
        side_value(&metric.canary, |s| s.median, false),
        side_value(&metric.baseline, |s| s.p95, false),
        side_value(&metric.canary, |s| s.p95, false),
    ];
    let p = |p: Option<f64>| p.map_or_else(dash, |p| p_value(p, None));
    let class = Text(&metric.classification);
    html! {
        tr class="metric" {
            td { (Text(&metric.name)) }
            td class=(class) { (class) }
            td { (Text(&metric.severity)) }
            @for number in &numbers { td class="num" { (number) } }
            td { (Text(metric.effect.as_deref().unwrap_or("–"))) }
            td class="num" { (p(metric.p_value)) }
            td class="num" { (p(metric.adjusted_p_value)) }
            td class="num ci" {
                @match (metric.shift_estimate, metric.shift_ci) {
                    (Some(shift), Some([low, high])) => {
                        (signed(shift)) br; "[" (signed(low)) ", " (signed(high)) "]"
                    }
                    (Some(shift), None) => (signed(shift)),
                    _ => (dash()),
                }
            }
        }
        tr class="why" { td {} td colspan="14" { (Text(&metric.reason)) } }
        "\n"
    }
}

fn clock(at: f64, start: f64) -> String {
    format!("+{}", duration((at - start).max(0.0)))
}

fn timeline(report: &AnalysisReport) -> Markup {
    if report.timeline.is_empty() {
        return html! {};
    }
    // Times count from the first event, not from the submission: a replayed analysis
    // runs on the recording's clock, which can be long before it was submitted.
    let start = report
        .timeline
        .iter()
        .map(TimelineEvent::at)
        .fold(f64::INFINITY, f64::min);
    html! {
        h2 { "Timeline" }
        table class="timeline" {
            thead {
                tr {
                    @for column in ["time", "event", "stage", "traffic", "verdict", "what happened"] {
                        th { (column) }
                    }
                }
            }
            tbody {
                "\n"
                @for event in &report.timeline { (timeline_row(event, start)) }
            }
        }
        "\n"
    }
}

/// One event of the timeline, and a look's trigger checks under it.
fn timeline_row(event: &TimelineEvent, start: f64) -> Markup {
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
        } => html! {
            tr {
                td class="num" { (clock(*at, start)) }
                td { "look " (look) }
                td { (Text(stage)) }
                td class="num" {
                    @match traffic { Some(t) => { (number(*t)) "%" }, None => "–" }
                }
                td class=(verdict.as_str()) { (verdict.as_str()) }
                td {
                    b { (Text(decision)) }
                    @if let Some(reason) = reasons.first() { ": " (Text(reason)) }
                }
            }
            "\n"
            @for trigger in triggers { (trigger_row(trigger)) }
        },
        TimelineEvent::Actuation {
            at,
            action,
            target,
            state,
            detail,
        } => html! {
            tr {
                td class="num" { (clock(*at, start)) }
                td { "flag change" }
                td {}
                td class="num" { (number(*target)) "%" }
                td {}
                td {
                    (Text(action)) " → " (number(*target)) "% (" (Text(state)) ")"
                    @if let Some(detail) = detail { ": " (Text(detail)) }
                }
            }
            "\n"
        },
        TimelineEvent::Manual {
            at,
            actor,
            action,
            reason,
            from_state,
            to_state,
        } => html! {
            tr class="manual" {
                td class="num" { (clock(*at, start)) }
                td { "manual " (Text(action)) }
                td {} td {} td {}
                td {
                    "by " b { (Text(actor)) } ": “" (Text(reason)) "” ("
                    (Text(from_state)) " → " (Text(to_state)) ")"
                }
            }
            "\n"
        },
    }
}

/// One trigger's check under its look: fired or not, the value against the limit, why.
fn trigger_row(trigger: &TriggerRow) -> Markup {
    let value = match (trigger.value, trigger.limit) {
        (Some(value), Some(limit)) => format!("{} vs limit {}: ", number(value), number(limit)),
        (Some(value), None) => format!("{}: ", number(value)),
        (None, Some(limit)) => format!("no value vs limit {}: ", number(limit)),
        (None, None) => String::new(),
    };
    html! {
        tr class=(if trigger.met { "trigger fired" } else { "trigger clear" }) {
            td {}
            td { "trigger" }
            td colspan="3" {
                (Text(&trigger.name)) " " span class="meta" { "(" (Text(&trigger.metric)) ")" }
            }
            td {
                @if trigger.met {
                    span class="fired-word" { "FIRED → " (Text(&trigger.action)) }
                } @else {
                    span class="clear-word" { "not met" }
                }
                " · " (value) (Text(&trigger.reason))
            }
        }
        "\n"
    }
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

fn metric_charts(report: &AnalysisReport, charts: &ChartData) -> Markup {
    if report.metrics.is_empty() {
        return html! {};
    }
    html! {
        h2 { "Charts" }
        p class="meta" {
            span class="key-b" { "■ baseline" } " "
            span class="key-c" { "■ canary" } " "
            span class="key-l" { "■ threshold" } " "
            span class="key-r" { "╌ limit relative to the baseline (latest look)" }
            " · lines are downsampled for drawing; the table's numbers are exact."
        }
        "\n"
        @for metric in &report.metrics {
            section class="metric-charts" {
                h3 {
                    (Text(&metric.name)) " "
                    span class=(Text(&metric.classification)) { (Text(&metric.classification)) }
                }
                div class="charts" { (metric_figures(report, charts, metric)) }
            }
            "\n"
        }
    }
}

/// A metric's charts: over time and its distribution from the raw series when they
/// are at hand, else from the looks' history and the stored quantiles.
fn metric_figures(report: &AnalysisReport, charts: &ChartData, metric: &MetricRow) -> Markup {
    let limits = marks(metric);
    let Some(raw) = charts.get(&metric.name) else {
        let history = report.history.iter().find(|h| h.name == metric.name);
        return html! {
            @if let Some(history) = history { (history_chart(history, &limits)) }
            (quantile_chart(metric, &limits))
        };
    };
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
    let drawn = |n: usize| count(n as u64);
    let over_time = match raw.counted {
        Some([baseline, canary])
            if baseline > raw.baseline.len() as u64 || canary > raw.canary.len() as u64 =>
        {
            format!(
                "over time: {} baseline and {} canary points, drawn from \
                 {} and {} kept by the looks (each look's minima and maxima)",
                count(baseline),
                count(canary),
                drawn(raw.baseline.len()),
                drawn(raw.canary.len())
            )
        }
        _ => format!(
            "over time: {} baseline and {} canary points",
            drawn(raw.baseline.len()),
            drawn(raw.canary.len())
        ),
    };
    let values = |points: &[(f64, f64)]| points.iter().map(|p| p.1).collect::<Vec<f64>>();
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
    html! {
        (figure(
            &chart::draw(
                &sides(&baseline, &canary, false),
                &[],
                &limits,
                "seconds since the first point",
            ),
            &over_time,
        ))
        (figure(
            &chart::draw(
                &sides(&baseline_cdf, &canary_cdf, true),
                &limits,
                &[],
                "value (y: share of points at or below)",
            ),
            caption,
        ))
    }
}

/// A chart (SVG markup from [`chart::draw`]) with its caption.
fn figure(svg: &str, caption: &str) -> Markup {
    html! { figure { (PreEscaped(svg)) figcaption { (Text(caption)) } } }
}

fn history_chart(history: &MetricHistory, limits: &[Mark]) -> Markup {
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
        &chart::draw(&sides(&baseline, &canary, false), &[], limits, "look"),
        &format!("{} at each look", history.statistic),
    )
}

/// The distribution as far as the stored summaries tell it: min, median, p95, p99, max
/// as points of the CDF.
fn quantile_chart(metric: &MetricRow, limits: &[Mark]) -> Markup {
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
        return html! {};
    }
    figure(
        &chart::draw(
            &sides(&baseline, &canary, false),
            limits,
            &[],
            "value (y: share at or below)",
        ),
        "distribution from the stored quantiles (min, median, p95, p99, max)",
    )
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
