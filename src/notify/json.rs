//! A generic JSON POST of each notification, for receivers other than chat: an
//! incident tool, an internal bus. The body is [`JsonBody`] (schema version 1); with a
//! secret it carries the same `X-Canary-Signature` as the webhook actuator, which
//! receivers verify as `docs/webhook-actuator.md` shows.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::http::JsonPoster;
use super::{Notification, Notifier, NotifyError};
use crate::sources::prometheus::Secret;

/// The body of a JSON notification: `version`, the notification's fields flattened
/// (`severity`, `event`, `title`, `analysis_id`, `flag`, `profile`, `state`, `verdict`,
/// `stage`, `traffic`, `reasons` (at most five), `report_url`, `time`, `suppressed`),
/// and `text`, the same as plain text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonBody {
    /// Always 1.
    pub version: u32,
    /// The notification, with at most [`super::MAX_REASONS`] reasons.
    #[serde(flatten)]
    pub notification: Notification,
    /// [`Notification::plain_text`].
    pub text: String,
}

impl JsonBody {
    /// The body for `notification`.
    pub fn new(notification: &Notification) -> Self {
        let text = notification.plain_text();
        let mut notification = notification.clone();
        notification.reasons.truncate(super::MAX_REASONS);
        Self {
            version: 1,
            notification,
            text,
        }
    }
}

/// POSTs every notification as JSON.
pub struct JsonNotifier {
    poster: JsonPoster,
}

impl JsonNotifier {
    /// A notifier for `url`, signing with `secret` when there is one.
    pub fn new(
        name: &str,
        url: &str,
        secret: Option<Secret>,
        timeout: std::time::Duration,
    ) -> Result<Self, NotifyError> {
        Ok(Self {
            poster: JsonPoster::new(name, "json", url, secret, timeout)?,
        })
    }
}

#[async_trait]
impl Notifier for JsonNotifier {
    fn describe(&self) -> String {
        self.poster.target().to_owned()
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&JsonBody::new(notification)).expect("the body serializes");
        self.poster.post(body).await
    }
}
