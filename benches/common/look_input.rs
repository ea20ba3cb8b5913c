//! The rollout the look benchmarks run: the web-service profile over the healthy
//! replay, with the log-only actuator.

use std::path::Path;
use std::sync::Arc;

use canary::actuators::log_only::LogOnlyActuator;
use canary::domain::Profile;
use canary::scheduler::{Rollout, RolloutRunner, RolloutStatus, Scopes};
use canary::sources::replay::ReplaySource;

/// The profile and the recording, read once.
pub struct Replay {
    profile: Arc<Profile>,
    source: Arc<ReplaySource>,
    start: f64,
    end: f64,
}

impl Replay {
    /// Reads `analysis-profiles/web-service.toml` and `fixtures/replay/healthy`.
    pub fn open() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = root.join("analysis-profiles/web-service.toml");
        let text = std::fs::read_to_string(&path).expect("the web-service profile");
        let profile = Profile::parse(&text, &path.display().to_string()).expect("a profile");
        let source = ReplaySource::open(&root.join("fixtures/replay/healthy")).expect("a replay");
        let (start, end) = source.time_range().expect("a recording with points");
        Self {
            profile: Arc::new(profile),
            source: Arc::new(source),
            start,
            end,
        }
    }

    /// A runner started at the recording's first timestamp.
    pub async fn started_runner(&self) -> RolloutRunner {
        let rollout = Rollout {
            profile: Arc::clone(&self.profile),
            flag: "checkout".to_owned(),
            scopes: Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
            dry_run: false,
        };
        let source = Arc::clone(&self.source) as Arc<dyn canary::sources::MetricSource>;
        let mut runner = RolloutRunner::new(rollout, source, Arc::new(LogOnlyActuator::new()))
            .expect("a rollout plan");
        runner.start(self.start).await.expect("a start");
        runner
    }

    /// Whether `runner` still has a look to take within the recording.
    pub fn has_look(&self, runner: &RolloutRunner) -> bool {
        matches!(
            runner.status(),
            RolloutStatus::Running | RolloutStatus::AwaitingReview
        ) && runner.next_look_at() <= self.end
    }
}
