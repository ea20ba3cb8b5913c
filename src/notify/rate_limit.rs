//! How a flapping analysis is kept from flooding a channel. Pure: the caller passes
//! the time in, so the rules are tested with made-up clocks.
//!
//! Three rules, checked in this order:
//!
//! 1. **Repeats**: one notification per *(analysis, event, severity)* per
//!    `repeat_window` (5 minutes). A second `awaiting_review` for the same analysis
//!    within five minutes is held back. Keyed by event rather than by severity alone,
//!    so a different event — `rollback_failed` right after `rolled_back`, both
//!    critical — is never starved by the one before it.
//! 2. **Per analysis**: at most `per_analysis` non-critical notifications per
//!    analysis per `repeat_window` (default 3), whatever their events.
//! 3. **Globally**: at most `global_per_minute` notifications in any 60 seconds across
//!    all analyses (default 20); critical ones are counted but never held back by it
//!    (nor by rule 2): a page for a rollback must not be lost behind a burst of
//!    promotions.
//!
//! What is held back is counted per *(analysis, event, severity)*; the next
//! notification of that key that is let through carries the count and says
//! "(N similar notifications suppressed)". A count whose key never sends again is
//! forgotten after an hour.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{Notification, Severity};

/// The limits; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// One notification per (analysis, event, severity) in this window; also the window
    /// of `per_analysis`. Default 5 minutes.
    pub repeat_window: Duration,
    /// Non-critical notifications per analysis per `repeat_window`. Default 3.
    pub per_analysis: usize,
    /// Notifications in any 60 seconds, across analyses; critical ones are never held
    /// back by it. Default 20.
    pub global_per_minute: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            repeat_window: Duration::from_secs(300),
            per_analysis: 3,
            global_per_minute: 20,
        }
    }
}

/// What to do with one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it; `suppressed` like it were held back since the last one sent.
    Send {
        /// How many.
        suppressed: u64,
    },
    /// Hold it back (it is counted).
    Suppress,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    analysis_id: String,
    event: String,
    severity: Severity,
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    last_sent: Option<f64>,
    suppressed: u64,
    last_seen: f64,
}

/// How long a held-back count waits for its key to send again.
const FORGET_AFTER_SECONDS: f64 = 3600.0;

/// The rate limiter's memory; see the module docs.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    keys: HashMap<Key, KeyState>,
    /// When each recent non-critical notification of each analysis was sent.
    per_analysis: HashMap<String, VecDeque<f64>>,
    /// When each notification of the last minute was sent.
    recent: VecDeque<f64>,
}

impl RateLimiter {
    /// A limiter with these limits.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Decides about `notification` at `now` (Unix seconds) and remembers the decision.
    pub fn decide(&mut self, notification: &Notification, now: f64) -> Decision {
        let window = self.limits.repeat_window.as_secs_f64();
        self.forget_before(now);
        let key = Key {
            analysis_id: notification.analysis_id.clone(),
            event: notification.event.clone(),
            severity: notification.severity,
        };
        let critical = notification.severity == Severity::Critical;
        let analysis_recent = self
            .per_analysis
            .entry(key.analysis_id.clone())
            .or_default();
        while analysis_recent
            .front()
            .is_some_and(|sent| *sent <= now - window)
        {
            analysis_recent.pop_front();
        }
        let analysis_full = analysis_recent.len() >= self.limits.per_analysis;
        let global_full = self.recent.len() >= self.limits.global_per_minute;
        let state = self.keys.entry(key).or_default();
        state.last_seen = now;
        let repeat = state.last_sent.is_some_and(|sent| now - sent < window);
        if repeat || (!critical && (analysis_full || global_full)) {
            state.suppressed += 1;
            return Decision::Suppress;
        }
        let suppressed = std::mem::take(&mut state.suppressed);
        state.last_sent = Some(now);
        self.recent.push_back(now);
        if !critical {
            analysis_recent.push_back(now);
        }
        Decision::Send { suppressed }
    }

