//! Limits on the fields of a submission, each refusal a 422 naming the field: scope
//! length, the characters of a flag key or a scope, and a start time within a year.
//!
//! Pure checks on values; the handler in [`analyses`](super::analyses) calls them.

use super::error::ApiError;

/// The longest label-matcher scope, in bytes.
pub const MAX_SCOPE_BYTES: usize = 4 * 1024;
/// The longest flag key, in characters.
pub const MAX_FLAG_CHARS: usize = 200;
/// How far ahead `start_at` may be: an analysis due later would sit pending for ever.
pub const MAX_START_AHEAD_SECONDS: f64 = 366.0 * 24.0 * 3600.0;

/// Characters that are invisible or reorder text when shown (Unicode's format
/// characters, category Cf, among them zero-width spaces and joiners U+200B..U+200F,
/// the bidirectional controls U+202A..U+202E and U+2066..U+2069, and the byte-order
/// mark U+FEFF): a flag key or scope holding one would read as another in logs,
/// reports and reviews.
pub fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// A flag key: at most [`MAX_FLAG_CHARS`] characters, no whitespace, control
/// characters (Cc) or invisible and bidirectional-control characters (Cf).
pub fn check_flag_key(flag: &str) -> Result<(), ApiError> {
    if let Some(c) = flag
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || is_invisible_or_bidi(c))
    {
        return Err(ApiError::field(
            "invalid_field",
            "flag",
            format!(
                "flag must be a flag key without spaces, control, invisible or bidirectional \
                 characters; it holds U+{:04X}",
                c as u32
            ),
        ));
    }
    let length = flag.chars().count();
    if length > MAX_FLAG_CHARS {
        return Err(ApiError::field(
            "invalid_field",
            "flag",
            format!("flag must be at most {MAX_FLAG_CHARS} characters long, got {length}"),
        ));
    }
    Ok(())
}

/// A scope: at most [`MAX_SCOPE_BYTES`], and no invisible or bidirectional-control
/// characters (braces and control characters are the handler's check).
pub fn check_scope_limits(scope: &str, field: &str) -> Result<(), ApiError> {
    if scope.len() > MAX_SCOPE_BYTES {
        return Err(ApiError::field(
            "invalid_field",
            field,
            format!(
                "{field} must be at most {MAX_SCOPE_BYTES} bytes long, got {}",
                scope.len()
            ),
        ));
    }
    if let Some(c) = scope.chars().find(|&c| is_invisible_or_bidi(c)) {
        return Err(ApiError::field(
            "invalid_field",
            field,
            format!(
                "{field} must not hold invisible or bidirectional-control characters; it holds U+{:04X}",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// `start_at`: a finite Unix time in seconds, not negative and at most a year after
/// `now` (a past start is allowed: replays start in the past).
pub fn check_start_at(start: f64, now: f64) -> Result<(), ApiError> {
    if !(start.is_finite() && start >= 0.0) {
        return Err(ApiError::field(
            "invalid_field",
            "start_at",
            format!("start_at must be a finite, non-negative Unix time in seconds, got {start}"),
        ));
    }
    if start > now + MAX_START_AHEAD_SECONDS {
        return Err(ApiError::field(
            "invalid_field",
            "start_at",
            format!(
                "start_at must be at most a year from now (before Unix time {:.0}), got {start}",
                now + MAX_START_AHEAD_SECONDS
            ),
        ));
    }
    Ok(())
}

/// What a JSON body starts with, for "the body must be a JSON object, got ...".
pub fn json_kind(body: &[u8]) -> &'static str {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => "something else",
    }
}

/// The most characters of a Kubernetes object name (DNS subdomain).
pub const MAX_KUBERNETES_NAME: usize = 253;

/// A Kubernetes object name (lower-case letters, digits, `-` and `.`, starting and
/// ending with a letter or digit, at most [`MAX_KUBERNETES_NAME`] characters), or a 400
/// naming `field`.
pub fn check_kubernetes_name(value: &str, field: &str) -> Result<(), ApiError> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_KUBERNETES_NAME
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric();
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::parameter(
            "invalid_name",
            field,
            format!(
                "{field} must be a Kubernetes name (lower-case letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most {MAX_KUBERNETES_NAME} \
                 characters), got {value:?}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ApiError) -> String {
        error.status_and_body().1.error.field.unwrap()
    }

    #[test]
    fn flag_keys_with_invisible_or_bidirectional_characters_are_refused() {
        for flag in [
            "checkout\u{200B}v2",
            "checkout\u{202E}2v",
            "\u{FEFF}checkout",
            "check\u{2066}out",
            "tab\there",
            "bell\u{7}",
            "soft\u{AD}hyphen",
        ] {
            let error = check_flag_key(flag).unwrap_err();
            assert_eq!(field_of(error), "flag", "{flag:?}");
        }
        assert!(check_flag_key("checkout-v2.ünïcode_ok").is_ok());
        assert!(check_flag_key(&"x".repeat(MAX_FLAG_CHARS)).is_ok());
        assert!(check_flag_key(&"x".repeat(MAX_FLAG_CHARS + 1)).is_err());
    }

    #[test]
    fn scopes_are_bounded_and_visible() {
        assert!(check_scope_limits("track=\"canary\"", "canary_scope").is_ok());
        let long = format!("track=\"{}\"", "x".repeat(MAX_SCOPE_BYTES));
        assert_eq!(
            field_of(check_scope_limits(&long, "canary_scope").unwrap_err()),
            "canary_scope"
        );
        assert!(check_scope_limits("track=\"can\u{200D}ary\"", "baseline_scope").is_err());
    }

    #[test]
    fn start_at_is_finite_and_within_a_year() {
        let now = 1_800_000_000.0;
        assert!(check_start_at(now + 3600.0, now).is_ok());
        assert!(
            check_start_at(1_700_000_000.0, now).is_ok(),
            "past: replays"
        );
        for start in [1e12, 1e16, f64::INFINITY, f64::NAN, -5.0] {
            assert_eq!(
                field_of(check_start_at(start, now).unwrap_err()),
                "start_at"
            );
        }
    }
}
