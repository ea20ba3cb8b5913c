//! Time for the runner: "analysis time" in Unix seconds, and a way to wait for it.
//!
//! Live rollouts use the system clock. Replays and tests use a compressed clock that
//! starts at a chosen analysis time and runs `speed` times faster than the wall
//! clock; it is built on tokio's clock, so `tokio::time::pause()` makes it instant.

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
}
