//! Pure decisions about the flag a rollout owns (issue 13): where a rollout starts on a
//! flag that may already be on ([`start_point`]), and what a look may do when the flag
//! read back is not as the runner left it ([`check_flag`], [`guard_decision`]).
//!
//! No I/O: the runner reads the flag through its actuator and passes the states in.

use crate::actuators::FlagState;
use crate::domain::Percentage;
use crate::domain::plan::Stage;

use super::records::Decision;

/// Two shares closer than this (percentage points) are the same: flag stores keep
/// weights as integers or per-mille, so a share read back may differ in its last digits.
const SHARE_TOLERANCE: f64 = 0.01;

/// Where a rollout starts, given the flag as it is before the rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartPoint {
    /// The flag is off or at most at the first stage's share: set the first stage.
    FirstStage,
    /// The flag is already beyond the first stage and the caller asked to adopt it:
    /// start at `stage_index` (the last stage whose share is at or below the flag's) and
    /// leave the flag at `share` until a verdict moves it.
    Adopt {
        /// The 0-based stage the rollout starts at.
        stage_index: usize,
        /// The flag's share, left as it is.
        share: Percentage,
    },
}

/// Where a rollout of `stages` starts on a flag found `current`, or why it must not
/// start. Starting on a flag already beyond the first stage would cut its traffic to the
/// first stage's share without any verdict; that is refused unless `adopt` is set.
pub fn start_point(
    flag: &str,
    stages: &[Stage],
    current: &FlagState,
    adopt: bool,
) -> Result<StartPoint, String> {
    let Some(first) = stages.first() else {
        return Err("the rollout plan has no stages".to_owned());
    };
    if !current.enabled || current.rollout.value() <= first.traffic.value() + SHARE_TOLERANCE {
        return Ok(StartPoint::FirstStage);
    }
    if !adopt {
        return Err(format!(
            "flag {flag:?} is already enabled at {}, beyond the plan's first stage {} at {}: \
             starting would cut its traffic without a verdict. Submit with adopt = true \
             (canary run --adopt) to continue from the stage at or below {}, or set the flag \
             to at most {} first",
            current.rollout, first.name, first.traffic, current.rollout, first.traffic
        ));
    }
    let stage_index = stages
        .iter()
        .rposition(|stage| stage.traffic.value() <= current.rollout.value() + SHARE_TOLERANCE)
        .unwrap_or(0);
    Ok(StartPoint::Adopt {
        stage_index,
        share: current.rollout,
    })
}

/// What reading the flag back at a look found.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagCheck {
    /// As the runner last wrote (or adopted) it, or nothing to compare with (a dry run,
    /// a snapshot from before the check existed).
    AsWritten,
    /// Someone else changed it; the reason names the expected and the found state.
    Changed {
        /// Why, naming both states.
        reason: String,
        /// What was found.
        found: FlagState,
    },
    /// It could not be read; the reason says why.
    Unreadable(String),
}

/// How a flag state reads in reasons: `enabled at 25%`, `disabled`.
pub fn describe(state: &FlagState) -> String {
    if state.enabled {
        format!("enabled at {}", state.rollout)
    } else {
        "disabled".to_owned()
    }
}

/// Compares the flag `found` at a look with the state the runner `expected` (the
/// read-back of its last change). A disabled flag is the same whatever share it keeps.
pub fn check_flag(flag: &str, expected: &FlagState, found: &FlagState) -> FlagCheck {
    if same_state(expected, found) {
        FlagCheck::AsWritten
    } else {
        FlagCheck::Changed {
            reason: format!(
                "flag {flag:?} was changed outside this rollout: expected {}, found {}; \
                 holding without moving it (put it back to continue, or promote or roll back \
                 by hand)",
                describe(expected),
                describe(found)
            ),
            found: found.clone(),
        }
    }
}

