//! SVG charts for the HTML report, drawn with `plotters`' SVG backend.
//!
//! plotters is built without fonts (no `ttf` feature), so it draws only lines and
//! frames here; the few axis labels are SVG `<text>` elements this module adds itself,
//! positioned from the same pixel layout. Charts never change a statistic: series are
//! downsampled for drawing only (at most [`MAX_POINTS`] per line), while the report's
//! numbers come from the judge.

use std::ops::Range;

use maud::html;

use plotters::prelude::*;

use super::markup::Text;
use crate::format::number;

/// Most points drawn per line.
pub const MAX_POINTS: usize = 500;

const WIDTH: u32 = 520;
const HEIGHT: u32 = 200;
const LEFT: u32 = 56;
const RIGHT: u32 = 10;
const TOP: u32 = 10;
const BOTTOM: u32 = 22;

/// Baseline colour (blue).
pub const BASELINE: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
/// Canary colour (orange).
pub const CANARY: RGBColor = RGBColor(0xe0, 0x6c, 0x00);
/// Absolute threshold colour (red).
pub const LIMIT: RGBColor = RGBColor(0xc0, 0x10, 0x10);
/// Colour of limits relative to the baseline (purple, dashed).
pub const RELATIVE_LIMIT: RGBColor = RGBColor(0x7b, 0x1f, 0xa2);

/// A limit to mark across the chart, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Where, on the axis the mark crosses.
    pub value: f64,
    /// What it is (`max 0.4`, `baseline median ×1.05 = 0.1957`), drawn beside it.
    pub label: String,
    /// Relative to the baseline (dashed, purple) rather than absolute (solid, red).
    pub relative: bool,
}

/// One line to draw.
pub struct Line<'a> {
    /// Points (x, y); non-finite ones are skipped.
    pub points: &'a [(f64, f64)],
    /// Its colour.
    pub colour: RGBColor,
    /// Draw as steps (for an empirical CDF).
    pub steps: bool,
}

pub use crate::domain::look_series::downsample;

/// The empirical CDF of `values` as at most `max` points (value, fraction ≤ value),
/// starting from (smallest value, 0) and taken at evenly spaced ranks so the drawn curve
/// stays within 1/`max` of the exact one.
pub fn ecdf(values: &[f64], max: usize) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    // The curve rises from 0 at the smallest value, so its axis reads 0 to 1.
    let take = n.min(max.max(3) - 1);
    std::iter::once((sorted[0], 0.0))
        .chain((0..take).map(|i| {
            let rank = if take == 1 {
                n - 1
            } else {
                i * (n - 1) / (take - 1)
            };
            (sorted[rank], (rank + 1) as f64 / n as f64)
        }))
        .collect()
}

fn range(values: impl Iterator<Item = f64>) -> Option<Range<f64>> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !low.is_finite() {
        return None;
    }
    if low == high {
        let pad = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
        return Some(low - pad..high + pad);
    }
    let pad = (high - low) * 0.05;
    Some(low - pad..high + pad)
}

/// A pixel coordinate as the SVG writes it.
fn pixels(value: f64) -> String {
    format!("{value:.1}")
}

