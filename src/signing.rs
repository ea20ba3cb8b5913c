//! HMAC-SHA256 request signatures, Stripe-style: what the webhook actuator and the JSON
//! notifier send, and what a receiver (or a test) checks.
//!
//! The header is `X-Canary-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
//! `HMAC-SHA256(secret, "<t>.<raw body>")`. The timestamp is inside the signed text, so
//! a receiver that rejects old timestamps (five minutes is the usual tolerance) also
//! rejects replays of captured requests. A header may carry several `v1=` values (a
//! sender in the middle of a secret rotation); one match is enough. Unknown keys are
//! ignored, so a later `v2=` scheme can be sent beside `v1=`.
//!
//! This module owns the format and nothing else: no HTTP, no clock (callers pass the
//! time), no secrets read from the environment. The contract receivers implement is in
//! `docs/webhook-actuator.md`.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header the signature is sent in.
pub const SIGNATURE_HEADER: &str = "X-Canary-Signature";

/// The tolerance receivers are asked to use: requests signed more than this long
/// before (or after) the receiver's clock are refused.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a signature was refused. A receiver answers all of them with 401 or 403; the
/// variants say why in its logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix seconds>,v1=<hex>`.
    #[error("malformed signature header: {0}")]
    Malformed(String),
    /// The timestamp is further from the receiver's clock than the tolerance.
    #[error(
        "signature timestamp {timestamp} is {age_seconds} s away from now (tolerance {tolerance_seconds} s)"
    )]
    Stale {
        /// The signed timestamp, Unix seconds.
        timestamp: u64,
        /// How far it is from now, in seconds.
        age_seconds: u64,
        /// The tolerance, in seconds.
        tolerance_seconds: u64,
    },
    /// No `v1` value matches the body and secret.
    #[error("signature does not match the body")]
    Mismatch,
    /// An action link used after its expiry.
    #[error("the link expired at {expires} (Unix seconds)")]
    Expired {
        /// When it expired, Unix seconds.
        expires: u64,
    },
}

/// The `X-Canary-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

/// Checks a `X-Canary-Signature` value against the raw `body` as received, at `now`
/// (Unix seconds), allowing the timestamp to be at most `tolerance` away from `now`.
/// The comparison takes the same time whichever byte differs.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let parsed = parse_header(header)?;
    let age_seconds = now.abs_diff(parsed.timestamp);
    if age_seconds > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            timestamp: parsed.timestamp,
            age_seconds,
            tolerance_seconds: tolerance.as_secs(),
        });
    }
    let expected = mac(secret, parsed.timestamp, body);
    // Check every candidate rather than stopping at the first match, so the time taken
    // does not tell which of several signatures matched.
    let mut matched = subtle::Choice::from(0);
    for candidate in &parsed.signatures {
        matched |= candidate.as_slice().ct_eq(expected.as_slice());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The signature of an action link: `action` (`promote`, `rollback`) on analysis
/// `analysis`, valid until `expires` (Unix seconds): hex of
/// `HMAC-SHA256(secret, "<expires>.<analysis>:<action>")`.
pub fn sign_action_link(secret: &[u8], analysis: &str, action: &str, expires: u64) -> String {
    hex::encode(mac(
        secret,
        expires,
        format!("{analysis}:{action}").as_bytes(),
    ))
}

/// Checks an action link's signature at `now` (Unix seconds): refused once expired, or
/// when it was not made with `secret` for this analysis, action and expiry. The
/// comparison takes the same time whichever byte differs.
pub fn verify_action_link(
    secret: &[u8],
    analysis: &str,
    action: &str,
    expires: u64,
    signature: &str,
    now: u64,
) -> Result<(), SignatureError> {
    let given = hex::decode(signature.trim())
        .map_err(|_| SignatureError::Malformed("the signature is not hex".to_owned()))?;
    let expected = mac(secret, expires, format!("{analysis}:{action}").as_bytes());
    if !bool::from(given.as_slice().ct_eq(expected.as_slice())) {
        return Err(SignatureError::Mismatch);
    }
    if now > expires {
        return Err(SignatureError::Expired { expires });
    }
    Ok(())
}

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signed timestamp, Unix seconds.
    pub timestamp: u64,
    /// Every `v1` value, decoded from hex.
    pub signatures: Vec<Vec<u8>>,
}