fn same_state(a: &FlagState, b: &FlagState) -> bool {
    a.enabled == b.enabled
        && (!a.enabled || (a.rollout.value() - b.rollout.value()).abs() <= SHARE_TOLERANCE)
}

/// The decision a look carries out after its flag check, and the reason when the check
/// changed it. `would_write` is the state the decision leaves the flag in, if it moves
/// it. A flag someone else changed is never actuated over, but for a rollback (switching
/// off is always safe, and a condemned canary must not stay on): every other decision
/// that would move it holds, except when the flag is already where this decision puts it (a
/// successor replaying the look of a worker that died after its change but before
/// recording the look finds its own change). A flag that cannot be read back (a webhook
/// without `state_url` in a process that has not changed it) cannot be compared: the
/// decision stands and the reason says the check could not be made. Holding there would
/// stop every such rollout that moves to another instance, and the change itself is
/// still verified by the actuator.
pub fn guard_decision(
    check: &FlagCheck,
    decision: Decision,
    would_write: Option<&FlagState>,
) -> (Decision, Option<String>) {
    let moves_flag = matches!(
        decision,
        Decision::Advance { .. }
            | Decision::Promote
            | Decision::Rollback
            | Decision::ReduceTraffic { .. }
    );
    match check {
        FlagCheck::AsWritten => (decision, None),
        // Pulling the kill switch is safe whatever someone else did to the flag, and a
        // canary the evidence condemns must not stay on because a person moved its
        // share: a rollback always goes ahead, with the change noted.
        FlagCheck::Changed { reason, .. } if decision == Decision::Rollback => (
            decision,
            Some(format!(
                "{reason}; rolling back regardless: switching off is always safe"
            )),
        ),
        FlagCheck::Changed { found, .. }
            if moves_flag && would_write.is_some_and(|state| same_state(state, found)) =>
        {
            (decision, None)
        }
        FlagCheck::Changed { reason, .. } if moves_flag => (
            Decision::Hold,
            Some(format!("{reason}; it would have been: {decision}")),
        ),
        FlagCheck::Changed { reason, .. } => (decision, Some(reason.clone())),
        FlagCheck::Unreadable(reason) => (
            decision,
            Some(format!(
                "{reason}; changes made outside this rollout cannot be detected"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HumanDuration;

    fn stage(name: &str, traffic: f64) -> Stage {
        let minutes = HumanDuration::parse("5m").unwrap();
        Stage {
            name: name.to_owned(),
            traffic: Percentage::parse(traffic).unwrap(),
            duration: minutes,
            max_duration: minutes,
            interval: minutes,
            lookback: minutes,
            baseline: crate::domain::plan::StageBaseline::Live,
        }
    }

    fn stages() -> Vec<Stage> {
        vec![stage("1%", 1.0), stage("10%", 10.0), stage("50%", 50.0)]
    }

    fn flag(enabled: bool, rollout: f64) -> FlagState {
        FlagState {
            enabled,
            rollout: Percentage::parse(rollout).unwrap(),
        }
    }

    #[test]
    fn a_flag_off_or_at_most_at_the_first_stage_starts_at_the_first_stage() {
        for current in [
            flag(false, 0.0),
            flag(false, 100.0),
            flag(true, 0.0),
            flag(true, 1.0),
        ] {
            assert_eq!(
                start_point("f", &stages(), &current, false),
                Ok(StartPoint::FirstStage),
                "{current:?}"
            );
        }
    }

    #[test]
    fn a_flag_beyond_the_first_stage_is_refused_naming_its_share_and_the_first_stage() {
        let error = start_point("checkout", &stages(), &flag(true, 100.0), false).unwrap_err();
        assert!(error.contains("\"checkout\""), "{error}");
        assert!(error.contains("enabled at 100%"), "{error}");
        assert!(error.contains("first stage 1% at 1%"), "{error}");
        assert!(error.contains("adopt = true"), "{error}");
    }

    #[test]
    fn adopting_starts_at_the_stage_at_or_below_the_share_and_keeps_the_share() {
        let cases = [(10.0, 1), (30.0, 1), (50.0, 2), (100.0, 2), (5.0, 0)];
        for (share, stage_index) in cases {
            assert_eq!(
                start_point("f", &stages(), &flag(true, share), true),
                Ok(StartPoint::Adopt {
                    stage_index,
                    share: Percentage::parse(share).unwrap()
                }),
                "{share}"
            );
        }
    }

    #[test]
    fn a_flag_as_written_passes_and_a_changed_one_names_both_states() {
        assert_eq!(
            check_flag("f", &flag(true, 25.0), &flag(true, 25.004)),
            FlagCheck::AsWritten
        );
        assert_eq!(
            check_flag("f", &flag(false, 0.0), &flag(false, 50.0)),
            FlagCheck::AsWritten
        );
        let FlagCheck::Changed { reason, .. } =
            check_flag("f", &flag(true, 25.0), &flag(true, 50.0))
        else {
            panic!("a changed share is a change");
        };
        assert!(
            reason.contains("expected enabled at 25%, found enabled at 50%"),
            "{reason}"
        );
        assert!(matches!(
            check_flag("f", &flag(true, 25.0), &flag(false, 25.0)),
            FlagCheck::Changed { reason, .. } if reason.contains("found disabled")
        ));
    }

    #[test]
    fn a_changed_flag_is_never_actuated_over_but_for_a_rollback() {
        let changed = FlagCheck::Changed {
            reason: "changed".to_owned(),
            found: flag(true, 30.0),
        };
        let to = Percentage::parse(50.0).unwrap();
        for decision in [
            Decision::Advance { to },
            Decision::Promote,
            Decision::ReduceTraffic { to },
        ] {
            let (guarded, reason) =
                guard_decision(&changed, decision.clone(), Some(&flag(true, 50.0)));
            assert_eq!(guarded, Decision::Hold, "{decision}");
            assert!(reason.unwrap().contains(&decision.to_string()));
        }
        // Someone raised the share by hand; the evidence condemns the canary: it goes off.
        let (guarded, reason) =
            guard_decision(&changed, Decision::Rollback, Some(&flag(false, 0.0)));
        assert_eq!(guarded, Decision::Rollback);
        assert!(reason.unwrap().contains("rolling back regardless"));
        let (guarded, reason) = guard_decision(&changed, Decision::Continue, None);
        assert_eq!(guarded, Decision::Continue);
        assert_eq!(reason.as_deref(), Some("changed"));
        assert_eq!(
            guard_decision(&FlagCheck::AsWritten, Decision::Promote, None),
            (Decision::Promote, None)
        );
    }

    #[test]
    fn a_replayed_look_finding_its_own_change_goes_ahead() {
        let found_at_50 = FlagCheck::Changed {
            reason: "changed".to_owned(),
            found: flag(true, 50.0),
        };
        let to = Percentage::parse(50.0).unwrap();
        assert_eq!(
            guard_decision(
                &found_at_50,
                Decision::Advance { to },
                Some(&flag(true, 50.0))
            ),
            (Decision::Advance { to }, None)
        );
        let killed = FlagCheck::Changed {
            reason: "changed".to_owned(),
            found: flag(false, 0.0),
        };
        assert_eq!(
            guard_decision(&killed, Decision::Rollback, Some(&flag(false, 0.0))).0,
            Decision::Rollback
        );
    }

    #[test]
    fn an_unreadable_flag_cannot_be_compared_and_says_so() {
        let unreadable = FlagCheck::Unreadable("cannot read".to_owned());
        let (decision, reason) = guard_decision(&unreadable, Decision::Promote, None);
        assert_eq!(decision, Decision::Promote);
        assert!(reason.unwrap().contains("cannot be detected"));
        assert_eq!(
            guard_decision(&unreadable, Decision::Rollback, None).0,
            Decision::Rollback
        );
    }
}
