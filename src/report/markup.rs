//! Text in the report's markup (the HTML page and its SVG charts): [`Text`] splices a
//! string into a `maud` template escaped for element content and quoted attribute
//! values, `'` included, as the report has always written it.

use maud::Render;

/// Escapes text for HTML element content and quoted attribute values.
fn escape_into(text: &str, out: &mut String) {
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
}

/// Text for the page: escaped for element content and quoted attribute values.
pub struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        escape_into(self.0, buffer);
    }
}