    /// Drops what no rule looks at any more.
    fn forget_before(&mut self, now: f64) {
        while self.recent.front().is_some_and(|sent| *sent <= now - 60.0) {
            self.recent.pop_front();
        }
        let window = self.limits.repeat_window.as_secs_f64();
        self.keys.retain(|_, state| {
            let sent_recently = state.last_sent.is_some_and(|sent| now - sent < window);
            let counting = state.suppressed > 0 && now - state.last_seen < FORGET_AFTER_SECONDS;
            sent_recently || counting
        });
        self.per_analysis
            .retain(|_, sent| sent.back().is_some_and(|last| now - last < window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_700_000_000.0;

    fn notification(analysis: &str, event: &str, severity: Severity) -> Notification {
        Notification {
            severity,
            event: event.to_owned(),
            title: format!("{event} checkout"),
            analysis_id: analysis.to_owned(),
            flag: "checkout".to_owned(),
            profile: "web-service".to_owned(),
            state: event.to_owned(),
            verdict: None,
            stage: None,
            traffic: None,
            reasons: Vec::new(),
            report_url: None,
            action_urls: std::collections::BTreeMap::new(),
            time: T0,
            suppressed: 0,
        }
    }

    #[test]
    fn a_repeat_within_the_window_is_held_back_and_counted_in_the_next_one_sent() {
        let mut limiter = RateLimiter::new(RateLimits::default());
        let held = notification("a1", "awaiting_review", Severity::Warning);
        assert_eq!(limiter.decide(&held, T0), Decision::Send { suppressed: 0 });
        for offset in [10.0, 60.0, 299.0] {
            assert_eq!(limiter.decide(&held, T0 + offset), Decision::Suppress);
        }
        assert_eq!(
            limiter.decide(&held, T0 + 300.0),
            Decision::Send { suppressed: 3 }
        );
        assert_eq!(limiter.decide(&held, T0 + 301.0), Decision::Suppress);
        assert_eq!(
            limiter.decide(&held, T0 + 600.0),
            Decision::Send { suppressed: 1 }
        );
    }

    #[test]
    fn a_different_critical_event_is_not_starved_by_the_one_before_it() {
        let mut limiter = RateLimiter::new(RateLimits::default());
        let rolled_back = notification("a1", "rolled_back", Severity::Critical);
        let failed = notification("a1", "rollback_failed", Severity::Critical);
        assert_eq!(
            limiter.decide(&rolled_back, T0),
            Decision::Send { suppressed: 0 }
        );
        assert_eq!(limiter.decide(&rolled_back, T0 + 1.0), Decision::Suppress);
        assert_eq!(
            limiter.decide(&failed, T0 + 2.0),
            Decision::Send { suppressed: 0 }
        );
    }

    #[test]
    fn other_analyses_are_limited_separately() {
        let mut limiter = RateLimiter::new(RateLimits::default());
        for analysis in ["a1", "a2", "a3"] {
            let promoted = notification(analysis, "promoted", Severity::Info);
            assert_eq!(
                limiter.decide(&promoted, T0),
                Decision::Send { suppressed: 0 }
            );
        }
    }

    #[test]
    fn a_flapping_analysis_gets_at_most_three_non_critical_notifications_per_window() {
        let mut limiter = RateLimiter::new(RateLimits::default());
        let events = ["awaiting_review", "resumed", "held", "paused", "failed"];
        let decisions: Vec<Decision> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                limiter.decide(&notification("a1", event, Severity::Warning), T0 + i as f64)
            })
            .collect();
        assert_eq!(
            decisions
                .iter()
                .filter(|d| **d == Decision::Suppress)
                .count(),
            2
        );
        // A rollback still pages at once.
        assert_eq!(
            limiter.decide(
                &notification("a1", "rolled_back", Severity::Critical),
                T0 + 6.0
            ),
            Decision::Send { suppressed: 0 }
        );
        // After the window the held-back event is sent with its count.
        assert_eq!(
            limiter.decide(&notification("a1", "paused", Severity::Warning), T0 + 303.5),
            Decision::Send { suppressed: 1 }
        );
    }

    #[test]
    fn the_global_cap_holds_back_info_but_never_critical() {
        let limits = RateLimits {
            global_per_minute: 5,
            ..RateLimits::default()
        };
        let mut limiter = RateLimiter::new(limits);
        let mut sent = 0;
        for i in 0..10 {
            let promoted = notification(&format!("a{i}"), "promoted", Severity::Info);
            if limiter.decide(&promoted, T0 + i as f64) != Decision::Suppress {
                sent += 1;
            }
        }
        assert_eq!(sent, 5);
        let rollback = notification("a99", "rolled_back", Severity::Critical);
        assert_eq!(
            limiter.decide(&rollback, T0 + 11.0),
            Decision::Send { suppressed: 0 }
        );
        // A minute after the burst, info flows again and says what it missed.
        let late = notification("a7", "promoted", Severity::Info);
        assert_eq!(
            limiter.decide(&late, T0 + 72.0),
            Decision::Send { suppressed: 1 }
        );
    }

    #[test]
    fn forgotten_keys_do_not_grow_memory() {
        let mut limiter = RateLimiter::new(RateLimits::default());
        for i in 0..100 {
            limiter.decide(
                &notification(&format!("a{i}"), "promoted", Severity::Info),
                T0,
            );
        }
        limiter.decide(
            &notification("b", "promoted", Severity::Info),
            T0 + 10_000.0,
        );
        assert_eq!(limiter.keys.len(), 1);
        assert_eq!(limiter.per_analysis.len(), 1);
    }
}
