//! Time for the runner: "analysis time" in Unix seconds, and a way to wait for it.
//!
//! Live rollouts use the system clock. Replays and tests use a compressed clock that
//! starts at a chosen analysis time and runs `speed` times faster than the wall
//! clock; it is built on tokio's clock, so `tokio::time::pause()` makes it instant.
//! Tests that drive workers step by step use a manual clock, which moves only when
//! told to.

use async_trait::async_trait;

/// A source of analysis time.
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current analysis time, Unix seconds.
    fn now(&self) -> f64;
    /// Waits until the analysis time reaches `at` (returns at once if it has).
    async fn sleep_until(&self, at: f64);
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    async fn sleep_until(&self, at: f64) {
        let wait = at - self.now();
        if wait > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
        }
    }
}

/// Analysis time that starts at `origin` and runs `speed` times faster than tokio's clock.
#[derive(Debug, Clone, Copy)]
pub struct CompressedClock {
    origin: f64,
    started: tokio::time::Instant,
    speed: f64,
}

impl CompressedClock {
    /// A clock reading `origin` now and advancing `speed` analysis seconds per wall second.
    pub fn new(origin: f64, speed: f64) -> Self {
        Self {
            origin,
            started: tokio::time::Instant::now(),
            speed: speed.max(f64::MIN_POSITIVE),
        }
    }
}

#[async_trait]
impl Clock for CompressedClock {
    fn now(&self) -> f64 {
        self.origin + self.started.elapsed().as_secs_f64() * self.speed
    }

    async fn sleep_until(&self, at: f64) {
        let wait = (at - self.now()) / self.speed;
        if wait > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
        }
    }
}

/// Analysis time that moves only when told to ([`ManualClock::set`],
/// [`ManualClock::advance`]): tests drive workers look by look with it, without sleeping
/// and without a wall clock in the way. Waiters wake when the time is set past theirs.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<f64>,
}

impl ManualClock {
    /// A clock reading `at` until it is moved.
    pub fn new(at: f64) -> Self {
        Self {
            now: tokio::sync::watch::Sender::new(at),
        }
    }

    /// Sets the time (it may go backwards; nothing here needs it to be monotonic).
    pub fn set(&self, at: f64) {
        self.now.send_replace(at);
    }

    /// Moves the time forward by `seconds`.
    pub fn advance(&self, seconds: f64) {
        self.now.send_modify(|now| *now += seconds);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> f64 {
        *self.now.borrow()
    }

    async fn sleep_until(&self, at: f64) {
        let mut receiver = self.now.subscribe();
        // The sender lives as long as the clock, which outlives every `&self` borrow.
        let _ = receiver.wait_for(|now| *now >= at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_compressed_clock_runs_faster_than_the_wall_clock() {
        let clock = CompressedClock::new(1_700_000_000.0, 60.0);
        assert_eq!(clock.now(), 1_700_000_000.0);
        clock.sleep_until(1_700_000_600.0).await;
        assert!((clock.now() - 1_700_000_600.0).abs() < 1e-3);
        // Ten analysis minutes took ten wall seconds.
        assert!((clock.started.elapsed().as_secs_f64() - 10.0).abs() < 1e-3);
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_set_past_their_time() {
        let clock = std::sync::Arc::new(ManualClock::new(100.0));
        clock.sleep_until(50.0).await;
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(160.0).await }
        });
        clock.advance(30.0);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.set(160.0);
        sleeper.await.unwrap();
        assert_eq!(clock.now(), 160.0);
    }
}
