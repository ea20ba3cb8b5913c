//! Renders a [`Judgement`](crate::judge::Judgement) for people and for pipelines.
//!
//! - [`text`]: a readable table for terminals and CI logs.
//! - [`json`]: one JSON object; its field names are a contract (see README).
//!
//! Rendering never changes a number: the report shows what the judge computed.

pub mod json;
pub mod text;