/// Parses `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`; unknown keys are skipped.
pub fn parse_header(header: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let part = part.trim();
        let Some((key, value)) = part.split_once('=') else {
            return Err(SignatureError::Malformed(format!(
                "{part:?} is not key=value"
            )));
        };
        match key {
            "t" => {
                let parsed = value.parse::<u64>().map_err(|_| {
                    SignatureError::Malformed(format!(
                        "timestamp {value:?} is not a number of seconds"
                    ))
                })?;
                if timestamp.replace(parsed).is_some() {
                    return Err(SignatureError::Malformed("two timestamps".to_owned()));
                }
            }
            "v1" => {
                let decoded = hex::decode(value).map_err(|_| {
                    SignatureError::Malformed(format!("v1 value {value:?} is not hex"))
                })?;
                signatures.push(decoded);
            }
            _ => {}
        }
    }
    let timestamp =
        timestamp.ok_or_else(|| SignatureError::Malformed("no t= timestamp".to_owned()))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature".to_owned()));
    }
    Ok(SignatureHeader {
        timestamp,
        signatures,
    })
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_link_is_bound_to_its_analysis_action_expiry_and_secret() {
        let signature = sign_action_link(b"secret", "a1", "rollback", 1_000);
        assert_eq!(
            verify_action_link(b"secret", "a1", "rollback", 1_000, &signature, 999),
            Ok(())
        );
        assert_eq!(
            verify_action_link(b"secret", "a1", "rollback", 1_000, &signature, 1_001),
            Err(SignatureError::Expired { expires: 1_000 })
        );
        for (secret, analysis, action, expires) in [
            (&b"other"[..], "a1", "rollback", 1_000),
            (&b"secret"[..], "a2", "rollback", 1_000),
            (&b"secret"[..], "a1", "promote", 1_000),
            (&b"secret"[..], "a1", "rollback", 2_000),
        ] {
            assert_eq!(
                verify_action_link(secret, analysis, action, expires, &signature, 0),
                Err(SignatureError::Mismatch),
                "{analysis} {action} {expires}"
            );
        }
        assert!(matches!(
            verify_action_link(b"secret", "a1", "rollback", 1_000, "zz", 0),
            Err(SignatureError::Malformed(_))
        ));
    }

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"version":1,"flag":"checkout"}"#;

    // Reference values from Python's standard library, independent of this code:
    // python3 -c 'import hmac, hashlib; print(hmac.new(b"whsec_test",
    //   b"1700000000." + b"{\"version\":1,\"flag\":\"checkout\"}", hashlib.sha256).hexdigest())'
    const BODY_SIGNATURE: &str = "3fc052f2434d12c49dd26d5ac8da10d5695b91843e538fb6ba1e52d4288a176c";
    // python3 -c 'import hmac, hashlib; print(hmac.new(b"whsec_test", b"1700000000.",
    //   hashlib.sha256).hexdigest())'
    const EMPTY_BODY_SIGNATURE: &str =
        "5967f3c560522fa40cf2876ebc3c3a08551dd6959aaade3b413460591895bdcc";

    #[test]
    fn signatures_match_an_independent_hmac_implementation() {
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            format!("t=1700000000,v1={BODY_SIGNATURE}")
        );
        assert_eq!(
            sign(SECRET, 1_700_000_000, b""),
            format!("t=1700000000,v1={EMPTY_BODY_SIGNATURE}")
        );
    }

    #[test]
    fn a_fresh_signature_verifies() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            verify(SECRET, &header, BODY, 1_700_000_100, DEFAULT_TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_or_secret_does_not_verify() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        let tampered = br#"{"version":1,"flag":"checkouT"}"#;
        assert_eq!(
            verify(SECRET, &header, tampered, 1_700_000_000, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, BODY, 1_700_000_000, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_replayed_body_with_a_new_timestamp_does_not_verify() {
        // The timestamp is signed: an attacker cannot refresh it on a captured request.
        let header = format!("t=1700000600,v1={BODY_SIGNATURE}");
        assert_eq!(
            verify(SECRET, &header, BODY, 1_700_000_600, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        let error = verify(SECRET, &header, BODY, 1_700_000_301, DEFAULT_TOLERANCE).unwrap_err();
        assert_eq!(
            error,
            SignatureError::Stale {
                timestamp: 1_700_000_000,
                age_seconds: 301,
                tolerance_seconds: 300
            }
        );
        assert!(verify(SECRET, &header, BODY, 1_699_999_000, DEFAULT_TOLERANCE).is_err());
        assert!(verify(SECRET, &header, BODY, 1_700_000_300, DEFAULT_TOLERANCE).is_ok());
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let header = format!(
            "t=1700000000,v1={},v1={BODY_SIGNATURE},v0=ignored",
            "00".repeat(32)
        );
        assert_eq!(
            verify(SECRET, &header, BODY, 1_700_000_000, DEFAULT_TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        for (header, expected) in [
            ("", "not key=value"),
            ("v1=00", "no t= timestamp"),
            ("t=1700000000", "no v1= signature"),
            ("t=soon,v1=00", "not a number"),
            ("t=1,t=2,v1=00", "two timestamps"),
            ("t=1700000000,v1=xyz", "not hex"),
        ] {
            let error = parse_header(header).unwrap_err();
            assert!(error.to_string().contains(expected), "{header}: {error}");
        }
    }
}