/// Draws `lines` with labelled horizontal marks at `y_marks` and vertical ones at
/// `x_marks` (thresholds and relative limits). `x_label` describes the x axis under the
/// chart. Returns an `<svg>` element, or a short note when there is nothing to draw.
pub fn draw(lines: &[Line<'_>], x_marks: &[Mark], y_marks: &[Mark], x_label: &str) -> String {
    let x_marks: Vec<&Mark> = x_marks.iter().filter(|m| m.value.is_finite()).collect();
    let y_marks: Vec<&Mark> = y_marks.iter().filter(|m| m.value.is_finite()).collect();
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let (Some(x_range), Some(y_range)) = (
        range(all().map(|p| p.0).chain(x_marks.iter().map(|m| m.value))),
        range(all().map(|p| p.1).chain(y_marks.iter().map(|m| m.value))),
    ) else {
        return r#"<p class="no-chart">no data to chart</p>"#.to_owned();
    };
    let mut svg = String::new();
    let drawn = draw_into(
        &mut svg,
        lines,
        &x_marks,
        &y_marks,
        x_range.clone(),
        y_range.clone(),
    );
    if drawn.is_err() {
        return r#"<p class="no-chart">chart unavailable</p>"#.to_owned();
    }
    // Axis labels as plain SVG text (plotters has no fonts in this build): the data's
    // own extremes, placed where plotters drew them inside the padded range.
    let extremes = |values: &mut dyn Iterator<Item = f64>| {
        values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            })
    };
    let (x_low, x_high) = extremes(&mut all().map(|p| p.0).chain(x_marks.iter().map(|m| m.value)));
    let (y_low, y_high) = extremes(&mut all().map(|p| p.1).chain(y_marks.iter().map(|m| m.value)));
    let plot_width = f64::from(WIDTH - LEFT - RIGHT);
    let plot_height = f64::from(HEIGHT - TOP - BOTTOM);
    let x_pixel =
        |x: f64| f64::from(LEFT) + (x - x_range.start) / (x_range.end - x_range.start) * plot_width;
    let y_pixel =
        |y: f64| f64::from(TOP) + (y_range.end - y) / (y_range.end - y_range.start) * plot_height;
    let label = |x: f64, y: f64, anchor: &str, content: &str| {
        html! {
            text x=(pixels(x)) y=(pixels(y)) text-anchor=(anchor) { (Text(content)) }
        }
    };
    let label_x = f64::from(LEFT) - 4.0;
    let axis_y = f64::from(HEIGHT) - 6.0;
    // Each limit's label beside its line, in its colour: horizontal ones at the right
    // end above the line, vertical ones near the top, stacked so they do not overlap.
    // A white halo under each label keeps it readable over the lines it crosses.
    let labels = html! {
        g font-family="sans-serif" font-size="11" fill="#333" {
            (label(label_x, y_pixel(y_high) + 4.0, "end", &number(y_high)))
            @if y_low != y_high {
                (label(label_x, y_pixel(y_low) + 4.0, "end", &number(y_low)))
            }
            (label(x_pixel(x_low), axis_y, "start", &number(x_low)))
            @if x_low != x_high {
                (label(x_pixel(x_high), axis_y, "end", &number(x_high)))
            }
            (label(
                (f64::from(LEFT) + f64::from(WIDTH - RIGHT)) / 2.0,
                axis_y,
                "middle",
                x_label,
            ))
        }
        g font-family="sans-serif" font-size="10" stroke="#fff" stroke-width="3"
            paint-order="stroke"
        {
                @for mark in &y_marks {
                    text class="limit" x=(pixels(f64::from(WIDTH - RIGHT) - 3.0))
                        y=(pixels(y_pixel(mark.value) - 3.0)) text-anchor="end"
                        fill=(hex(mark_colour(mark)))
                    { (Text(&mark.label)) }
                }
                @for (index, mark) in x_marks.iter().enumerate() {
                    @let x = x_pixel(mark.value);
                    @let right_half = x > f64::from(WIDTH) / 2.0;
                    text class="limit" x=(pixels(if right_half { x - 3.0 } else { x + 3.0 }))
                        y=(pixels(f64::from(TOP) + 11.0 + 12.0 * index as f64))
                        text-anchor=(if right_half { "end" } else { "start" })
                        fill=(hex(mark_colour(mark)))
                    { (Text(&mark.label)) }
                }
        }
    };
    let labels = labels.into_string();
    match svg.rfind("</svg>") {
        Some(end) => svg.insert_str(end, &labels),
        None => svg.push_str(&labels),
    }
    svg
}

fn mark_colour(mark: &Mark) -> RGBColor {
    if mark.relative { RELATIVE_LIMIT } else { LIMIT }
}

fn hex(colour: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", colour.0, colour.1, colour.2)
}

