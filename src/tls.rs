//! Outgoing HTTPS: the one place that knows whether this build speaks TLS.
//!
//! Every outgoing HTTP client (the Prometheus source, the Slack and JSON notifiers, the
//! webhook and Unleash actuators, the `canary submit` / `canary wait` client) starts
//! from [`client_builder`], and every URL setting is checked with [`check_https`] when
//! it is read, so that a build without TLS refuses an `https://` URL at start-up,
//! naming the setting, and never fails later when sending.
//!
//! With the `rustls` feature (the default) HTTPS goes through rustls with reqwest's
//! aws-lc-rs crypto provider. Servers' certificates are checked against the platform's roots (on Linux the
//! system's CA bundle, read by `rustls-native-certs`: `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` override where it is looked for), plus any CA a setting adds (the
//! Prometheus source's `ca_file`). A client that only ever speaks plain HTTP trusts no
//! root at all, so it builds on a machine without a CA bundle.
//!
//! This module does no I/O of its own beyond what [`ca_certificates`] reads.

use std::path::Path;

/// Whether this build can make HTTPS requests (the `rustls` feature).
pub const HTTPS_BUILT_IN: bool = cfg!(feature = "rustls");

/// An `https://` URL in a build without TLS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{setting}: {url:?} is an https URL, but this canary was built without TLS (`--no-default-features`); rebuild it with the default `rustls` feature, or use an http URL"
)]
pub struct TlsNotBuiltIn {
    /// The setting that holds the URL, e.g. `url` or `--server`.
    pub setting: String,
    /// The URL's origin (`https://host:port`) only: paths and queries can be
    /// credentials (a Slack webhook's is).
    pub url: String,
}

/// Refuses `url` (held by `setting`) if it is `https://` and this build has no TLS.
/// Any other scheme passes: callers check for http(s) themselves.
pub fn check_https(url: &reqwest::Url, setting: &str) -> Result<(), TlsNotBuiltIn> {
    if url.scheme() == "https" && !HTTPS_BUILT_IN {
        return Err(TlsNotBuiltIn {
            setting: setting.to_owned(),
            url: url.origin().ascii_serialization(),
        });
    }
    Ok(())
}

/// The start of every outgoing HTTP client. `https` says whether the client will
/// ever be given an `https://` URL: if not, it trusts no root certificate (so it
/// needs no CA bundle on the machine, and an unexpected redirect to HTTPS fails
/// closed); if so, it checks certificates against the platform's roots.
pub fn client_builder(https: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    #[cfg(feature = "rustls")]
    if !https {
        return builder.tls_certs_only(std::iter::empty());
    }
    let _ = https;
    builder
}

/// The CA certificates in the PEM file at `path`, for a setting such as `ca_file`.
/// Errors say what is wrong with the file; the caller names the setting.
#[cfg(feature = "rustls")]
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|error| format!("cannot read {path:?}: {error}"))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|error| format!("{path:?} is not a PEM certificate bundle: {error}"))?;
    if certificates.is_empty() {
        return Err(format!("{path:?} holds no PEM certificate"));
    }
    Ok(certificates)
}

/// Without TLS there is nothing to trust: a CA file is a setting this build cannot
/// honour, so it is refused rather than ignored.
#[cfg(not(feature = "rustls"))]
pub fn ca_certificates(path: &Path) -> Result<Vec<std::convert::Infallible>, String> {
    Err(format!(
        "{path:?}: this canary was built without TLS (`--no-default-features`), so it cannot use a CA file"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn http_urls_pass_in_every_build() {
        assert_eq!(check_https(&url("http://prometheus:9090"), "url"), Ok(()));
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn https_urls_pass_when_tls_is_built_in() {
        assert_eq!(
            check_https(&url("https://hooks.slack.com/x"), "url"),
            Ok(())
        );
    }

    #[cfg(not(feature = "rustls"))]
    #[test]
    fn https_urls_are_refused_without_tls_naming_the_setting_and_no_secret() {
        let error = check_https(
            &url("https://user:pw@hooks.slack.com/services/SECRET?token=t"),
            "url",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("url: \"https://hooks.slack.com\" is an https URL"),
            "{error}"
        );
        for secret in ["pw", "SECRET", "token"] {
            assert!(!error.contains(secret), "{error}");
        }
    }

    #[test]
    fn clients_build_for_plain_http_and_for_https() {
        client_builder(false).build().unwrap();
        client_builder(true).build().unwrap();
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn a_ca_file_that_is_not_pem_is_refused_with_its_path() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate\n").unwrap();
        let error = ca_certificates(file.path()).unwrap_err();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        let error = ca_certificates(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            error.contains("cannot read \"/nonexistent/ca.pem\""),
            "{error}"
        );
    }
}
