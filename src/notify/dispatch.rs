//! [`Notifications`]: the fan-out callers use. Filters by each notifier's
//! `min_severity`, rate-limits ([`RateLimiter`]), sends to every destination at once,
//! retries a temporary failure once after a short pause, and logs and counts what
//! failed. It never returns an error: a notification that cannot be delivered must not
//! stop the rollback it is about.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::rate_limit::{Decision, RateLimiter, RateLimits};
use super::{Notification, Notifier, NotifyError, Severity};
use crate::config::Settings;

/// The pause before the one retry of a temporary failure.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Attempts per destination: the first and one retry.
const ATTEMPTS: usize = 2;

struct Route {
    name: String,
    min_severity: Severity,
    notifier: Box<dyn Notifier>,
}

struct Inner {
    routes: Vec<Route>,
    limiter: Mutex<RateLimiter>,
    retry_pause: Duration,
    sent: AtomicU64,
    failed: AtomicU64,
    suppressed: AtomicU64,
}

/// Every configured notifier behind one rate limiter; cheap to clone (a shared
/// handle), so a caller can move a clone into a spawned task.
#[derive(Clone)]
pub struct Notifications {
    inner: Arc<Inner>,
}

/// What happened to one notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The rate limiter held it back (nothing was sent).
    pub suppressed: bool,
    /// The notifiers (by settings name) that took it.
    pub delivered: Vec<String>,
    /// The notifiers that did not, after the retry.
    pub failed: Vec<String>,
}

/// Counters since start, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationStats {
    /// Deliveries to one notifier that succeeded.
    pub sent: u64,
    /// Deliveries to one notifier that failed after the retry.
    pub failed: u64,
    /// Notifications the rate limiter held back.
    pub suppressed: u64,
}

impl Notifications {
    /// Named notifiers, each with the least severity it gets, behind one rate limiter.
    pub fn new(notifiers: Vec<(String, Severity, Box<dyn Notifier>)>, limits: RateLimits) -> Self {
        let routes = notifiers
            .into_iter()
            .map(|(name, min_severity, notifier)| Route {
                name,
                min_severity,
                notifier,
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                routes,
                limiter: Mutex::new(RateLimiter::new(limits)),
                retry_pause: RETRY_PAUSE,
                sent: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                suppressed: AtomicU64::new(0),
            }),
        }
    }

    /// The notifiers in `[notifiers.NAME]`, with the default [`RateLimits`]. Fails
    /// when one cannot be built (a bad URL, a secret variable that is not set), so a
    /// misconfigured notifier is found at start-up rather than at the first rollback.
    /// No notifiers is fine: every `send` then does nothing.
    pub fn from_settings(settings: &Settings) -> Result<Self, NotifyError> {
        let notifiers = settings
            .notifiers
            .iter()
            .map(|(name, config)| Ok((name.clone(), config.min_severity(), config.build(name)?)))
            .collect::<Result<Vec<_>, NotifyError>>()?;
        Ok(Self::new(notifiers, RateLimits::default()))
    }

    /// The same notifiers with another pause before the retry (tests use zero).
    pub fn with_retry_pause(self, pause: Duration) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.retry_pause = pause;
                Self {
                    inner: Arc::new(inner),
                }
            }
            // Already shared: keep it as it is rather than split the rate limiter.
            Err(inner) => Self { inner },
        }
    }

    /// Whether any notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.inner.routes.is_empty()
    }

    /// The counters since start.
    pub fn stats(&self) -> NotificationStats {
        NotificationStats {
            sent: self.inner.sent.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            suppressed: self.inner.suppressed.load(Ordering::Relaxed),
        }
    }

    /// Sends `notification` now (the system clock drives the rate limiter).
    pub async fn send(&self, notification: Notification) -> Delivery {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        self.send_at(notification, now).await
    }

    /// Sends `notification` as if it were `now` (Unix seconds) for the rate limiter.
    /// Never fails; the [`Delivery`] says what happened.
    pub async fn send_at(&self, mut notification: Notification, now: f64) -> Delivery {
        let routes: Vec<&Route> = self
            .inner
            .routes
            .iter()
            .filter(|route| notification.severity >= route.min_severity)
            .collect();
        if routes.is_empty() {
            return Delivery::default();
        }
        let decision = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .decide(&notification, now);
        match decision {
            Decision::Suppress => {
                self.inner.suppressed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(analysis = %notification.analysis_id, event = %notification.event, severity = notification.severity.name(), "notification suppressed by the rate limiter");
                return Delivery {
                    suppressed: true,
                    ..Delivery::default()
                };
            }
            Decision::Send { suppressed } => notification.suppressed = suppressed,
        }
        let notification = &notification;
        let outcomes = futures::future::join_all(
            routes
                .iter()
                .map(|route| async move { (route, self.deliver(route, notification).await) }),
        )
        .await;
        let mut delivery = Delivery::default();
        for (route, outcome) in outcomes {
            match outcome {
                Ok(()) => {
                    self.inner.sent.fetch_add(1, Ordering::Relaxed);
                    delivery.delivered.push(route.name.clone());
                }
                Err(error) => {
                    self.inner.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(notifier = %route.name, analysis = %notification.analysis_id, event = %notification.event, error = %error, "notification not delivered");
                    delivery.failed.push(route.name.clone());
                }
            }
        }
        delivery
    }

    async fn deliver(&self, route: &Route, notification: &Notification) -> Result<(), NotifyError> {
        let mut attempt = 1;
        loop {
            match route.notifier.notify(notification).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_retryable() && attempt < ATTEMPTS => {
                    tracing::debug!(notifier = %route.name, error = %error, "notification failed; trying once more");
                    tokio::time::sleep(self.inner.retry_pause).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
