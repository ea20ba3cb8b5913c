//! Signed action links: the promote and roll-back links a notification carries, so a
//! person in the chat channel can act without crafting a request with a token.
//!
//! A link is `{public_url}/v1/action-links/{analysis}?action=rollback&expires=T&sig=HEX`,
//! signed with `[server] action_link_secret_env`'s secret for that analysis, action
//! and expiry ([`crate::signing::sign_action_link`]), valid for `action_link_ttl`
//! (default 1 h). Opening it shows a confirmation page and never acts (chat tools fetch
//! links to preview them); the page's button posts the signed fields and a reason, and
//! the action is audited as `action-link`. Whoever holds the link may use it until it
//! expires: links are for the channel the notifications go to.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{ServerSettings, SettingsError, parse_positive_duration};
use crate::signing::{SignatureError, sign_action_link, verify_action_link};
use crate::sources::prometheus::Secret;

/// The actions a link can carry.
pub const LINK_ACTIONS: [&str; 2] = ["promote", "rollback"];

/// How action links are made and checked.
#[derive(Debug, Clone)]
pub struct ActionLinks {
    base: String,
    secret: Secret,
    ttl: Duration,
}

impl ActionLinks {
    /// Links under `public_url`, signed with `secret`, valid for `ttl`.
    pub fn new(public_url: &str, secret: Secret, ttl: Duration) -> Self {
        Self {
            base: public_url.trim_end_matches('/').to_owned(),
            secret,
            ttl,
        }
    }

    /// The links `[server]` asks for, `None` when `action_link_secret_env` is unset. The
    /// variable is read with `variable`; it must be set, at least 32 characters long,
    /// and `public_url` must be set (links are absolute).
    pub fn from_settings(
        server: &ServerSettings,
        variable: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        let Some(name) = &server.action_link_secret_env else {
            return Ok(None);
        };
        let secret = variable(name).unwrap_or_default();
        if secret.trim().len() < 32 {
            return Err(SettingsError(format!(
                "server.action_link_secret_env names {name}, which must hold a secret of at \
                 least 32 characters (it is {})",
                if secret.is_empty() {
                    "not set"
                } else {
                    "shorter"
                }
            )));
        }
        let Some(public_url) = &server.public_url else {
            return Err(SettingsError(
                "server.action_link_secret_env needs server.public_url: action links are \
                 absolute URLs"
                    .to_owned(),
            ));
        };
        let ttl = parse_positive_duration("server.action_link_ttl", &server.action_link_ttl)?;
        Ok(Some(Self::new(public_url, Secret::new(secret), ttl)))
    }

    /// The actions a notification about an analysis in `state` links to: promote or
    /// roll back one awaiting review (the one notification that waits for a person's
    /// decision; an ended analysis cannot be acted on).
    pub fn actions_for(state: &str) -> &'static [&'static str] {
        match state {
            "awaiting_review" => &["promote", "rollback"],
            _ => &[],
        }
    }

    /// The signed links for `analysis` in `state`, made at `now` (Unix seconds), by
    /// action.
    pub fn urls(&self, analysis: &str, state: &str, now: f64) -> BTreeMap<String, String> {
        let expires = (now.max(0.0) as u64).saturating_add(self.ttl.as_secs());
        Self::actions_for(state)
            .iter()
            .map(|action| {
                let sig =
                    sign_action_link(self.secret.expose().as_bytes(), analysis, action, expires);
                (
                    (*action).to_owned(),
                    format!(
                        "{}/v1/action-links/{analysis}?action={action}&expires={expires}&sig={sig}",
                        self.base
                    ),
                )
            })
            .collect()
    }

    /// Checks a link's fields at `now` (Unix seconds).
    pub fn verify(
        &self,
        analysis: &str,
        action: &str,
        expires: u64,
        signature: &str,
        now: f64,
    ) -> Result<(), SignatureError> {
        verify_action_link(
            self.secret.expose().as_bytes(),
            analysis,
            action,
            expires,
            signature,
            now.max(0.0) as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_made_for_reviews_and_promotions_and_verify_until_they_expire() {
        let links = ActionLinks::new(
            "https://canary.example.com/",
            Secret::new("x".repeat(32)),
            Duration::from_secs(3600),
        );
        let urls = links.urls("a1", "awaiting_review", 1_000.0);
        assert_eq!(urls.keys().collect::<Vec<_>>(), ["promote", "rollback"]);
        let rollback = &urls["rollback"];
        assert!(
            rollback.starts_with(
                "https://canary.example.com/v1/action-links/a1?action=rollback&expires=4600&sig="
            ),
            "{rollback}"
        );
        let sig = rollback.rsplit("sig=").next().unwrap();
        assert_eq!(links.verify("a1", "rollback", 4600, sig, 4600.0), Ok(()));
        assert!(links.verify("a1", "promote", 4600, sig, 1_000.0).is_err());
        assert!(links.verify("a1", "rollback", 4600, sig, 4601.0).is_err());
        assert!(links.urls("a1", "promoted", 0.0).is_empty());
        assert!(links.urls("a1", "rolled_back", 0.0).is_empty());
    }

    #[test]
    fn the_secret_must_be_set_long_and_come_with_a_public_url() {
        let mut server = ServerSettings {
            action_link_secret_env: Some("LINKS".to_owned()),
            public_url: Some("https://canary.example.com".to_owned()),
            ..ServerSettings::default()
        };
        let long = |_: &str| Some("y".repeat(40));
        assert!(
            ActionLinks::from_settings(&server, &long)
                .unwrap()
                .is_some()
        );
        let error = ActionLinks::from_settings(&server, &|_| None).unwrap_err();
        assert!(error.0.contains("LINKS"), "{error:?}");
        assert!(ActionLinks::from_settings(&server, &|_| Some("short".into())).is_err());
        server.public_url = None;
        let error = ActionLinks::from_settings(&server, &long).unwrap_err();
        assert!(error.0.contains("public_url"), "{error:?}");
        server.action_link_secret_env = None;
        assert!(
            ActionLinks::from_settings(&server, &long)
                .unwrap()
                .is_none()
        );
    }
}
