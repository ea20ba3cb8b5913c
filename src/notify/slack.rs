//! Slack-compatible incoming webhooks (Slack, and the chat tools that accept its
//! format: Mattermost, Rocket.Chat, ...): `{"text": ..., "blocks": [...]}` in mrkdwn,
//! with a severity emoji, the flag, the verdict, the top reasons and the link.
//!
//! The webhook URL is the credential (anyone who has it can post to the channel), so
//! it is kept as a [`Secret`] and only its host is ever printed.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::http::JsonPoster;
use super::{Notification, Notifier, NotifyError, Severity};
use crate::sources::prometheus::Secret;

/// Posts notifications to a Slack-compatible incoming webhook.
pub struct SlackNotifier {
    poster: JsonPoster,
}

impl SlackNotifier {
    /// A notifier for the incoming-webhook `url`; `name` is its name in the settings.
    pub fn new(
        name: &str,
        url: &Secret,
        timeout: std::time::Duration,
    ) -> Result<Self, NotifyError> {
        Ok(Self {
            poster: JsonPoster::new(name, "slack", url.expose(), None, timeout)?,
        })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn describe(&self) -> String {
        self.poster.target().to_owned()
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&message(notification)).expect("a JSON value serializes");
        self.poster.post(body).await
    }
}

/// The emoji shortcode in front of a severity.
pub fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":white_check_mark:",
    }
}

/// Escapes the three characters mrkdwn gives a meaning to (`&`, `<`, `>`), so a
/// reason cannot turn into a link or a mention.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message body: `text` (the notification preview and the fallback for clients
/// without blocks) and `blocks`: the headline with where the analysis stands, the
/// top reasons, and a context line with the link and the suppressed note.
pub fn message(notification: &Notification) -> Value {
    let headline = format!(
        "{} *{}*",
        emoji(notification.severity),
        escape(&notification.title)
    );
    let mut standing = vec![
        format!("*Flag* `{}`", escape(&notification.flag)),
        format!("*Profile* `{}`", escape(&notification.profile)),
        format!("*State* {}", escape(&notification.state)),
    ];
    if let Some(verdict) = &notification.verdict {
        standing.push(format!("*Verdict* {}", escape(verdict.as_str())));
    }
    if let Some(stage) = notification.stage {
        standing.push(format!("*Stage* {}", stage + 1));
    }
    if let Some(traffic) = notification.traffic {
        standing.push(format!("*Traffic* {}%", crate::format::number(traffic)));
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("{headline}\n{}", standing.join(" · "))}
    })];
    let (reasons, more) = notification.top_reasons();
    if !reasons.is_empty() {
        let mut lines: Vec<String> = reasons
            .iter()
            .map(|reason| format!("• {}", escape(reason)))
            .collect();
        if more > 0 {
            lines.push(format!("• _and {more} more_"));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": lines.join("\n")}
        }));
    }
    let mut context = vec![format!("analysis `{}`", escape(&notification.analysis_id))];
    if let Some(url) = &notification.report_url {
        context.push(format!("<{}|Open the report>", escape(url)));
    }
    if let Some(note) = notification.suppressed_note() {
        context.push(note);
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]
    }));
    if !notification.action_urls.is_empty() {
        // Link buttons: they open canary's confirmation page, which asks for a reason
        // before anything is done (opening a link never acts).
        let buttons: Vec<Value> = notification
            .action_urls
            .iter()
            .map(|(action, url)| {
                let mut button = json!({
                    "type": "button",
                    "text": {"type": "plain_text", "text": format!("{}…", super::action_label(action))},
                    "url": url,
                    "action_id": format!("canary-{action}"),
                });
                if action == "rollback" {
                    button["style"] = json!("danger");
                }
                button
            })
            .collect();
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    let mut text = format!(
        "{} [{}] {}",
        emoji(notification.severity),
        notification.severity.name().to_uppercase(),
        notification.title
    );
    if let Some(note) = notification.suppressed_note() {
        text.push(' ');
        text.push_str(&note);
    }
    let mut text = escape(&text);
    for (action, url) in &notification.action_urls {
        // Clients without blocks (Mattermost, Rocket.Chat) get the links in the text.
        text.push_str(&format!(
            " · <{}|{}…>",
            escape(url),
            super::action_label(action)
        ));
    }
    json!({"text": text, "blocks": blocks})
}
