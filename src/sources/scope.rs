//! Scopes as label matchers, parsed so that sources of other languages can write them.
//!
//! A submission names each side with PromQL-style label matchers without braces:
//! `track="canary"`, `app="web", pod=~"web-v2-.*"`. Prometheus takes them as they are.
//! InfluxDB, Graphite, Datadog and CloudWatch have no such syntax: their sources parse
//! the matchers here and write them in their own language (a `WHERE` condition, tag
//! expressions, a tag filter, dimensions), refusing what the language cannot express
//! (a regular expression on Datadog, say) with a message that says so.

use std::fmt;

/// How a matcher compares a label with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: equal.
    Equal,
    /// `!=`: not equal.
    NotEqual,
    /// `=~`: matches the regular expression (anchored at both ends, as in PromQL).
    Matches,
    /// `!~`: does not match the regular expression.
    NotMatches,
}

impl MatchOp {
    /// The PromQL operator.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Matches => "=~",
            MatchOp::NotMatches => "!~",
        }
    }
}

/// One label matcher: `name OP "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatcher {
    /// The label (tag, dimension) name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value, unquoted and unescaped.
    pub value: String,
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Parses a scope: label matchers separated by commas, each `name OP value` with OP
/// one of `=`, `!=`, `=~`, `!~` and the value quoted with `"`, `'` or a backtick
/// (`\"`, `\\`, `\n`, `\t` escapes inside the first two, as in PromQL). The error says
/// which matcher, and where, is wrong.
pub fn parse_matchers(scope: &str) -> Result<Vec<LabelMatcher>, String> {
    let mut matchers = Vec::new();
    let mut rest = scope.trim_start();
    if rest.is_empty() {
        return Err("the scope is empty: give label matchers such as track=\"canary\"".into());
    }
    loop {
        let at = scope.len() - rest.len() + 1;
        let name_length = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(rest.len(), |(index, _)| index);
        let name = &rest[..name_length];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "expected a label name at character {at} of the scope, found {:?}",
                rest.chars().take(12).collect::<String>()
            ));
        }
        rest = rest[name_length..].trim_start();
        let op = if let Some(after) = rest.strip_prefix("=~") {
            rest = after;
            MatchOp::Matches
        } else if let Some(after) = rest.strip_prefix("!~") {
            rest = after;
            MatchOp::NotMatches
        } else if let Some(after) = rest.strip_prefix("!=") {
            rest = after;
            MatchOp::NotEqual
        } else if let Some(after) = rest.strip_prefix('=') {
            rest = after;
            MatchOp::Equal
        } else {
            return Err(format!(
                "label {name:?} has no operator: write {name}=\"value\" (or !=, =~, !~)"
            ));
        };
        let (value, after) = quoted(rest.trim_start())
            .map_err(|message| format!("the value of label {name:?} {message}"))?;
        matchers.push(LabelMatcher {
            name: name.to_owned(),
            op,
            value,
        });
        rest = after.trim_start();
        match rest.strip_prefix(',') {
            Some(after) => {
                rest = after.trim_start();
                // A trailing comma is allowed, as in PromQL.
                if rest.is_empty() {
                    return Ok(matchers);
                }
            }
            None if rest.is_empty() => return Ok(matchers),
            None => {
                return Err(format!(
                    "expected a comma after {name}{}…, found {:?}",
                    op.as_str(),
                    rest.chars().take(12).collect::<String>()
                ));
            }
        }
    }
}

/// A quoted string at the start of `text`: its value and what follows it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let quote = match chars.next() {
        Some((_, quote @ ('"' | '\'' | '`'))) => quote,
        _ => return Err("must be quoted, e.g. \"canary\"".into()),
    };
    let mut value = String::new();
    while let Some((index, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((value, &text[index + c.len_utf8()..])),
            '\\' if quote != '`' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(format!("has no closing {quote}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(name: &str, op: MatchOp, value: &str) -> LabelMatcher {
        LabelMatcher {
            name: name.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn every_operator_and_quote_parses() {
        let parsed =
            parse_matchers(r#" track="canary", pod =~ 'web-.*' ,zone!=`a"b`, code!~"5\"x\\.." "#)
                .unwrap();
        assert_eq!(
            parsed,
            [
                matcher("track", MatchOp::Equal, "canary"),
                matcher("pod", MatchOp::Matches, "web-.*"),
                matcher("zone", MatchOp::NotEqual, "a\"b"),
                matcher("code", MatchOp::NotMatches, "5\"x\\.."),
            ]
        );
    }

    #[test]
    fn a_trailing_comma_is_allowed() {
        assert_eq!(parse_matchers("a=\"1\",").unwrap().len(), 1);
    }

    #[test]
    fn malformed_scopes_say_what_is_wrong() {
        for (scope, expected) in [
            ("", "empty"),
            ("track", "no operator"),
            ("track=canary", "must be quoted"),
            ("track=\"canary", "no closing"),
            ("track=\"a\" pod=\"b\"", "expected a comma"),
            ("1abc=\"x\"", "expected a label name"),
            ("{track=\"x\"}", "expected a label name"),
        ] {
            let error = parse_matchers(scope).unwrap_err();
            assert!(error.contains(expected), "{scope:?}: {error}");
        }
    }
}