fn draw_into(
    svg: &mut String,
    lines: &[Line<'_>],
    x_marks: &[&Mark],
    y_marks: &[&Mark],
    x_range: Range<f64>,
    y_range: Range<f64>,
) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .margin_left(LEFT)
        .margin_right(RIGHT)
        .margin_top(TOP)
        .margin_bottom(BOTTOM)
        .build_cartesian_2d(x_range.clone(), y_range.clone())
        .map_err(|e| e.to_string())?;
    let frame = ShapeStyle::from(&RGBColor(0x99, 0x99, 0x99)).stroke_width(1);
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (x_range.start, y_range.start),
                (x_range.end, y_range.start),
                (x_range.end, y_range.end),
                (x_range.start, y_range.end),
                (x_range.start, y_range.start),
            ],
            frame,
        )))
        .map_err(|e| e.to_string())?;
    let mut mark = |from: (f64, f64), to: (f64, f64), mark: &Mark| {
        let style = ShapeStyle::from(&mark_colour(mark)).stroke_width(2);
        if mark.relative {
            chart
                .draw_series(std::iter::once(plotters::element::DashedPathElement::new(
                    vec![from, to],
                    6,
                    4,
                    style,
                )))
                .map(|_| ())
        } else {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![from, to], style)))
                .map(|_| ())
        }
        .map_err(|e| e.to_string())
    };
    for y in y_marks {
        mark((x_range.start, y.value), (x_range.end, y.value), y)?;
    }
    for x in x_marks {
        mark((x.value, y_range.start), (x.value, y_range.end), x)?;
    }
    for line in lines {
        let finite = line
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let points: Vec<(f64, f64)> = if line.steps {
            let mut stepped = Vec::new();
            let mut previous_y = 0.0;
            for (x, y) in finite {
                stepped.push((x, previous_y));
                stepped.push((x, y));
                previous_y = y;
            }
            stepped
        } else {
            finite.collect()
        };
        // Few points (a rollout with one or two looks) also get markers: a line
        // through a single point draws nothing.
        if points.len() <= 60 && !line.steps {
            let marker = ShapeStyle::from(&line.colour).filled();
            chart
                .draw_series(points.iter().map(|&point| Circle::new(point, 3, marker)))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(
                points,
                ShapeStyle::from(&line.colour).stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_at_most_the_limit_and_the_spike() {
        let mut points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 1.0)).collect();
        points[4321].1 = 99.0;
        let drawn = downsample(&points, MAX_POINTS);
        assert!(drawn.len() <= MAX_POINTS, "{}", drawn.len());
        assert!(drawn.contains(&(4321.0, 99.0)));
    }

    #[test]
    fn the_drawn_ecdf_is_a_subset_of_the_exact_one() {
        let values: Vec<f64> = (0..10_000).map(|i| (i % 977) as f64).collect();
        let curve = ecdf(&values, MAX_POINTS);
        assert!(curve.len() <= MAX_POINTS);
        assert_eq!(curve.last().unwrap().1, 1.0);
        assert_eq!(curve.first().unwrap().0, 0.0);
    }

    #[test]
    fn a_chart_is_one_svg_with_its_labels_and_no_script() {
        let points = [(0.0, 1.0), (1.0, 2.0), (2.0, 1.5)];
        let svg = draw(
            &[Line {
                points: &points,
                colour: BASELINE,
                steps: false,
            }],
            &[],
            &[
                Mark {
                    value: 1.8,
                    label: "max <1.8>".to_owned(),
                    relative: false,
                },
                Mark {
                    value: 1.2,
                    label: "baseline median ×1.05 = 1.2".to_owned(),
                    relative: true,
                },
            ],
            "look <1>",
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("look &lt;1&gt;"));
        assert!(svg.contains(">max &lt;1.8&gt;</text>"), "{svg}");
        assert!(svg.contains("fill=\"#7b1fa2\">baseline median ×1.05 = 1.2</text>"));
        assert!(!svg.contains("<script"));
    }
}
