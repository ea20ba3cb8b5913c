//! The three outcomes of an analysis and the exit codes pipelines branch on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the engine recommends for the rollout.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(as = VerdictValue)]
pub enum Verdict {
    /// The canary is at least as good as the baseline: move on.
    Promote,
    /// Not enough evidence either way, or a warning that a person should review.
    Hold,
    /// The canary is worse: take it out.
    Rollback,
}

impl Verdict {
    /// The verdict's name, as stored and serialized: `promote`, `hold` or `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::Hold => "hold",
            Verdict::Rollback => "rollback",
        }
    }

    /// The process exit code that reports this verdict: 0 promote, 2 hold, 3 rollback
    /// (1 is reserved for errors).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Promote => 0,
            Verdict::Hold => 2,
            Verdict::Rollback => 3,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;

    /// Reads a verdict's name ([`Verdict::as_str`]).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "promote" => Ok(Verdict::Promote),
            "hold" => Ok(Verdict::Hold),
            "rollback" => Ok(Verdict::Rollback),
            other => Err(format!(
                "unknown verdict {other:?} (expected promote, hold or rollback)"
            )),
        }
    }
}
