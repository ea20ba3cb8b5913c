//! The JSON form of a judgement, as `canary analyze --format json` prints it.
//!
//! The object is the serde form of [`Judgement`] with a `schema_version` in front.
//! Fields are only ever added; renaming or removing one is a breaking change.
//! Non-finite numbers (an undefined ratio) are written as `null`.

use serde::Serialize;

use crate::judge::Judgement;

/// Version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    #[serde(flatten)]
    judgement: &'a Judgement,
}

/// Pretty-printed JSON with a trailing newline.
pub fn render(judgement: &Judgement) -> String {
    let document = Document {
        schema_version: SCHEMA_VERSION,
        judgement,
    };
    let mut text = serde_json::to_string_pretty(&document)
        .expect("a judgement always serializes: it holds only strings, numbers and enums");
    text.push('\n');
    text
}

/// A rendered judgement with the `--compare` result added as `comparison`.
pub fn with_comparison(
    rendered: &str,
    comparison: &crate::judge::compare::Comparison,
) -> anyhow::Result<String> {
    let mut document: serde_json::Value = serde_json::from_str(rendered)?;
    if let serde_json::Value::Object(fields) = &mut document {
        fields.insert("comparison".to_owned(), serde_json::to_value(comparison)?);
    }
    let mut text = serde_json::to_string_pretty(&document)?;
    text.push('\n');
    Ok(text)
}
