//! Notifications: telling the people on call about rollbacks (critical), holds that
//! wait for a review (warning) and promotions (info).
//!
//! - [`Notification`]: what happened to which analysis, with its top reasons and link;
//!   [`Notification::for_state`] builds one from a stored analysis that has just
//!   reached a state worth telling.
//! - [`Notifier`]: one destination. [`slack`] posts a Slack-compatible incoming-webhook
//!   message; [`json`] posts the notification as JSON, signed with the same
//!   `X-Canary-Signature` as the webhook actuator ([`crate::signing`]) when a secret is
//!   configured.
//! - [`NotifierConfig`]: `[notifiers.NAME]` in the settings, and `build()`.
//! - [`Notifications`]: the one thing callers use. It fans a notification out to every
//!   notifier whose `min_severity` it reaches, through a [`RateLimiter`] so a flapping
//!   analysis cannot flood a channel, retries a failed delivery once, and logs and
//!   counts failures **without ever failing the caller**: a chat service that is down
//!   must not stop a rollback.
//!
//! This module sends; it does not decide when. The caller (the worker) says what
//! happened, and passes the time in, so the rate limiter is tested without sleeping.

mod config;
mod dispatch;
mod http;
pub mod json;
pub mod links;
mod rate_limit;
pub mod slack;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::Verdict;
use crate::store::{Analysis, AnalysisState};
pub use config::NotifierConfig;
pub use dispatch::{Delivery, NotificationStats, Notifications};
pub use rate_limit::{Decision, RateLimiter, RateLimits};

/// At most this many reasons are sent; the rest are counted ("and 3 more").
pub const MAX_REASONS: usize = 5;

/// How urgent a notification is. Ordered: `info` < `warning` < `critical`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something went as planned (a promotion).
    #[default]
    Info,
    /// A person should look (a hold waiting for review, an analysis that could not run).
    Warning,
    /// A person must act now (a rollback, a rollback that failed).
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One thing that happened to one analysis, as people on call are told it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// How urgent it is.
    pub severity: Severity,
    /// What happened, as a stable key: `rolled_back`, `rollback_failed`,
    /// `awaiting_review`, `promoted`, `failed` (the analysis states [`for_state`] uses),
    /// or another name. The rate limiter treats different events as different
    /// notifications, so a `rollback_failed` is never held back by the `rolled_back`
    /// before it.
    ///
    /// [`for_state`]: Notification::for_state
    pub event: String,
    /// One line for people: "Rolled back new-checkout".
    pub title: String,
    /// The analysis.
    pub analysis_id: String,
    /// The feature flag.
    pub flag: String,
    /// The analysis profile's name.
    pub profile: String,
    /// The analysis state (`rolled_back`, `awaiting_review`, ...).
    pub state: String,
    /// The latest verdict (`promote`, `hold`, `rollback`), if there was a look.
    pub verdict: Option<Verdict>,
    /// The 0-based index of the current stage, once started.
    pub stage: Option<usize>,
    /// The canary's share of traffic in percent, once started.
    pub traffic: Option<f64>,
    /// Why, most important first; at most [`MAX_REASONS`] are sent.
    pub reasons: Vec<String>,
    /// Where a person reads the analysis.
    pub report_url: Option<String>,
    /// Signed links that promote or roll back the analysis after a confirmation
    /// ([`links::ActionLinks`]), by action; empty unless the server signs links.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub action_urls: BTreeMap<String, String>,
    /// When it happened, Unix seconds.
    pub time: f64,
    /// How many notifications like this one the rate limiter held back since the last
    /// one that was sent. Set by [`Notifications`]; leave it 0.
    #[serde(default)]
    pub suppressed: u64,
}

/// "Roll back", "Promote": how an action link is labelled for people.
pub fn action_label(action: &str) -> &str {
    match action {
        "rollback" => "Roll back",
        "promote" => "Promote",
        other => other,
    }
}

impl Notification {
    /// The notification for an analysis that has just reached `analysis.state`, or
    /// `None` for states nobody is told about (pending, running, paused):
    ///
    /// | state | severity | event |
    /// |---|---|---|
    /// | `rolled_back` | critical | `rolled_back` |
    /// | `rollback_failed` | critical | `rollback_failed` |
    /// | `awaiting_review` | warning | `awaiting_review` |
    /// | `failed` | warning | `failed` |
    /// | `promoted` | info | `promoted` |
    ///
    /// `report_url` is where people read the analysis (from `server.public_url`);
    /// `time` is now, Unix seconds.
    pub fn for_state(analysis: &Analysis, report_url: Option<String>, time: f64) -> Option<Self> {
        let flag = &analysis.flag;
        let (severity, title) = match analysis.state {
            AnalysisState::RolledBack => (Severity::Critical, format!("Rolled back {flag}")),
            AnalysisState::RollbackFailed => (
                Severity::Critical,
                format!("Rollback FAILED for {flag}: the canary may still serve traffic"),
            ),
            AnalysisState::AwaitingReview => (
                Severity::Warning,
                format!("{flag} is held and waits for a review"),
            ),
            AnalysisState::Failed => (
                Severity::Warning,
                format!("The analysis of {flag} could not run"),
            ),
            AnalysisState::Promoted => (Severity::Info, format!("Promoted {flag} to 100 %")),
            AnalysisState::Pending | AnalysisState::Running | AnalysisState::Paused => {
                return None;
            }
        };
        Some(Notification {
            severity,
            event: analysis.state.to_string(),
            title,
            analysis_id: analysis.id.to_string(),
            flag: flag.clone(),
            profile: analysis.profile_name.clone(),
            state: analysis.state.to_string(),
            verdict: analysis.latest_verdict,
            stage: analysis.current_stage,
            traffic: analysis.traffic,
            reasons: analysis.reasons.clone(),
            report_url,
            action_urls: BTreeMap::new(),
            time,
            suppressed: 0,
        })
    }

