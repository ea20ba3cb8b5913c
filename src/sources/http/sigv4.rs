//! AWS Signature Version 4, for Amazon Managed Service for Prometheus (`aps`) and
//! Amazon CloudWatch (`monitoring`).
//!
//! A request is signed over its method, path, query, the `host` and `x-amz-date`
//! headers (and `x-amz-security-token` with temporary credentials) and the SHA-256 of
//! its body, as AWS documents the algorithm; the reference values in the tests come
//! from botocore's own signer (`fixtures/reference/sigv4.py`).
//!
//! Credentials are looked up when the source is built, in this order: `access_key` and
//! `secret_key` in the settings; `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`; the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, or
//! `~/.aws/credentials`) under `profile`, `AWS_PROFILE` or `default`. Not supported:
//! instance metadata (IMDS), container credentials, web identity and `role_arn`
//! (assume-role); temporary credentials that rotate need a restart.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Secret;

/// `sigv4 = { ... }`: how requests are signed, as in Prometheus' own `sigv4` block.
///
/// ```toml
/// sigv4 = { region = "eu-west-1" }     # credentials from the AWS environment
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Config {
    /// The AWS region, e.g. `eu-west-1`. Default: `AWS_REGION`, then
    /// `AWS_DEFAULT_REGION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An access key ID; give it with `secret_key`, or leave both out to use the AWS
    /// environment or shared credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The secret access key that goes with `access_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// The profile of the shared credentials file. Default: `AWS_PROFILE`, then
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The service name signed for. Default: `aps` for Prometheus sources,
    /// `monitoring` for CloudWatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// AWS credentials.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Option<Secret>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where the settings look things up: the process environment, or a fixed map in
/// tests.
pub(crate) trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub(crate) struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl SigV4Config {
    /// Resolves the region and the credentials and makes the signer for
    /// `default_service`, or says what is missing.
    pub(crate) fn signer(
        &self,
        default_service: &str,
        environment: &dyn Environment,
    ) -> Result<SigV4Signer, String> {
        let region = self
            .region
            .clone()
            .or_else(|| environment.var("AWS_REGION"))
            .or_else(|| environment.var("AWS_DEFAULT_REGION"))
            .ok_or("sigv4 needs a region: set sigv4.region or AWS_REGION")?;
        let credentials = self.credentials(environment)?;
        Ok(SigV4Signer {
            region,
            service: self
                .service
                .clone()
                .unwrap_or_else(|| default_service.to_owned()),
            credentials,
        })
    }

    fn credentials(&self, environment: &dyn Environment) -> Result<AwsCredentials, String> {
        match (&self.access_key, &self.secret_key) {
            (Some(access_key_id), Some(secret)) => {
                return Ok(AwsCredentials {
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret.clone(),
                    session_token: None,
                });
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err("sigv4.access_key and sigv4.secret_key go together".into());
            }
            (None, None) => {}
        }
        if let (Some(access_key_id), Some(secret)) = (
            environment.var("AWS_ACCESS_KEY_ID"),
            environment.var("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok(AwsCredentials {
                access_key_id,
                secret_access_key: Secret::new(secret),
                session_token: environment.var("AWS_SESSION_TOKEN").map(Secret::new),
            });
        }
        let file = environment
            .var("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| environment.var("HOME").map(|home| Path::new(&home).join(".aws/credentials")))
            .ok_or("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or sigv4.access_key and sigv4.secret_key")?;
        let profile = self
            .profile
            .clone()
            .or_else(|| environment.var("AWS_PROFILE"))
            .unwrap_or_else(|| "default".to_owned());
        let text = std::fs::read_to_string(&file).map_err(|error| {
            format!(
                "no AWS credentials in the environment, and the shared credentials file {} cannot be read: {error}",
                file.display()
            )
        })?;
        shared_credentials(&text, &profile).ok_or_else(|| {
            format!(
                "the shared credentials file {} has no aws_access_key_id and aws_secret_access_key under [{profile}]",
                file.display()
            )
        })
    }
}

/// The credentials of `profile` in an AWS shared credentials file (INI).
fn shared_credentials(text: &str, profile: &str) -> Option<AwsCredentials> {
    let mut in_profile = false;
    let mut values = std::collections::BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
            continue;
        }
        if in_profile && let Some((key, value)) = line.split_once('=') {
            values.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    Some(AwsCredentials {
        access_key_id: values.remove("aws_access_key_id")?,
        secret_access_key: Secret::new(values.remove("aws_secret_access_key")?),
        session_token: values.remove("aws_session_token").map(Secret::new),
    })
}

/// Signs requests for one region and service with one set of credentials.
#[derive(Debug, Clone)]
pub(crate) struct SigV4Signer {
    region: String,
    service: String,
    credentials: AwsCredentials,
}

impl SigV4Signer {
    /// The region it signs for.
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// A signer for fixed credentials.
    #[cfg(test)]
    pub(crate) fn new(region: &str, service: &str, credentials: AwsCredentials) -> Self {
        SigV4Signer {
            region: region.to_owned(),
            service: service.to_owned(),
            credentials,
        }
    }

    /// The headers to add to a request of `method` to `url` with `body`, signed at
    /// `now` (`x-amz-date`, `x-amz-security-token` with temporary credentials, and
    /// `authorization`). `extra_headers` are further headers the request carries that
    /// are signed too (lower-case names), such as `content-type` or `x-amz-target`.
    pub(crate) fn sign(
        &self,
        method: &str,
        url: &reqwest::Url,
        extra_headers: &[(&str, &str)],
        body: &[u8],
        now: time::OffsetDateTime,
    ) -> Vec<(&'static str, String)> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let amz_date = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let date = &amz_date[..8];
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token".into(), token.expose().to_owned()));
        }
        for (name, value) in extra_headers {
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let signed_headers = headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_request = format!(
            "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
            canonical_uri(url.path()),
            canonical_query(url),
            hex::encode(Sha256::digest(body))
        );
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let secret = format!("AWS4{}", self.credentials.secret_access_key.expose());
        let mut key = hmac(secret.as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        let mut result = vec![("x-amz-date", amz_date)];
        if let Some(token) = &self.credentials.session_token {
            result.push(("x-amz-security-token", token.expose().to_owned()));
        }
        result.push((
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                self.credentials.access_key_id
            ),
        ));
        result
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding with AWS's unreserved set (`A-Z a-z 0-9 - _ . ~`).
fn uri_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The path with each segment encoded again (every service but S3 signs the encoded
/// path encoded once more).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// The query parameters, decoded, encoded the AWS way and sorted.
fn canonical_query(url: &reqwest::Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(name, value)| (uri_encode(&name), uri_encode(&value)))
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static [(&'static str, &'static str)]);

    impl Environment for Fixed {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    fn reference() -> serde_json::Value {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/reference/sigv4.json"),
        )
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn signatures_match_botocore() {
        for case in reference()["cases"].as_array().unwrap() {
            let credentials = AwsCredentials {
                access_key_id: case["access_key"].as_str().unwrap().into(),
                secret_access_key: Secret::new(case["secret_key"].as_str().unwrap()),
                session_token: case["token"].as_str().map(Secret::new),
            };
            let signer = SigV4Signer::new(
                case["region"].as_str().unwrap(),
                case["service"].as_str().unwrap(),
                credentials,
            );
            let url = reqwest::Url::parse(case["url"].as_str().unwrap()).unwrap();
            let extra: Vec<(String, String)> = case["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
                .collect();
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let now =
                time::OffsetDateTime::from_unix_timestamp(case["time"].as_i64().unwrap()).unwrap();
            let headers = signer.sign(
                case["method"].as_str().unwrap(),
                &url,
                &extra,
                case["body"].as_str().unwrap().as_bytes(),
                now,
            );
            let authorization = headers
                .iter()
                .find(|(name, _)| *name == "authorization")
                .map(|(_, value)| value.as_str())
                .unwrap();
            assert_eq!(
                authorization,
                case["authorization"].as_str().unwrap(),
                "{}",
                case["name"]
            );
        }
    }

    #[test]
    fn credentials_come_from_settings_then_environment_then_the_shared_file() {
        let settings = SigV4Config {
            region: Some("eu-west-1".into()),
            access_key: Some("AKIDSETTINGS".into()),
            secret_key: Some(Secret::new("s")),
            ..SigV4Config::default()
        };
        let environment = Fixed(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "e"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_REGION", "us-east-2"),
        ]);
        let signer = settings.signer("aps", &environment).unwrap();
        assert_eq!(signer.credentials.access_key_id, "AKIDSETTINGS");
        assert_eq!(signer.region, "eu-west-1");
        let from_environment = SigV4Config::default().signer("aps", &environment).unwrap();
        assert_eq!(from_environment.credentials.access_key_id, "AKIDENV");
        assert_eq!(from_environment.region, "us-east-2");
        assert!(from_environment.credentials.session_token.is_some());
        assert_eq!(from_environment.service, "aps");

        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n\n[ci]\n# the CI user\naws_access_key_id=AKIDCI\naws_secret_access_key=c\n",
        )
        .unwrap();
        let file_text: &'static str = Box::leak(file.display().to_string().into_boxed_str());
        let environment = Fixed(Box::leak(Box::new([
            ("AWS_SHARED_CREDENTIALS_FILE", file_text),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
            ("AWS_PROFILE", "ci"),
        ])));
        let from_file = SigV4Config::default()
            .signer("monitoring", &environment)
            .unwrap();
        assert_eq!(from_file.credentials.access_key_id, "AKIDCI");
        assert_eq!(from_file.region, "ap-south-1");
        let named = SigV4Config {
            profile: Some("default".into()),
            ..SigV4Config::default()
        };
        assert_eq!(
            named
                .signer("aps", &environment)
                .unwrap()
                .credentials
                .access_key_id,
            "AKIDDEFAULT"
        );
        let missing = SigV4Config {
            profile: Some("nope".into()),
            ..SigV4Config::default()
        }
        .signer("aps", &environment)
        .unwrap_err();
        assert!(missing.contains("[nope]"), "{missing}");
    }

    #[test]
    fn missing_pieces_are_named() {
        let none = Fixed(&[]);
        let error = SigV4Config::default().signer("aps", &none).unwrap_err();
        assert!(error.contains("region"), "{error}");
        let half = SigV4Config {
            region: Some("eu-west-1".into()),
            access_key: Some("AKID".into()),
            ..SigV4Config::default()
        };
        let error = half.signer("aps", &none).unwrap_err();
        assert!(error.contains("go together"), "{error}");
    }
}
