//! Query templates: PromQL with `{{name}}` placeholders, filled in once per side.
//!
//! A profile writes a query once, with the side-specific part left as `{{scope}}`:
//! `rate(http_requests_total{ {{scope}}, code=~"5.." }[1m])`. The runner renders it
//! with `scope = track="baseline"` and again with `scope = track="canary"`. Values
//! are pasted in as they are, without quoting: a scope is a list of PromQL label
//! matchers written by the user. Whitespace inside the braces is allowed
//! (`{{ scope }}`); a third opening brace is literal (`x{{{scope}}}` renders as
//! `x{track="canary"}`). Anything that is not a clean substitution is an error that
//! names the placeholder and where it is, so a typo fails when the profile is
//! loaded, not as an empty result at 3 a.m.

use std::collections::BTreeMap;
use std::fmt;

/// Where in a template: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplatePosition {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl fmt::Display for TemplatePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A template that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{name}}` with no value for `name`.
    #[error("unknown variable {{{{{name}}}}} at {position}; known variables: {}", known_list(.known))]
    UnknownVariable {
        /// The placeholder's name.
        name: String,
        /// Where its `{{` is.
        position: TemplatePosition,
        /// The names that have values.
        known: Vec<String>,
    },
    /// A `{{` without its `}}`.
    #[error("unclosed {{{{ at {position}: a placeholder is written {{{{name}}}}")]
    Unclosed {
        /// Where the `{{` is.
        position: TemplatePosition,
    },
    /// `{{...}}` whose content is not a name (letters, digits, `_`; not starting
    /// with a digit).
    #[error("{{{{{text}}}}} at {position} is not a placeholder: a name is letters, digits and _")]
    InvalidName {
        /// What is between the braces.
        text: String,
        /// Where its `{{` is.
        position: TemplatePosition,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    }
}

/// Replaces every `{{name}}` in `template` by `variables[name]`.
pub fn render(
    template: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let mut rendered = String::with_capacity(template.len());
    let mut rest = template;
    let mut consumed = 0;
    while let Some(open) = rest.find("{{") {
        // In `{{{`, the first brace is a literal one (a label-matcher brace).
        let open = open
            + rest[open..]
                .bytes()
                .take_while(|byte| *byte == b'{')
                .count()
            - 2;
        rendered.push_str(&rest[..open]);
        let position = position_of(template, consumed + open);
        let inner_start = open + 2;
        let Some(close) = rest[inner_start..].find("}}") else {
            return Err(TemplateError::Unclosed { position });
        };
        let text = &rest[inner_start..inner_start + close];
        let name = text.trim();
        if !is_name(name) {
            // A `{{` whose content runs into another `{{` means this one was never closed.
            if text.contains("{{") {
                return Err(TemplateError::Unclosed { position });
            }
            return Err(TemplateError::InvalidName {
                text: text.to_string(),
                position,
            });
        }
        let Some(value) = variables.get(name) else {
            return Err(TemplateError::UnknownVariable {
                name: name.to_string(),
                position,
                known: variables.keys().cloned().collect(),
            });
        };
        rendered.push_str(value);
        let after = inner_start + close + 2;
        consumed += after;
        rest = &rest[after..];
    }
    rendered.push_str(rest);
    Ok(rendered)
}

/// The variables of the usual case: `scope` only.
pub fn scope_variables(scope: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("scope".to_string(), scope.to_string())])
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn position_of(template: &str, byte_offset: usize) -> TemplatePosition {
    let before = &template[..byte_offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    TemplatePosition {
        line,
        column: template[line_start..byte_offset].chars().count() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR_RATE: &str = r#"rate(http_requests_total{ {{scope}}, code=~"5.." }[1m])"#;

    #[test]
    fn the_scope_is_pasted_into_the_label_matchers() {
        let rendered = render(ERROR_RATE, &scope_variables(r#"track="canary""#)).unwrap();
        assert_eq!(
            rendered,
            r#"rate(http_requests_total{ track="canary", code=~"5.." }[1m])"#
        );
    }

    #[test]
    fn whitespace_inside_the_braces_is_allowed_and_every_occurrence_is_replaced() {
        let variables = BTreeMap::from([
            ("scope".to_string(), r#"track="baseline""#.to_string()),
            ("window".to_string(), "5m".to_string()),
        ]);
        let rendered = render(
            "sum(rate(a{ {{ scope }} }[{{window}}])) / sum(rate(b{ {{scope}} }[{{  window }}]))",
            &variables,
        )
        .unwrap();
        assert_eq!(
            rendered,
            r#"sum(rate(a{ track="baseline" }[5m])) / sum(rate(b{ track="baseline" }[5m]))"#
        );
    }

    #[test]
    fn a_third_opening_brace_is_a_literal_label_matcher_brace() {
        let rendered = render("up{{{scope}}}", &scope_variables(r#"track="canary""#)).unwrap();
        assert_eq!(rendered, r#"up{track="canary"}"#);
    }

    #[test]
    fn a_template_without_placeholders_is_returned_as_it_is() {
        assert_eq!(
            render("up{job=\"api\"}", &BTreeMap::new()).unwrap(),
            "up{job=\"api\"}"
        );
    }

    #[test]
    fn an_unknown_variable_is_named_with_its_line_and_column() {
        let error = render(
            "sum(\n  rate(x{ {{scop}} }[1m]))",
            &scope_variables("a=\"b\""),
        )
        .unwrap_err();
        assert_eq!(
            error,
            TemplateError::UnknownVariable {
                name: "scop".into(),
                position: TemplatePosition {
                    line: 2,
                    column: 11
                },
                known: vec!["scope".into()],
            }
        );
        assert_eq!(
            error.to_string(),
            "unknown variable {{scop}} at line 2, column 11; known variables: scope"
        );
    }

    #[test]
    fn an_unclosed_placeholder_is_an_error_with_its_position() {
        let error = render("rate(x{ {{scope }[1m])", &scope_variables("a=\"b\"")).unwrap_err();
        assert_eq!(
            error,
            TemplateError::Unclosed {
                position: TemplatePosition { line: 1, column: 9 }
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("unclosed {{ at line 1, column 9")
        );
    }

    #[test]
    fn a_placeholder_running_into_the_next_one_is_reported_as_unclosed() {
        let error =
            render("a{ {{scope }, b{ {{scope}} }", &scope_variables("x=\"y\"")).unwrap_err();
        assert_eq!(
            error,
            TemplateError::Unclosed {
                position: TemplatePosition { line: 1, column: 4 }
            }
        );
    }

    #[test]
    fn braces_around_something_that_is_not_a_name_are_refused() {
        let error = render("x{ {{ scope-1 }} }", &scope_variables("a=\"b\"")).unwrap_err();
        assert!(
            matches!(error, TemplateError::InvalidName { ref text, .. } if text == " scope-1 ")
        );
    }
}