    /// The notification that a progressive rollback of `analysis` has started (critical,
    /// event `rolling_back`): it ends minutes later, and people on call hear of it now.
    /// `analysis` is the record as the look left it: still running, its traffic the
    /// first reduction, its reasons the look's.
    pub fn rolling_back(analysis: &Analysis, report_url: Option<String>, time: f64) -> Self {
        Notification {
            severity: Severity::Critical,
            event: "rolling_back".to_owned(),
            title: format!("Rolling back {} progressively", analysis.flag),
            analysis_id: analysis.id.to_string(),
            flag: analysis.flag.clone(),
            profile: analysis.profile_name.clone(),
            state: analysis.state.to_string(),
            verdict: analysis.latest_verdict,
            stage: analysis.current_stage,
            traffic: analysis.traffic,
            reasons: analysis.reasons.clone(),
            report_url,
            action_urls: BTreeMap::new(),
            time,
            suppressed: 0,
        }
    }

    /// The reasons that are sent (at most [`MAX_REASONS`]) and how many were left out.
    pub fn top_reasons(&self) -> (&[String], usize) {
        let shown = self.reasons.len().min(MAX_REASONS);
        (&self.reasons[..shown], self.reasons.len() - shown)
    }

    /// `(3 similar notifications suppressed)`, or `None` when nothing was.
    pub fn suppressed_note(&self) -> Option<String> {
        match self.suppressed {
            0 => None,
            1 => Some("(1 similar notification suppressed)".to_owned()),
            count => Some(format!("({count} similar notifications suppressed)")),
        }
    }

    /// Plain text on a few lines: title, where the analysis stands, the top reasons,
    /// the link and the suppressed note. For logs and plain-text receivers.
    pub fn plain_text(&self) -> String {
        let mut text = format!("[{}] {}", self.severity.name().to_uppercase(), self.title);
        let _ = write!(text, "\n{}", self.standing());
        let (reasons, more) = self.top_reasons();
        for reason in reasons {
            let _ = write!(text, "\n- {reason}");
        }
        if more > 0 {
            let _ = write!(text, "\n- and {more} more");
        }
        if let Some(url) = &self.report_url {
            let _ = write!(text, "\n{url}");
        }
        for (action, url) in &self.action_urls {
            let _ = write!(text, "\n{} (asks to confirm): {url}", action_label(action));
        }
        if let Some(note) = self.suppressed_note() {
            let _ = write!(text, "\n{note}");
        }
        text
    }

    /// "flag new-checkout · profile web-service · state rolled_back · verdict rollback ·
    /// stage 2 · traffic 5% · analysis ID".
    fn standing(&self) -> String {
        let mut parts = vec![
            format!("flag {}", self.flag),
            format!("profile {}", self.profile),
            format!("state {}", self.state),
        ];
        if let Some(verdict) = &self.verdict {
            parts.push(format!("verdict {verdict}"));
        }
        if let Some(stage) = self.stage {
            parts.push(format!("stage {}", stage + 1));
        }
        if let Some(traffic) = self.traffic {
            parts.push(format!("traffic {}%", crate::format::number(traffic)));
        }
        parts.push(format!("analysis {}", self.analysis_id));
        parts.join(" · ")
    }
}

/// Why a notification was not delivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotifyError {
    /// The destination could not be reached or answered 408, 429 or 5xx: worth one
    /// more try.
    #[error("notifier {target} unavailable: {message}")]
    Unavailable {
        /// The destination, without credentials.
        target: String,
        /// What happened.
        message: String,
    },
    /// The destination refused the notification (any other non-2xx status).
    #[error("notifier {target} refused the notification: {message}")]
    Rejected {
        /// The destination, without credentials.
        target: String,
        /// The status and the start of the answer.
        message: String,
    },
    /// The notifier cannot be built: a bad URL, a secret variable that is not set.
    #[error("notifier {name}: {message}")]
    Config {
        /// The notifier's name in the settings (or its kind).
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl NotifyError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NotifyError::Unavailable { .. })
    }
}

/// One destination for notifications.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// A short name for logs, without credentials: `slack:hooks.slack.com`.
    fn describe(&self) -> String;

    /// Delivers one notification: one attempt ([`Notifications`] retries).
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}
