//! Renders judgements and analyses for people and for pipelines.
//!
//! - [`text`]: a readable table for terminals and CI logs.
//! - [`json`]: one JSON object; its field names are a contract (see README).
//! - [`analysis`]: the [`AnalysisReport`](analysis::AnalysisReport) model of one
//!   analysis (verdict banner, timeline, per-metric table), built purely from stored
//!   records, and its versioned JSON form.
//! - [`terminal`]: a compact summary of that report, coloured on terminals.
//! - [`html`]: that report as one self-contained HTML page, with [`chart`]'s SVG charts,
//!   both written through `maud` templates with [`markup`]'s escaping.
//!
//! Rendering never changes a number: the report shows what the judge computed.

pub mod analysis;
pub mod chart;
pub mod html;
pub mod json;
pub mod markup;
pub mod terminal;
pub mod text;
