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

/// PromQL's aggregation operators, which drop every label not kept by `by (...)`.
const AGGREGATIONS: [&str; 11] = [
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile", "topk", "bottomk",
];

/// The first aggregation in a PromQL query that drops every one of `instance_labels`
/// (`sum by (le)`, `avg(...)`, `sum without (pod, instance)`), as written, or `None`
/// when every aggregation keeps one of them (or there is none). The judge tells hosts
/// from versions only when a metric's series name their instances (`[judge]
/// instance_labels`); `check-profile` uses this to say when a query hides them. A
/// heuristic over the text: functions of the same names in other positions do not occur
/// in PromQL, and `topk`/`bottomk` keep labels but select series, which is as bad.
pub fn aggregation_hiding_instances(query: &str, instance_labels: &[String]) -> Option<String> {
    let bytes = query.as_bytes();
    let word_boundary =
        |at: usize| at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
    for operator in AGGREGATIONS {
        let mut from = 0;
        while let Some(found) = query[from..].find(operator) {
            let start = from + found;
            let end = start + operator.len();
            from = end;
            if !word_boundary(start)
                || bytes
                    .get(end)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                continue;
            }
            let rest = query[end..].trim_start();
            // `sum by (...) (`, `sum without (...) (`, `sum (...) by (...)` or `sum(`.
            let (modifier, labels) = match clause(rest) {
                Some((modifier, labels)) => (Some(modifier), labels),
                None if rest.starts_with('(') => {
                    // The modifier may follow the argument: `sum(x) by (pod)`.
                    let closing = matching_paren(rest)?;
                    match clause(rest[closing + 1..].trim_start()) {
                        Some((modifier, labels)) => (Some(modifier), labels),
                        None => (None, Vec::new()),
                    }
                }
                None => continue,
            };
            let keeps = match modifier {
                Some("by") => labels.iter().any(|l| instance_labels.contains(l)),
                Some(_) => instance_labels.iter().any(|l| !labels.contains(l)),
                None => false,
            };
            if !keeps {
                let shown = match modifier {
                    Some(modifier) => format!("{operator} {modifier} ({})", labels.join(", ")),
                    None => format!("{operator}(...)"),
                };
                return Some(shown);
            }
        }
    }
    None
}

/// `by (a, b)` or `without (a)` at the start of `text`: the modifier and the labels.
fn clause(text: &str) -> Option<(&'static str, Vec<String>)> {
    let (modifier, rest) = if let Some(rest) = text.strip_prefix("by") {
        ("by", rest)
    } else if let Some(rest) = text.strip_prefix("without") {
        ("without", rest)
    } else {
        return None;
    };
    let trimmed = rest.trim_start();
    if !trimmed.starts_with('(') {
        return None;
    }
    let closing = trimmed.find(')')?;
    let labels = trimmed[1..closing]
        .split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    Some((modifier, labels))
}

/// The index of the parenthesis closing the one `text` starts with.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod instance_tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["instance".to_owned(), "pod".to_owned()]
    }

    #[test]
    fn aggregations_that_drop_every_instance_label_are_named() {
        let hidden = |q: &str| aggregation_hiding_instances(q, &labels());
        assert_eq!(
            hidden("histogram_quantile(0.95, sum by (le) (rate(x_bucket{ {{scope}} }[1m])))"),
            Some("sum by (le)".to_owned())
        );
        assert_eq!(
            hidden("avg(rate(process_cpu_seconds_total{ {{scope}} }[1m]))"),
            Some("avg(...)".to_owned())
        );
        assert_eq!(
            hidden("sum without (pod, instance) (x)"),
            Some("sum without (pod, instance)".to_owned())
        );
        assert_eq!(
            hidden("sum(rate(x[1m])) by (le)"),
            Some("sum by (le)".to_owned())
        );
    }

    #[test]
    fn queries_that_keep_an_instance_label_or_do_not_aggregate_pass() {
        let hidden = |q: &str| aggregation_hiding_instances(q, &labels());
        assert_eq!(
            hidden("histogram_quantile(0.95, sum by (le, pod) (rate(x_bucket[1m])))"),
            None
        );
        assert_eq!(hidden("sum by (instance) (rate(x[1m]))"), None);
        assert_eq!(hidden("sum without (le) (x)"), None);
        assert_eq!(hidden("sum(rate(x[1m])) by (pod)"), None);
        assert_eq!(hidden("rate(x{ {{scope}} }[1m])"), None);
        assert_eq!(hidden("latency"), None, "a replay's plain name");
        assert_eq!(
            hidden("summary_minimum"),
            None,
            "names containing operators"
        );
    }
}
